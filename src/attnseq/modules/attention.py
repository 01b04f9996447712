"""Attention (SPEC 2.1-2.3) and the six score functions of SPEC 3.

The base class owns what every attention shares: masking, the softmax over source positions and
the weighted sum of values. A subclass only says how keys are prepared from the encoder states
(once per sentence, `precompute_keys`) and how a query is scored against them (`score`).

Keys and values may be held in a higher precision than the query (a bf16 decoding copy keeps them
in float32: batched products this small run faster in float32 on a CPU); scores are computed in
the keys' precision and the context comes back in the query's.

Queries may be one step (B, Hq) or many steps at once (B, T, Hq); the second form lets a decoder
whose queries do not depend on earlier attention (Luong without input feeding) attend for all
steps in one call. One-step queries may also come in groups: G * B rows, G consecutive rows per
source sentence (beam search's beams), which attend as the many-step form with T = G, so the
source memory is never repeated per beam. Masks are True at real source tokens.

Location-aware attention (SPEC 6.4) also reads the previous step's weights alpha^{t-1}, one row
per query row (`previous`); the decoders keep them in their state (`DecoderState.attention`) when
`reads_previous` is set, and every other kind ignores them. Coverage (See et al. 2017, `coverage`)
reads the sum of all earlier steps' weights instead, c^t = sum_{t' < t} alpha^{t'}: the state
carries what `carry` returns (alpha^t, or c^t + alpha^t where `accumulates`) from what
`initial_weights` gives before the first step (alpha^0 uniform, or c^1 = 0).

A score may also describe itself to code that computes it elsewhere (`score_form`, a `ScoreForm`),
so that such code reads the description instead of asking which class it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnseq.errors import AttnseqError
from attnseq.modules.pointwise import tanh


@dataclass(frozen=True)
class ScoreForm:
    """A score function of SPEC 3 described by what computing it needs, given the keys that
    `precompute_keys` made:

    - kind "dot": score(s, h_i) = scale * s . k_i (SPEC 3.1, 3.2; 3.3 with keys k = W_a h);
    - kind "concat": score(s, h_i) = w_a . tanh(W_b s + k_i) (SPEC 3.4 with keys k = W_c h).

    The tensors are the module's current parameters (autograd sees their use).
    """

    kind: str  # "dot" or "concat"
    scale: float = 1.0  # dot: the factor on s . k
    W_b: Tensor | None = None  # concat: (A, Hq)
    w_a: Tensor | None = None  # concat: (A,)


class Attention(nn.Module):
    """alpha = softmax(score(s, h_1..h_N)) over real positions; a = sum_i alpha_i h_i."""

    reads_previous = False  # whether scores read the previous step's weights (location-aware) or their sum
    accumulates = False  # what is read is the sum of all earlier steps' weights (coverage), not the last

    def initial_weights(self, src_mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """What the first step reads (B, S): alpha^0 uniform over the real positions (exactly 0 at
        padding), or the coverage before any step, 0, where `accumulates`."""
        mask = src_mask.to(torch.promote_types(dtype, torch.float32))
        return torch.zeros_like(mask) if self.accumulates else mask / mask.sum(dim=1, keepdim=True)

    def carry(self, previous: Tensor | None, weights: Tensor) -> Tensor | None:
        """What the next step reads, from what this step read and its weights alpha^t: alpha^t, or
        the coverage c^{t+1} = c^t + alpha^t where `accumulates`; None where nothing is read."""
        if not self.reads_previous:
            return None
        return previous + weights if self.accumulates and previous is not None else weights

    def score_form(self) -> ScoreForm | None:
        """This score as a `ScoreForm`, for code that computes it by itself (a fused training
        loop), or None where it has none (location, location-aware)."""
        return None

    def precompute_keys(self, values: Tensor) -> Tensor:
        """Keys from the encoder states, computed once per sentence.

        Args:
            values: (B, S, Hv) encoder outputs h_i.
        Returns:
            keys: (B, S, K), passed back to `forward` at every step (never stored on the module).
        """
        return values

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """Unnormalised scores e. query (B, T, Hq), keys (B, S, K) -> (B, T, S)."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, src_mask: Tensor, previous: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend.

        Args:
            query: (B, Hq) or (B, T, Hq) decoder state(s); or (G * B, Hq), G consecutive rows
                per sentence.
            keys: (B, S, K) from `precompute_keys`.
            values: (B, S, Hv) encoder outputs.
            src_mask: (B, S) bool, True at real source tokens.
            previous: the previous step's weights, one row per query row ((B, S), (B, T, S) or
                (G * B, S)); read only when `reads_previous`, where None stands for alpha^0
                (`initial_weights`).
        Returns:
            context (B, Hv) or (B, T, Hv), and weights (B, S) or (B, T, S) (G * B rows for
            grouped queries); weights are exactly 0 at padding and sum to 1 over real positions.
        """
        one_step = query.dim() == 2
        if one_step:
            query = query.view(keys.size(0), -1, query.size(-1))  # (B, G, Hq), G = 1 but in beam search
        if self.reads_previous:
            if previous is None:
                previous = self.initial_weights(src_mask, keys.dtype).unsqueeze(1).expand(-1, query.size(1), -1)
            scores = self.score(query, keys, previous.reshape(query.size(0), query.size(1), -1))  # (B, T, S)
        else:
            scores = self.score(query, keys)  # (B, T, S)   SPEC 2.1
        scores = scores.masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        # SPEC 2.2, in float32 at least (bf16 decoding; autocast does the same in training)
        weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))  # (B, T, S)
        context = torch.bmm(weights.to(values.dtype), values).to(query.dtype)  # (B, T, Hv)   SPEC 2.3
        if one_step:
            return context.flatten(0, 1), weights.flatten(0, 1)
        return context, weights


class DotAttention(Attention):
    """SPEC 3.1: score(s, h) = s^T h."""

    def score_form(self) -> ScoreForm:
        return ScoreForm("dot")

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query.to(keys.dtype), keys.transpose(1, 2))  # (B, T, S)


class ScaledDotAttention(Attention):
    """SPEC 3.2: score(s, h) = s^T h / sqrt(n), n = the size of h."""

    def __init__(self, key_size: int) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(key_size)

    def score_form(self) -> ScoreForm:
        return ScoreForm("dot", scale=self.scale)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query.to(keys.dtype), keys.transpose(1, 2)) * self.scale  # (B, T, S)


class GeneralAttention(Attention):
    """SPEC 3.3: score(s, h) = s^T W_a h. Keys are W_a h, so a step costs one batched dot product."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.W_a = nn.Linear(key_size, query_size, bias=False)  # weight (Hq, K)

    def precompute_keys(self, values: Tensor) -> Tensor:
        return self.W_a(values)  # (B, S, Hq)

    def score_form(self) -> ScoreForm:
        return ScoreForm("dot")  # s . (W_a h)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query.to(keys.dtype), keys.transpose(1, 2))  # (B, T, S)


