"""Top-k over a vocabulary, exact, in two passes instead of one selection over every element.

Each row of scores is cut into chunks of `CHUNK` consecutive ids (the last chunk holds the
remainder). The k largest scores lie in the k chunks with the largest maxima: a chunk holding one
of them has a maximum at least as large as the k-th largest score, and at most k chunks can. So one
max per chunk (a plain reduction, which vectorizes well) narrows the search to k * CHUNK
candidates. The library's selection kernels (`max` with indices, `topk`) are several times slower
per element here than a plain reduction, and a decoding step runs them over the whole vocabulary.

Beam search selects over all beams of a sentence at once: scores (N, G, V) with a bias (N, G) (the
beams' scores so far) give the k largest bias[n, g] + scores[n, g, v] over every (g, v). A bias is
constant along a row, so it moves a chunk's maximum by exactly itself.

On a GPU, `torch.topk` over the whole row is faster than the two passes, so it is used there
(docs/performance.md, "Measurements behind the fast paths").
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 64


def top_k(scores: Tensor, k: int, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The k largest values of each row and their ids, largest first (ties may pick other ids of
    equal value).

    Args:
        scores: (R, V), or (N, G, V) to select over the G rows of each n together.
        k: how many, at most the number of candidates per row (V, or G * V).
        bias: (N, G) added to every score of a row (3-d scores only).
    Returns:
        values (R, k) or (N, k), and ids: v, or g * V + v for 3-d scores.
    """
    grouped = scores.dim() == 3
    scores = scores.contiguous() if grouped else scores.contiguous().unsqueeze(1)
    n, groups, vocab = scores.shape
    full = vocab // CHUNK  # whole chunks; the tail (vocab % CHUNK ids) is one more
    if full < 4 * k or scores.device.type != "cpu":  # a small vocabulary, or a GPU's own selection kernel
        flat = scores if bias is None else scores + bias.unsqueeze(-1)
        values, ids = flat.view(n, groups * vocab).topk(k, dim=-1)
    else:
        blocks = scores.as_strided((n, groups, full, CHUNK), (groups * vocab, vocab, CHUNK, 1))  # a view
        maxima = blocks.amax(dim=-1)  # (N, G, full)
        if vocab % CHUNK:
            maxima = torch.cat([maxima, scores[..., full * CHUNK :].amax(dim=-1, keepdim=True)], dim=-1)
        if bias is not None:
            maxima = maxima + bias.unsqueeze(-1)
        chunks = maxima.size(-1)
        best = maxima.view(n, groups * chunks).topk(k, dim=-1).indices  # (N, k): g * chunks + c
        group = best // chunks
        v = (best % chunks * CHUNK).unsqueeze(-1) + torch.arange(CHUNK, device=scores.device)  # (N, k, CHUNK)
        outside = v >= vocab  # the tail chunk's ids past the vocabulary
        ids = group.unsqueeze(-1) * vocab + v.clamp(max=vocab - 1)
        candidates = scores.view(n, groups * vocab).gather(1, ids.view(n, -1)).view(n, k, CHUNK)
        if bias is not None:
            candidates = candidates + bias.gather(1, group).unsqueeze(-1)
        values, where = candidates.masked_fill_(outside, float("-inf")).view(n, -1).topk(k, dim=-1)
        ids = ids.view(n, -1).gather(1, where)
    return values, ids
