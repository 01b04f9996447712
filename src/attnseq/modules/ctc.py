"""A CTC output layer on the listener, trained jointly with the attention decoder (SPEC 6.4's
joint CTC, an optional loss for speech; Kim, Hori and Watanabe 2017).

CTC reads each listener state h_i on its own: P(pi_i | h_i) = softmax(W_ctc h_i + b) over the
target tokens and a blank, and sums over every monotonic path pi that collapses (repeats merged,
blanks dropped) to the transcript. The attention decoder is free to look anywhere; the CTC term
asks the listener states themselves to line up with the words in order (meant to help an
attention model find its alignment from few recordings; docs/speech.md has what it measured).
Decoding still uses the attention decoder alone.

    L = (1 - w) L_attention + w L_CTC        (w = model.ctc_weight)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnseq.modules.encoder import Memory


class CTCHead(nn.Module):
    """W_ctc: listener states (B, S, H) -> log P over `vocab_size` tokens and a blank (the last id)."""

    def __init__(self, enc_hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.W_ctc = nn.Linear(enc_hidden_size, vocab_size + 1)
        self.blank = vocab_size

    def log_probs(self, memory: Memory) -> Tensor:
        """(B, S, vocab_size + 1) float32 log-probabilities at each listener position (the states
        cast to the layer's dtype: a decoding copy holds its memory in float32, its layers in bf16)."""
        return F.log_softmax(self.W_ctc(memory.outputs.to(self.W_ctc.weight.dtype)).float(), dim=-1)

    def loss_sum(self, memory: Memory, tgt_out: Tensor, tgt_lengths: Tensor) -> Tensor:
        """Summed CTC loss of a batch. tgt_out (B, T) holds y_1 .. y_n </s> then padding and
        tgt_lengths (B,) counts n + 1: the transcript is the first n tokens (no </s>: CTC ends by
        the listener's length). An utterance whose transcript cannot fit its listener positions
        adds 0 (`zero_infinity`) rather than infinity."""
        logp = self.log_probs(memory).transpose(0, 1)  # (S, B, C), as ctc_loss takes them
        input_lengths = memory.src_mask.sum(dim=1).cpu()
        target_lengths = (tgt_lengths - 1).clamp(min=0).cpu()
        targets = tgt_out[:, : max(1, int(target_lengths.max()))]
        with torch.autocast(logp.device.type, enabled=False):
            return F.ctc_loss(logp, targets, input_lengths, target_lengths, blank=self.blank, reduction="sum",
                              zero_infinity=True)  # fmt: skip