class ConcatAttention(Attention):
    """SPEC 3.4: score(s, h) = W_a^T tanh(W_b s + W_c h). Keys are W_c h."""

    def __init__(self, query_size: int, key_size: int, attn_size: int) -> None:
        super().__init__()
        self.W_a = nn.Linear(attn_size, 1, bias=False)
        self.W_b = nn.Linear(query_size, attn_size, bias=False)
        self.W_c = nn.Linear(key_size, attn_size, bias=False)

    def precompute_keys(self, values: Tensor) -> Tensor:
        return self.W_c(values)  # (B, S, A)

    def score_form(self) -> ScoreForm:
        return ScoreForm("concat", W_b=self.W_b.weight, w_a=self.W_a.weight[0])

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        hidden = tanh(self.W_b(query).to(keys.dtype).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, A)
        return self.W_a(hidden.to(query.dtype)).squeeze(-1)  # (B, T, S)


class CoverageAttention(ConcatAttention):
    """SPEC 3.4 with coverage (See et al. 2017, eq. 11): score(s_t, h_i) = W_a^T tanh(W_b s_t + W_c h_i
    + w_c c^t_i), where c^t = sum_{t' < t} alpha^{t'} is how much attention position i has had so far.
    Keys are W_c h, as for concat; the decoders carry c^t in their state (`carry`). Its training
    loss term, sum_i min(alpha^t_i, c^t_i), is `modules.loss.coverage_loss`."""

    reads_previous = True
    accumulates = True

    def __init__(self, query_size: int, key_size: int, attn_size: int) -> None:
        super().__init__(query_size, key_size, attn_size)
        self.w_c = nn.Linear(1, attn_size, bias=False)

    def score_form(self) -> None:
        return None  # the score reads the coverage, which a fused loop does not carry

    def score(self, query: Tensor, keys: Tensor, coverage: Tensor) -> Tensor:
        """query (B, T, Hq), keys (B, S, A), coverage (B, T, S) -> (B, T, S)."""
        covered = self.w_c(coverage.unsqueeze(-1).to(self.w_c.weight.dtype))  # w_c c_i: (B, T, S, A)
        hidden = tanh(self.W_b(query).to(keys.dtype).unsqueeze(2) + keys.unsqueeze(1) + covered.to(keys.dtype))
        return self.W_a(hidden.to(query.dtype)).squeeze(-1)  # (B, T, S)


