"""Top-k over a vocabulary, exact, in two passes instead of one selection over every element.

Each row of scores (R, V) is cut into chunks of `CHUNK` consecutive ids. The k largest scores of a
row lie in the k chunks with the largest maxima: a chunk holding one of them has a maximum at least
as large as the k-th largest score, and at most k chunks can. So one max per chunk (a plain
reduction, which vectorizes well) narrows the search to k * CHUNK candidates. The library's
selection kernels (`max` with indices, `topk`) are several times slower per element here than a
plain reduction, and a decoding step runs them over the whole vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 64


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest values of each row of `scores` (R, V) and their ids, largest first, as
    `scores.topk(k, dim=-1)` gives them (ties may pick other ids of equal value)."""
    rows, vocab = scores.shape
    full = vocab // CHUNK  # whole chunks; the tail (vocab % CHUNK ids) is one more
    if full < 4 * k:  # a small vocabulary: nothing to gain
        return scores.topk(k, dim=-1)
    scores = scores.contiguous()
    chunked = scores.as_strided((rows, full, CHUNK), (vocab, CHUNK, 1))  # a view, no copy
    maxima = chunked.amax(dim=-1)  # (R, full)
    if vocab % CHUNK:
        maxima = torch.cat([maxima, scores[:, full * CHUNK :].amax(dim=-1, keepdim=True)], dim=1)
    chunks = maxima.topk(k, dim=-1).indices  # (R, k)
    ids = (chunks.unsqueeze(-1) * CHUNK + torch.arange(CHUNK, device=scores.device)).view(rows, -1)
    outside = ids >= vocab  # the tail chunk's ids past the vocabulary
    candidates = scores.gather(1, ids.clamp(max=vocab - 1)).masked_fill_(outside, float("-inf"))
    values, where = candidates.topk(k, dim=-1)
    return values, ids.gather(1, where)
