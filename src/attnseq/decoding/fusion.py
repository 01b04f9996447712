"""Shallow fusion: beam search ranks hypotheses by the model's score plus a language model's
(Gulcehre et al. 2015; Kannan et al. 2018, for attention-based speech recognition):

    score(y_1 .. y_n) = sum_i [ s(y_i | y_<i, x) + beta * log P_LM(y_i | y_<i) ]

where s is what the search ranked by without the LM (log P_att, or the joint CTC / attention
increment of `ctc_prefix.py`) and beta is decode.lm_weight. </s> is scored too, so the LM also says
where a sentence may end. The LM (`models/lm.py`) reads its own vocabulary: `token_map` gives, for
each of the model's output ids, the LM's id of the same token (the LM's <unk> where it has none).

Scorers of beam search (`beam_search(prefix_scorer=...)`) share one interface, `extend(logp (N, V))
-> increments (N, V)` and `advance(rows, tokens)`; `Chain` applies several in order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnseq.models.lm import select_state


class LMFusion:
    """The LM side of shallow fusion for the hypotheses of one beam search.

    Args:
        lm: an `RNNLanguageModel` (in eval mode) on the search's device.
        token_map: (V,) the LM's id for each output id of the searched model.
        rows: how many hypotheses the search starts with (one per sentence).
        bos_id: the LM's <s>.
        weight: beta > 0.
    """

    def __init__(self, lm, token_map: Tensor, rows: int, *, bos_id: int, weight: float) -> None:
        self.lm, self.map, self.weight = lm, token_map, float(weight)
        start = torch.full((rows,), bos_id, dtype=torch.long, device=token_map.device)
        with torch.no_grad():
            self.next_logp, self.state = lm.step(start)  # (N, V_lm)

    def lm_logp(self) -> Tensor:
        """(N, V) log P_LM of each of the searched model's output ids as the next token."""
        return self.next_logp.index_select(1, self.map)

    def extend(self, logp: Tensor) -> Tensor:
        return logp + self.weight * self.lm_logp()[:, : logp.size(1)]

    def advance(self, rows: Tensor, tokens: Tensor) -> None:
        state = select_state(self.state, rows)
        with torch.no_grad():
            self.next_logp, self.state = self.lm.step(self.map[tokens], state)


class Chain:
    """Scorers applied in order: each extends the increments the one before returned."""

    def __init__(self, scorers: list) -> None:
        self.scorers = scorers

    def extend(self, logp: Tensor) -> Tensor:
        for scorer in self.scorers:
            logp = scorer.extend(logp)
        return logp

    def advance(self, rows: Tensor, tokens: Tensor) -> None:
        for scorer in self.scorers:
            scorer.advance(rows, tokens)


def token_map(tokens: list[str], lm_index: dict[str, int], *, unk_id: int) -> Tensor:
    """(V,) the LM id of each of `tokens` (the searched model's vocabulary, in id order)."""
    return torch.tensor([lm_index.get(t, unk_id) for t in tokens], dtype=torch.long)