class LocationAttention(Attention):
    """SPEC 3.5: alpha = softmax(W_a s): one score per position up to `max_src_len`, from s alone."""

    def __init__(self, query_size: int, max_src_len: int) -> None:
        super().__init__()
        self.max_src_len = max_src_len
        self.W_a = nn.Linear(query_size, max_src_len, bias=False)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        src_len = keys.size(1)
        if src_len > self.max_src_len:
            raise AttnseqError(
                f"a source of {src_len} tokens is longer than location attention's "
                f"model.max_src_len = {self.max_src_len}; shorten the input or train with a larger "
                "model.max_src_len"
            )
        return self.W_a(query)[..., :src_len]  # (B, T, S)


class LocationAwareAttention(Attention):
    """SPEC 6.4's location-aware score (Chorowski et al. 2015):
    score(s_t, h_i) = W_a^T tanh(W_b s_t + W_c h_i + U f_{t,i} + b) with f_t = F * alpha^{t-1}, the
    previous step's weights convolved by `filters` filters of `kernel` positions (zero beyond the
    ends, and zero at padding, where alpha is 0). Keys are W_c h, as for concat. The first step
    reads alpha^0 uniform over the real positions. With `coverage` the filters read the coverage
    c^t instead of alpha^{t-1} (Chorowski's location-aware score over the sum of past weights)."""

    reads_previous = True

    def __init__(
        self, query_size: int, key_size: int, attn_size: int, filters: int, kernel: int, *, coverage: bool = False
    ) -> None:
        super().__init__()
        self.accumulates = coverage
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"location-aware attention needs an odd kernel width, got {kernel}")
        self.W_a = nn.Linear(attn_size, 1, bias=False)
        self.W_b = nn.Linear(query_size, attn_size, bias=False)
        self.W_c = nn.Linear(key_size, attn_size, bias=False)
        self.F = nn.Conv1d(1, filters, kernel, padding=kernel // 2, bias=False)
        self.U = nn.Linear(filters, attn_size, bias=False)
        self.b = nn.Parameter(torch.zeros(attn_size))

    def precompute_keys(self, values: Tensor) -> Tensor:
        return self.W_c(values)  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor, previous: Tensor) -> Tensor:
        """query (B, T, Hq), keys (B, S, A), previous (B, T, S) -> (B, T, S)."""
        B, T, S = previous.shape
        f = self.F(previous.reshape(B * T, 1, S).to(self.F.weight.dtype))  # (B * T, F, S)
        location = self.U(f.transpose(1, 2)).view(B, T, S, -1)  # U f_{t,i}: (B, T, S, A)
        sq = (self.W_b(query) + self.b.to(query.dtype)).to(keys.dtype)  # (B, T, A)
        hidden = tanh(sq.unsqueeze(2) + keys.unsqueeze(1) + location.to(keys.dtype))  # (B, T, S, A)
        return self.W_a(hidden.to(query.dtype)).squeeze(-1)  # (B, T, S)


ATTENTIONS = ("dot", "scaled_dot", "general", "concat", "location", "location_aware")
COVERAGE_KINDS = ("concat", "location_aware")  # the scores that can read the coverage c^t


def build_attention(
    kind: str,
    *,
    query_size: int,
    key_size: int,
    attn_size: int = 0,
    max_src_len: int = 128,
    attn_filters: int = 10,
    attn_kernel: int = 31,
    coverage: bool = False,
) -> Attention:
    """Make the attention named `kind` (SPEC 3); with `coverage`, its score also reads the sum of
    past weights (concat: `CoverageAttention`; location_aware: filters over that sum).

    Raises:
        ValueError: unknown kind (the message lists the valid ones), dot / scaled_dot with query
            and key sizes that differ, or coverage with a kind whose score cannot read it.
    """
    if coverage and kind not in COVERAGE_KINDS:
        raise ValueError(
            f"coverage adds the sum of past weights inside an additive score; it needs attention "
            f"{' or '.join(COVERAGE_KINDS)}, not {kind}"
        )
    if kind in ("dot", "scaled_dot") and query_size != key_size:
        raise ValueError(
            f"{kind} attention needs the decoder state and encoder outputs to have equal size, "
            f"got {query_size} and {key_size}; use 'general' or 'concat' for different sizes"
        )
    builders = {
        "dot": lambda: DotAttention(),
        "scaled_dot": lambda: ScaledDotAttention(key_size),
        "general": lambda: GeneralAttention(query_size, key_size),
        "concat": lambda: (CoverageAttention if coverage else ConcatAttention)(
            query_size, key_size, attn_size or query_size
        ),
        "location": lambda: LocationAttention(query_size, max_src_len),
        "location_aware": lambda: LocationAwareAttention(
            query_size, key_size, attn_size or query_size, attn_filters, attn_kernel, coverage=coverage
        ),
    }
    if kind not in builders:
        raise ValueError(f"unknown attention {kind!r}; valid kinds: {', '.join(builders)}")
    return builders[kind]()
