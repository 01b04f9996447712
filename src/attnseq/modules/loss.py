"""The training loss of every model: summed negative log-likelihood with label smoothing.

SPEC 1.4 / 2.5 give P(y_t) = softmax(W_y o_t + b_y); SPEC 5.3 gives the classifier's class
probabilities. Training minimizes the negative log-likelihood of the reference, with label smoothing
(Szegedy et al. 2016) moving the target towards the uniform distribution over the K outputs:

    loss = sum_i (1 - eps) (-log P(y_i)) + eps * mean_k (-log P(k))

A model with coverage (See et al. 2017) adds, weighted by model.coverage_loss, the coverage loss
sum_t sum_i min(alpha^t_i, c^t_i) with c^t = sum_{t' < t} alpha^{t'} (`coverage_loss`): attending
again to a position that has had its share costs.

The label-smoothed NLL is the reference; `attnseq.fast.loss` computes it fused with the output layer, and
tests/test_fast_paths.py holds the two equal (value and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll(logp: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed label-smoothed negative log-likelihood.

    Args:
        logp: (N, K) log-probabilities (log_softmax of logits, or the copy mechanism's log P(w)).
        target: (N,) reference ids; every row is a real position (drop padding before).
        label_smoothing: eps in [0, 1); 0 gives the plain negative log-likelihood.
    Returns:
        A scalar: the sum over the N rows. With eps = 0 it is torch's `nll_loss` (so the
        cross-entropy of logits x is `label_smoothed_nll(log_softmax(x), y)`, as torch computes it).
    """
    if not label_smoothing:
        return F.nll_loss(logp, target, reduction="sum")
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)  # (N,)
    return ((1.0 - label_smoothing) * nll - label_smoothing * logp.mean(dim=-1)).sum()


def coverage_loss(attn: Tensor, keep: Tensor) -> Tensor:
    """Summed coverage loss of teacher-forced attention.

    Args:
        attn: (B, T, S) the weights alpha^t of every step (0 at source padding).
        keep: (B, T) bool, True at the real target steps.
    Returns:
        A scalar: sum over the kept steps t and all positions i of min(alpha^t_i, c^t_i), where
        c^t = alpha^1 + ... + alpha^{t-1} (c^1 = 0).
    """
    coverage = torch.cat([torch.zeros_like(attn[:, :1]), attn[:, :-1].cumsum(dim=1)], dim=1)
    return torch.minimum(attn, coverage).sum(dim=-1)[keep].sum()
