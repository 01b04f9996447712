"""Sampling instead of search: each step draws the next token from the model's distribution,
reshaped by a temperature and cut to the top-k tokens and / or the nucleus of top-p probability
(Holtzman et al. 2020). Replies vary from call to call (or repeat, under a seed), where greedy and
beam search always give the most probable one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Sampler:
    """`choose` for `greedy_search`: logp (n, V) -> (the model's log-probability of each draw (n,),
    the drawn ids (n,)). temperature > 0; top_k 0 = every token; top_p 1 = no nucleus cut.
    `greedy_search(..., choose=sampler)` then gives one `Hypothesis` per input: the draws, and the
    sum of their log-probabilities under the model as score and rank_score."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    generator: torch.Generator | None = None

    def filtered(self, logp: Tensor) -> Tensor:
        """The distribution draws come from (n, V): softmax(logp / temperature) with every token
        outside the top k and outside the smallest set of top-p probability set to 0."""
        scaled = logp / self.temperature
        if 0 < self.top_k < scaled.size(-1):
            kth = scaled.topk(self.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            before = sorted_p.cumsum(dim=-1) - sorted_p  # probability of the tokens ranked above each
            outside = torch.zeros_like(probs, dtype=torch.bool).scatter(1, order, before >= self.top_p)
            probs = probs.masked_fill(outside, 0.0)
            probs = probs / probs.sum(dim=-1, keepdim=True)
        return probs

    def __call__(self, logp: Tensor) -> tuple[Tensor, Tensor]:
        ids = torch.multinomial(self.filtered(logp), 1, generator=self.generator).squeeze(1)
        return logp.gather(1, ids.unsqueeze(1)).squeeze(1), ids
