"""Hashed n-gram embeddings: each position of a text also reads the n-gram that starts there.

A character (or piece) model reads a word only through its RNN; a bag of character n-grams (the
TF-IDF baseline of docs/classification.md) sees `이별` (breakup) or `짝사랑` (unrequited love) as one
feature. `HashedNgrams` gives the encoder both: position i adds, for each order n, an embedding of
the ids of tokens i .. i+n-1 (past the end of a text, the padding id), found in a table of `buckets`
rows by a fixed hash of those ids (the hashing trick of fastText: no n-gram vocabulary to build or
save; n-grams that collide share a row). The encoder adds the sum to the token embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HASH_BASE = 1_000_003  # a prime; the hash of ids (t_1 .. t_n) is ((t_1 * P + t_2) mod B * P + t_3) mod B ...


def ngram_ids(tokens: Tensor, n: int, buckets: int) -> Tensor:
    """(B, S) token ids -> (B, S) the table row of the n-gram starting at each position (tokens past
    the end of the row read as id 0, the padding id)."""
    ids = tokens.long()
    for k in range(1, n):
        ids = (ids * HASH_BASE + F.pad(tokens[:, k:].long(), (0, k))) % buckets
    return ids % buckets


class HashedNgrams(nn.Module):
    """sum over n in `orders` of E_n[hash(t_i .. t_{i+n-1})], (B, S, size), zero at padding. Each
    table starts at N(0, 0.1²): small beside the token embeddings, which the n-grams refine."""

    def __init__(self, orders: list[int], buckets: int, size: int, *, pad_id: int = 0, device=None) -> None:
        super().__init__()
        self.orders, self.buckets, self.pad_id = tuple(orders), buckets, pad_id
        self.tables = nn.ModuleList(nn.Embedding(buckets, size, device=device) for _ in self.orders)
        with torch.no_grad():
            for table in self.tables:
                table.weight.normal_(0.0, 0.1)

    def forward(self, tokens: Tensor) -> Tensor:
        out = sum(table(ngram_ids(tokens, n, self.buckets)) for n, table in zip(self.orders, self.tables, strict=True))
        return out * (tokens != self.pad_id).unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"orders={self.orders}, buckets={self.buckets}"
