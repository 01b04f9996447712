"""SPEC 2.1-2.3 and 3: every score function against a direct NumPy transcription of its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnseq.errors import AttnseqError
from attnseq.modules.attention import ATTENTIONS, build_attention

B, S, A = 3, 6, 7
LENGTHS = [6, 4, 1]


def sizes(kind: str) -> tuple[int, int]:
    """(query size, key size): equal where SPEC needs it, different elsewhere so a swap shows."""
    return (5, 5) if kind in ("dot", "scaled_dot") else (5, 4)


def softmax_masked(e: np.ndarray, length: int) -> np.ndarray:
    """SPEC 2.2 over the first `length` positions; exactly 0 beyond."""
    out = np.zeros_like(e)
    z = np.exp(e[:length] - e[:length].max())
    out[:length] = z / z.sum()
    return out


def numpy_scores(kind: str, att, s: np.ndarray, H: np.ndarray) -> np.ndarray:
    """score(s, h_i) for i = 1..S, written from SPEC 3 with the module's weights."""
    w = {name: p.detach().double().numpy() for name, p in att.named_parameters()}
    if kind == "dot":  # 3.1  s^T h
        return np.array([s @ h for h in H])
    if kind == "scaled_dot":  # 3.2  s^T h / sqrt(n)
        return np.array([s @ h / np.sqrt(H.shape[1]) for h in H])
    if kind == "general":  # 3.3  s^T W_a h
        return np.array([s @ w["W_a.weight"] @ h for h in H])
    if kind == "concat":  # 3.4  W_a^T tanh(W_b s + W_c h)
        W_a = w["W_a.weight"][0]
        return np.array([W_a @ np.tanh(w["W_b.weight"] @ s + w["W_c.weight"] @ h) for h in H])
    if kind == "location":  # 3.5  W_a s, one score per position
        return (w["W_a.weight"] @ s)[: H.shape[0]]
    if kind == "location_aware":  # 6.4  with no previous weights given: alpha^0 uniform over the real positions
        from tests.test_location_attention import numpy_location_aware

        return numpy_location_aware(w, s, H, np.full(H.shape[0], 1.0 / H.shape[0]))
    raise AssertionError(kind)


def make(kind: str):
    torch.manual_seed(1)
    hq, hk = sizes(kind)
    att = build_attention(kind, query_size=hq, key_size=hk, attn_size=A, max_src_len=10).double()
    att.requires_grad_(False)
    for p in att.parameters():  # set weights: deterministic, away from zero
        torch.nn.init.uniform_(p, -1.0, 1.0)
    return att


