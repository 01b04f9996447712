"""No repeated n-grams: a token that would complete an n-gram the hypothesis already holds gets
probability 0 (`decode.block_ngram_repeat`, as OpenNMT-py's -block_ngram_repeat and fairseq's
--no-repeat-ngram-size). Weak summarizers loop ("dies at 86, dies at 86, ..."); blocking the
second copy of a phrase is the usual remedy at search time."""

from __future__ import annotations

import torch
from torch import Tensor


def block_repeats(logp: Tensor, history: Tensor, n: int) -> Tensor:
    """logp (R, V) with -inf at every token that, after row r's `history` (R, T) of generated ids,
    would repeat an n-gram of that history. n < 1 blocks nothing."""
    if n < 1 or history.size(1) < n:  # no complete n-gram yet: nothing can repeat one
        return logp
    if n == 1:
        banned = history
    else:
        grams = history.unfold(1, n, 1)  # (R, T - n + 1, n): every n-gram so far
        prefix = history[:, history.size(1) - (n - 1) :]  # (R, n - 1): what the next token follows
        hit = (grams[:, :, : n - 1] == prefix.unsqueeze(1)).all(dim=-1)  # (R, W)
        banned = torch.where(hit, grams[:, :, -1], -1)
    valid = banned >= 0
    counts = torch.zeros_like(logp).scatter_add_(1, banned.clamp(min=0), valid.to(logp.dtype))
    return logp.masked_fill(counts > 0, float("-inf"))
