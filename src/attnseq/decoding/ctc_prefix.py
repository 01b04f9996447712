"""Joint CTC / attention decoding: beam search scores each hypothesis by both decoders (Watanabe,
Hori, Kim, Hershey and Hayashi 2017, "Hybrid CTC/attention", their Algorithm 2; a decoding option
for speech models trained with a CTC head, `modules/ctc.py`).

A hypothesis g = y_1 .. y_n is scored

    score(g) = (1 - lam) * sum_i log P_att(y_i | y_<i, x)  +  lam * log psi(g)

where psi(g) is the CTC probability of every path over the listener's S positions whose collapse
*starts with* g (the prefix probability), and for a finished hypothesis g </s> the probability of
the paths that collapse to exactly g. The attention decoder alone may drop a word said twice or
stop early; the CTC term counts every word of the recording in order, so such a hypothesis loses.

Each hypothesis keeps two (S,) forward variables in log space: r_n(t), the paths over positions
1..t that collapse to g and end in its last token, and r_b(t), those that end in a blank. For
every candidate token c at once (all V), with phi(t) = r_b(t) if c == last(g) (a repeated token
needs a blank between) and r_b(t) + r_n(t) otherwise:

    r_n'(1) = x_1(c) if g is empty else 0 (log: -inf);   r_b'(1) = 0 (log: -inf)
    r_n'(t) = (r_n'(t - 1) + phi(t - 1)) x_t(c)
    r_b'(t) = (r_n'(t - 1) + r_b'(t - 1)) x_t(blank)
    psi(g c) = r_n'(1) + sum_{t >= 2} phi(t - 1) x_t(c)
    psi(g </s>) = r_n(S) + r_b(S)

(products and sums of probabilities, computed as log-adds.) Past a recording's length a padded
position gives the blank probability 1 and every token 0, so the variables carry its end forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


class CTCPrefixScorer:
    """The CTC side of joint decoding for a batch of B recordings and the hypotheses of a beam search.

    Args:
        log_probs: (B, S, V + 1) CTC log-probabilities over the V target ids and the blank (last).
        lengths: (B,) listener positions of each recording.
        eos_id: the id whose extension ends a hypothesis (scored by psi(g </s>)).
        weight: lam in [0, 1]; the joint increments are (1 - lam) attention + lam CTC.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, *, eos_id: int, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the CTC weight must lie in [0, 1] (got {weight})")
        B, S, C = log_probs.shape
        x = log_probs.float().clone()
        padded = torch.arange(S, device=x.device).unsqueeze(0) >= lengths.to(x.device).unsqueeze(1)  # (B, S)
        x[padded] = NEG_INF
        x[..., -1][padded] = 0.0
        self.tokens = x[..., :-1].transpose(1, 2).contiguous()  # (B, V, S): x_t(c)
        self.blank = x[..., -1].contiguous()  # (B, S): x_t(blank)
        self.eos_id, self.weight = eos_id, float(weight)
        self.sentence = torch.arange(B, device=x.device)  # the recording of each hypothesis row
        self.r_n = torch.full((B, S), NEG_INF, device=x.device)
        self.r_b = torch.cumsum(self.blank, dim=1)  # the empty prefix: blanks only
        self.psi = torch.zeros(B, device=x.device)
        self.last = torch.full((B,), -1, dtype=torch.long, device=x.device)  # -1: nothing written yet
        self._candidates: tuple[Tensor, Tensor, Tensor] | None = None

    def extend(self, logp_att: Tensor) -> Tensor:
        """(N, V) attention log-probabilities of the N current hypotheses' next token -> their
        (N, V) joint score increments. Remembers every candidate's forward variables for `advance`."""
        N, V = logp_att.shape
        xc = self.tokens[self.sentence][:, :V]  # (N, V, S)
        xb = self.blank[self.sentence].unsqueeze(1)  # (N, 1, S)
        S = xc.size(-1)
        same = torch.arange(V, device=xc.device).unsqueeze(0) == self.last.unsqueeze(1)  # (N, V)
        r_n, r_b = self.r_n.unsqueeze(1), self.r_b.unsqueeze(1)  # (N, 1, S)
        phi = torch.logaddexp(r_b, torch.where(same.unsqueeze(-1), NEG_INF, r_n))  # (N, V, S)
        new_n = torch.empty_like(xc)
        new_b = torch.empty_like(xc)
        empty = (self.last < 0).view(N, 1)
        new_n[..., 0] = torch.where(empty, xc[..., 0], NEG_INF)
        new_b[..., 0] = NEG_INF
        for t in range(1, S):
            new_n[..., t] = torch.logaddexp(new_n[..., t - 1], phi[..., t - 1]) + xc[..., t]
            new_b[..., t] = torch.logaddexp(new_n[..., t - 1], new_b[..., t - 1]) + xb[..., t]
        psi = torch.logaddexp(new_n[..., 0], torch.logsumexp(phi[..., :-1] + xc[..., 1:], dim=-1)) if S > 1 else (
            new_n[..., 0])  # fmt: skip
        if 0 <= self.eos_id < V:
            psi[:, self.eos_id] = torch.logaddexp(self.r_n[:, -1], self.r_b[:, -1])
        self._candidates = (new_n, new_b, psi)
        delta = (psi - self.psi.unsqueeze(1)).nan_to_num(nan=NEG_INF)  # -inf - -inf: impossible already
        if self.weight == 1.0:  # CTC alone, but never what attention rules out (<pad>, <s>, blocked repeats)
            return torch.where(logp_att == NEG_INF, NEG_INF, delta)
        return (1.0 - self.weight) * logp_att.float() + self.weight * delta

    def advance(self, rows: Tensor, tokens: Tensor) -> None:
        """The new hypotheses: row `rows[i]` of the last `extend` extended by `tokens[i]`."""
        new_n, new_b, psi = self._candidates
        self.r_n, self.r_b = new_n[rows, tokens], new_b[rows, tokens]
        self.psi, self.last = psi[rows, tokens], tokens.clone()
        self.sentence = self.sentence[rows]
        self._candidates = None