def inputs(kind: str):
    hq, hk = sizes(kind)
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(B, hq, generator=gen, dtype=torch.float64)
    values = torch.randn(B, S, hk, generator=gen, dtype=torch.float64)
    mask = torch.arange(S)[None, :] < torch.tensor(LENGTHS)[:, None]
    values = values * mask[..., None]  # padding positions hold zeros, as the encoder leaves them
    return query, values, mask


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_a_score_form_describes_the_score(kind):
    """What a fused loop reads instead of the class (`Attention.score_form`): the scores it gives on
    the precomputed keys equal `score`'s; location and location-aware attention have none."""
    att = make(kind)
    query, values, _ = inputs(kind)
    keys = att.precompute_keys(values)
    form = att.score_form()
    if kind in ("location", "location_aware"):
        assert form is None
        return
    q = query.unsqueeze(1)  # (B, 1, Hq)
    want = att.score(q, keys)
    if form.kind == "dot":
        got = torch.bmm(q, keys.transpose(1, 2)) * form.scale
        assert form.scale == (1 / np.sqrt(values.size(-1)) if kind == "scaled_dot" else 1.0)
    else:
        assert form.kind == "concat" and kind == "concat"
        got = torch.tanh((q @ form.W_b.T).unsqueeze(2) + keys.unsqueeze(1)) @ form.w_a  # (B, 1, S)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_matches_numpy_transcription(kind):
    att = make(kind)
    query, values, mask = inputs(kind)
    context, weights = att(query, att.precompute_keys(values), values, mask)
    for b, length in enumerate(LENGTHS):
        s, H = query[b].numpy(), values[b].numpy()
        alpha = softmax_masked(numpy_scores(kind, att, s, H[:length]).astype(float).ravel(), length)
        alpha = np.pad(alpha, (0, S - length))
        np.testing.assert_allclose(weights[b].numpy(), alpha, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(context[b].numpy(), alpha @ H, rtol=1e-10, atol=1e-12)  # SPEC 2.3


def test_concat_equals_notes_form_with_joined_input():
    """SPEC 3.4: W_a^T tanh(W_b s + W_c h) == W_a^T tanh(W [s; h]) with W = [W_b W_c]."""
    att = make("concat")
    query, values, _ = inputs("concat")
    W = torch.cat([att.W_b.weight, att.W_c.weight], dim=1)  # (A, Hq + K)
    s, H = query[0], values[0]
    joined = torch.stack([att.W_a.weight[0] @ torch.tanh(W @ torch.cat([s, h])) for h in H])
    scores = att.score(query[:1, None], att.precompute_keys(values[:1]))[0, 0]
    torch.testing.assert_close(scores, joined)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_masked_weights_exactly_zero_and_sum_to_one(kind):
    att = make(kind)
    query, values, mask = inputs(kind)
    _, weights = att(query, att.precompute_keys(values), values, mask)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, dtype=torch.float64))


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_many_queries_at_once_equal_one_at_a_time(kind):
    """(B, T, Hq) queries give the same result as T calls with (B, Hq)."""
    att = make(kind)
    _, values, mask = inputs(kind)
    queries = torch.randn(B, 4, sizes(kind)[0], dtype=torch.float64)
    keys = att.precompute_keys(values)
    ctx_all, w_all = att(queries, keys, values, mask)
    for t in range(4):
        ctx, w = att(queries[:, t], keys, values, mask)
        torch.testing.assert_close(ctx_all[:, t], ctx)
        torch.testing.assert_close(w_all[:, t], w)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_padding_does_not_change_weights(kind):
    """Extra padded positions change no weight or context at real positions."""
    att = make(kind)
    query, values, mask = inputs(kind)
    padded_values = torch.cat([values, torch.zeros(B, 3, sizes(kind)[1], dtype=torch.float64)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    ctx, w = att(query, att.precompute_keys(values), values, mask)
    ctx_p, w_p = att(query, att.precompute_keys(padded_values), padded_values, padded_mask)
    torch.testing.assert_close(ctx_p, ctx)
    torch.testing.assert_close(w_p[:, :S], w)
    assert torch.all(w_p[:, S:] == 0.0)


def test_parameter_names_follow_spec():
    names = {kind: sorted(n for n, _ in make(kind).named_parameters()) for kind in ATTENTIONS}
    assert names == {
        "dot": [],
        "scaled_dot": [],
        "general": ["W_a.weight"],
        "concat": ["W_a.weight", "W_b.weight", "W_c.weight"],
        "location": ["W_a.weight"],
        "location_aware": ["F.weight", "U.weight", "W_a.weight", "W_b.weight", "W_c.weight", "b"],
    }


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="valid kinds: dot, scaled_dot, general, concat, location, location_aware"):
        build_attention("additive", query_size=4, key_size=4)


@pytest.mark.parametrize("kind", ["dot", "scaled_dot"])
def test_dot_needs_equal_sizes(kind):
    with pytest.raises(ValueError, match="equal size, got 4 and 6"):
        build_attention(kind, query_size=4, key_size=6)


def test_location_rejects_sources_longer_than_its_maximum():
    att = build_attention("location", query_size=4, key_size=4, max_src_len=5)
    values = torch.zeros(1, 6, 4)
    with pytest.raises(AttnseqError, match="longer than location attention's model.max_src_len = 5"):
        att(torch.zeros(1, 4), values, values, torch.ones(1, 6, dtype=torch.bool))
