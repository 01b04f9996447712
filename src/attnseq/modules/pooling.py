"""Pooling an RNN's states into one vector for classification: SPEC 5.2's attention pooling (the
notes' Keras example) and the ablations mean, max and last.

Every pooling takes values (B, S, H), a mask (B, S) True at real tokens, and the query (B, H) (the
RNN's final state) and returns the pooled vector (B, H) and weights (B, S) or None; padded
positions never count.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionPooling(nn.Module):
    """SPEC 5.2: score_i = V^T tanh(W1 h_i + W2 q); weights = softmax over real positions;
    context = sum_i weights_i h_i. `W1`, `W2` and `V` are named (and have biases) as the notes'
    Keras layers Dense(units), Dense(units), Dense(1)."""

    def __init__(self, value_size: int, query_size: int, *, units: int = 64) -> None:
        super().__init__()
        self.W1 = nn.Linear(value_size, units)
        self.W2 = nn.Linear(query_size, units)
        self.V = nn.Linear(units, 1)

    def forward(self, values: Tensor, mask: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.V(torch.tanh(self.W1(values) + self.W2(query)[:, None, :])).squeeze(-1)  # (B, S)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # the softmax in float32 at least
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        context = torch.bmm(weights.to(values.dtype)[:, None, :], values).squeeze(1)  # (B, H)
        return context, weights


class MeanPooling(nn.Module):
    """The average of the states over real positions (weights 1 / length)."""

    def forward(self, values: Tensor, mask: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        weights = mask.to(values.dtype) / mask.sum(-1, keepdim=True)
        return torch.bmm(weights.to(values.dtype)[:, None, :], values).squeeze(1), weights


class MaxPooling(nn.Module):
    """The maximum of each feature over real positions (no weights to show)."""

    def forward(self, values: Tensor, mask: Tensor, query: Tensor) -> tuple[Tensor, None]:
        return values.masked_fill(~mask[:, :, None], float("-inf")).amax(1), None


class LastPooling(nn.Module):
    """No pooling: the final state (the query) alone, as a classifier without attention reads."""

    def forward(self, values: Tensor, mask: Tensor, query: Tensor) -> tuple[Tensor, None]:
        return query, None


def build_pooling(kind: str, *, value_size: int, query_size: int, units: int) -> nn.Module:
    if kind == "attention":
        return AttentionPooling(value_size, query_size, units=units)
    return {"mean": MeanPooling, "max": MaxPooling, "last": LastPooling}[kind]()
