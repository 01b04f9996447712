"""The attention-pooling text classifier of the notes (SPEC 5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnseq.config import ClassifierConfig
from attnseq.modules.encoder import RNNEncoder
from attnseq.modules.pooling import build_pooling
from attnseq.tasks.base import LossOutput


@dataclass
class LabelBatch:
    """A padded batch of texts and their class ids."""

    tokens: Tensor  # (B, S) token ids
    lengths: Tensor  # (B,) real lengths (on the CPU, for packing)
    labels: Tensor  # (B,) class ids
    index: list[int]

    @property
    def units(self) -> int:
        return len(self.index)

    def to(self, device) -> LabelBatch:
        return LabelBatch(self.tokens.to(device), self.lengths, self.labels.to(device), self.index)


class AttentionClassifier(nn.Module):
    """SPEC 5.1: a (bi)RNN reads the tokens; the query is its final hidden state (last layer, both
    directions joined), the values all its states. SPEC 5.2: pooling (attention by default).
    SPEC 5.3: Dense(head_size, relu) -> Dropout -> Dense(1) with a sigmoid for two classes, or
    Dense(K) with a softmax for K > 2."""

    def __init__(self, cfg: ClassifierConfig, *, vocab_size: int, num_classes: int, pad_id: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.word_dropout, self.pad_id, self.unk_id = cfg.word_dropout, pad_id, 1  # Vocab.unk_id
        self.encoder = RNNEncoder(
            vocab_size, emb_size=cfg.emb_size, hidden_size=cfg.hidden_size, rnn=cfg.rnn, layers=cfg.layers,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout, pad_id=pad_id,
        )  # fmt: skip
        self.pooling = build_pooling(cfg.pooling, value_size=cfg.hidden_size, query_size=cfg.hidden_size,
                                     units=cfg.units)  # fmt: skip
        self.hidden = nn.Linear(cfg.hidden_size, cfg.head_size)
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.out = nn.Linear(cfg.head_size, 1 if num_classes == 2 else num_classes)

    def logits(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens (B, S), lengths (B,) -> logits (B, 1) or (B, K), pooling weights (B, S) or None."""
        memory = self.encoder(tokens, lengths)
        final = memory.final[0] if isinstance(memory.final, tuple) else memory.final  # an LSTM's h, not c
        context, weights = self.pooling(memory.outputs, memory.src_mask, final[-1])
        hidden = self.head_dropout(F.relu(self.hidden(context)))
        return self.out(hidden), weights

    def probabilities(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """Class probabilities (B, K) (for two classes [1 - p, p] of the sigmoid) and pooling weights."""
        logits, weights = self.logits(tokens, lengths)
        logits = logits.float()
        if self.num_classes == 2:
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=-1), weights
        return torch.softmax(logits, dim=-1), weights

    def forward(self, batch: LabelBatch) -> LossOutput:
        """Summed binary (two classes) or categorical cross-entropy over the batch's texts."""
        tokens = batch.tokens
        if self.training and self.word_dropout > 0:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            tokens = tokens.masked_fill(drop & (tokens != self.pad_id), self.unk_id)
        logits, _ = self.logits(tokens, batch.lengths)
        logits = logits.float()
        if self.num_classes == 2:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], batch.labels.float(), reduction="sum")
        else:
            loss = F.cross_entropy(logits, batch.labels, reduction="sum")
        return LossOutput(loss, batch.units)
