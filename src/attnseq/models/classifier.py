"""The attention-pooling text classifier of the notes (SPEC 5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnseq.contracts import LossOutput
from attnseq.models.config import ClassifierConfig
from attnseq.modules.encoder import RNNEncoder
from attnseq.modules.loss import label_smoothed_nll
from attnseq.modules.ngrams import HashedNgrams
from attnseq.modules.pooling import build_pooling


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


class SharedDropout(nn.Module):
    """Dropout with one mask per text, shared by all its positions: of x (B, S, F), a text loses
    whole features at every position (Keras' SpatialDropout1D on embeddings; variational, or
    locked, dropout on RNN states). The kept features are scaled by 1 / (1 - p)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def mask(self, x: Tensor) -> Tensor:
        """A (B, 1, F) mask of 0 and 1 / (1 - p) for x (B, S, F)."""
        return x.new_empty(x.shape[0], 1, x.shape[-1]).bernoulli_(1 - self.p) / (1 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * self.mask(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class AttentionClassifier(nn.Module):
    """SPEC 5.1: a (bi)RNN reads the tokens; the query is its final hidden state (last layer, both
    directions joined), the values all its states. SPEC 5.2: pooling (attention by default).
    SPEC 5.3: Dense(head_size, relu) -> Dropout -> Dense(1) with a sigmoid for two classes, or
    Dense(K) with a softmax for K > 2.

    Regularizers (training only, each off at 0): `word_dropout` reads tokens as <unk>,
    `spatial_dropout` drops whole embedding features of a text, `state_dropout` whole features of
    its RNN states (values and query alike, the same mask at every position), and `label_smoothing`
    moves the targets towards the uniform distribution."""

    def __init__(
        self, cfg: ClassifierConfig, *, vocab_size: int, num_classes: int, pad_id: int = 0,
        label_smoothing: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.word_dropout, self.pad_id, self.unk_id = cfg.word_dropout, pad_id, 1  # Vocab.unk_id
        self.encoder = RNNEncoder(
            vocab_size, emb_size=cfg.emb_size, hidden_size=cfg.hidden_size, rnn=cfg.rnn, layers=cfg.layers,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout, pad_id=pad_id,
        )  # fmt: skip
        if cfg.spatial_dropout > 0:  # before the encoder's own dropout on the embeddings (no weights: same state dict)
            self.encoder.dropout = nn.Sequential(SharedDropout(cfg.spatial_dropout), self.encoder.dropout)
        self.state_dropout = SharedDropout(cfg.state_dropout)
        self.pooling = build_pooling(cfg.pooling, value_size=cfg.hidden_size, query_size=cfg.hidden_size,
                                     units=cfg.units)  # fmt: skip
        self.hidden = nn.Linear(cfg.hidden_size, cfg.head_size)
        self.head_dropout = nn.Dropout(cfg.head_dropout)
        self.out = nn.Linear(cfg.head_size, 1 if num_classes == 2 else num_classes)
        if cfg.ngrams:  # made last, so that every other weight draws the same initial values as without
            self.encoder.ngrams = HashedNgrams(cfg.ngrams, cfg.ngram_buckets, cfg.emb_size, pad_id=pad_id,
                                               device=self.out.weight.device)  # fmt: skip

    def logits(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens (B, S), lengths (B,) -> logits (B, 1) or (B, K), pooling weights (B, S) or None."""
        memory = self.encoder(tokens, lengths)
        final = memory.final[0] if isinstance(memory.final, tuple) else memory.final  # an LSTM's h, not c
        values, query = memory.outputs, final[-1]
        if self.training and self.state_dropout.p > 0:  # one mask per text for its states and its query
            mask = self.state_dropout.mask(values)
            values, query = values * mask, query * mask[:, 0]
        context, weights = self.pooling(values, memory.src_mask, query)
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
        """Summed cross-entropy over the batch's texts: `label_smoothed_nll` of the class
        probabilities (with `label_smoothing` in training: targets eps / K + (1 - eps) * one-hot).
        For two classes, the same loss of [1 - p, p], p = sigmoid(logit), is computed in its
        closed form, binary cross-entropy against the target (1 - eps) y + eps / 2 (the
        numerically stable form; tests/test_classify_regularizers.py holds it equal)."""
        tokens = batch.tokens
        if self.training and self.word_dropout > 0:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            tokens = tokens.masked_fill(drop & (tokens != self.pad_id), self.unk_id)
        logits, _ = self.logits(tokens, batch.lengths)
        logits = logits.float()
        eps = self.label_smoothing if self.training else 0.0
        if self.num_classes == 2:
            target = batch.labels.float() * (1 - eps) + eps / 2
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction="sum")
        else:
            loss = label_smoothed_nll(F.log_softmax(logits, dim=-1), batch.labels, eps)
        return LossOutput(loss, batch.units)


class ClassifierEnsemble(nn.Module):
    """`members` AttentionClassifiers of one config (`model.members`), trained together: each reads
    the same batches with its own initial weights (member 0 draws those of a single model of the
    same seed) and its own dropout draws, and the loss is the mean of theirs, so each member's
    gradient is its own. A prediction is the mean of the members' class probabilities; its pooling
    weights, the mean of theirs (still a distribution over the tokens). Averaging a few classifiers
    cancels much of what one training's seed decides (docs/classification.md)."""

    def __init__(self, cfg: ClassifierConfig, *, members: int, **kwargs) -> None:
        super().__init__()
        self.members = nn.ModuleList(AttentionClassifier(cfg, **kwargs) for _ in range(members))
        self.num_classes = self.members[0].num_classes

    def probabilities(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        outs = [member.probabilities(tokens, lengths) for member in self.members]
        probs = torch.stack([p for p, _ in outs]).mean(0)
        weights = None if outs[0][1] is None else torch.stack([w for _, w in outs]).mean(0)
        return probs, weights

    def forward(self, batch: LabelBatch) -> LossOutput:
        losses = [member(batch).loss_sum for member in self.members]
        return LossOutput(torch.stack(losses).mean(), batch.units)
