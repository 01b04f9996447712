"""The one result type of every search (greedy, beam, sampling, joint CTC / attention): for each
input, a list of `Hypothesis`, best first."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class Hypothesis:
    """One output of a search.

    Attributes:
        tokens: generated ids (no <s>); ends with </s> unless it stopped at the maximum length.
        score: sum of the log-probabilities of `tokens` (joint CTC / attention decoding: the joint score).
        rank_score: `score` after the length penalty; an input's hypotheses are ordered by it
            (greedy search and sampling: equal to `score`).
        attention: (len(tokens), S) float32 attention of each step over the S source positions of
            the batch, None for models without attention.
        copied: (len(tokens),) for a model that copies (model.copy), the share of each token's
            probability that copying gave (`Seq2Seq.copy_shares`); set after search, else None.
    """

    tokens: list[int]
    score: float
    rank_score: float
    attention: Tensor | None
    copied: Tensor | None = None


def attention_to_cpu(found: list[list[Hypothesis]]) -> list[list[Hypothesis]]:
    """`found` with every hypothesis's attention on the CPU, moved in one transfer (unchanged
    when it is there already or there is none).

    Args:
        found: a search's result, per input a list of hypotheses whose attention is (T_i, S).
    Returns:
        The same structure; attention tensors on the CPU, the rest as it was.
    """
    attns = [h.attention for hyps in found for h in hyps if h.attention is not None]
    if not attns or all(a.device.type == "cpu" for a in attns):
        return found
    moved = iter(torch.cat(attns).cpu().split([a.size(0) for a in attns]))
    return [[h if h.attention is None else replace(h, attention=next(moved)) for h in hyps] for hyps in found]
