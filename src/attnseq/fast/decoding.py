"""The decoding copy: a model made for search, equal to the trained one (SPEC 1-4) in what it
computes. Held equal by tests/test_fast_paths.py (bf16 and fp32 copies against the model) and
tests/test_translation.py (the copy is kept until `Translator.refresh`)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from attnseq.fast.frozen import Int8Linear, pack_linears

if TYPE_CHECKING:
    from attnseq.models.seq2seq import Seq2Seq


def decoding_copy(model: Seq2Seq, dtype: torch.dtype = torch.bfloat16, *, int8_recurrent: bool = False) -> Seq2Seq:
    """A copy of `model` for search only, in eval mode: weights cast to `dtype` once (not at every
    step, as autocast would cast them), the word part of the decoder's first-layer gates tabulated
    (`RNNDecoder.tabulate_word_gates`), the attention's keys and values held in float32
    (`attention_dtype`; its batched products are too small to gain from bf16 on a CPU), and on a
    CPU every linear layer's weight reordered once for oneDNN (`fast.frozen.PackedLinear`). It
    computes what the model computes, in `dtype`; it must not be trained.

    `int8_recurrent` (CPU): where the gates were tabulated, their remaining product [extra;
    s_{t-1}] [W_ih[:, E:]; W_hh]^T runs dynamically quantized (`Int8Linear`), the largest product
    of a step once the output layer is int8 or shortlisted. It pays on a float32 copy: as an
    AVX2-only CPU, 1.07-1.11x beam-5 and 1.02-1.14x greedy sentences/s on the bench's models at
    -0.02 to +0.03 BLEU; against a bfloat16 copy (native bf16) it gained nothing (0.93x / 1.02x)."""
    fast = copy.deepcopy(model).to(dtype).eval()
    for module in fast.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()  # a copied library RNN's weights in one block again (cuDNN wants it)
    if fast.decoder.tabulate_word_gates() and int8_recurrent:
        fast.decoder.recurrent = Int8Linear(fast.decoder.recurrent)
    fast.attention_dtype = torch.promote_types(dtype, torch.float32)
    pack_linears(fast)
    return fast
