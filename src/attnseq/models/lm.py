"""A recurrent language model: the decoder of SPEC 1 without a context, P(y_t | y_<t).

    e_t = Emb(y_{t-1});  s_t = RNN(e_t, s_{t-1});  P(y_t | y_<t) = softmax(W_y dropout(s_t) + b_y)

Trained on the target side of a task's training data (`task: lm`), it gives beam search a second
opinion on the output language by shallow fusion (`decoding/fusion.py`): a hypothesis's score
gains lm_weight * log P_LM of each token it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attnseq.contracts import LossOutput
from attnseq.modules.loss import label_smoothed_nll
from attnseq.schema import AT_LEAST_1, Range, RNNKind


@dataclass
class LMModelConfig:
    """task: lm. The language model's sizes."""

    rnn: RNNKind = "lstm"
    emb_size: int = 64
    hidden_size: int = 256
    layers: int = 2
    dropout: float = 0.2
    tie_embeddings: bool = False  # W_y shares the embedding matrix (needs emb_size == hidden_size)

    ranges: ClassVar[dict[str, Range]] = {
        "emb_size": AT_LEAST_1,
        "hidden_size": AT_LEAST_1,
        "layers": AT_LEAST_1,
        "dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    }


@dataclass
class LMBatch:
    """Padded token ids: inputs <s> y_1 .. y_{n-1}, targets y_1 .. y_n </s> (pad_id past the end)."""

    tokens_in: Tensor  # (B, T)
    tokens_out: Tensor  # (B, T)
    lengths: Tensor  # (B,) including </s>
    index: list[int]

    @property
    def units(self) -> int:
        return int(self.lengths.sum())

    def to(self, device) -> LMBatch:
        return LMBatch(self.tokens_in.to(device), self.tokens_out.to(device), self.lengths, self.index)


class RNNLanguageModel(nn.Module):
    """Embedding, a stack of LSTM / GRU layers and the output layer; `forward(batch)` is the
    summed negative log-likelihood of the batch's tokens (LossOutput), `step` one token at a time."""

    def __init__(self, vocab_size: int, cfg: LMModelConfig, *, pad_id: int) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.label_smoothing = 0.0
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=pad_id)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cfg.rnn]
        self.rnn = rnn(cfg.emb_size, cfg.hidden_size, num_layers=cfg.layers, batch_first=True,
                       dropout=cfg.dropout if cfg.layers > 1 else 0.0)  # fmt: skip
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_embeddings:
            self.out.weight = self.embedding.weight

    def logits(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """(B, T) ids -> ((B, T, V) logits of the next token at each position, the RNN's state)."""
        hidden, state = self.rnn(self.dropout(self.embedding(tokens)), state)
        return self.out(self.dropout(hidden)), state

    def forward(self, batch: LMBatch) -> LossOutput:
        logits, _ = self.logits(batch.tokens_in)
        real = batch.tokens_out != self.pad_id
        logp = torch.log_softmax(logits[real].float(), dim=-1)
        loss = label_smoothed_nll(logp, batch.tokens_out[real], self.label_smoothing)
        return LossOutput(loss, batch.units)

    @torch.no_grad()
    def score(self, batch: LMBatch) -> Tensor:
        """(B,) the log-probability of each sequence, its </s> included."""
        logits, _ = self.logits(batch.tokens_in)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(2, batch.tokens_out.unsqueeze(2)).squeeze(2)
        return logp.masked_fill(batch.tokens_out == self.pad_id, 0.0).sum(dim=1)

    def step(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """(N,) ids -> ((N, V) log-probabilities of the next token, the new state)."""
        logits, state = self.logits(tokens.unsqueeze(1), state)
        return torch.log_softmax(logits[:, 0].float(), dim=-1), state


def select_state(state, rows: Tensor):
    """An RNN state (a tensor (layers, N, H), or an LSTM's pair of them) at `rows`."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows) for s in state)
    return state.index_select(1, rows)
