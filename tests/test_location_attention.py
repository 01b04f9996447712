"""Location-aware attention (SPEC 6.4, Chorowski et al. 2015): the score against a NumPy
transcription with set weights and previous weights, masking and padding, the previous weights
carried in the decoder state through greedy and beam search, decoding copies, and a short training
run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnseq.config import load_config
from attnseq.decoding.beam import beam_search
from attnseq.decoding.greedy import greedy_search
from attnseq.errors import AttnseqError
from attnseq.fast.decoding import decoding_copy
from attnseq.models.seq2seq import build_model
from attnseq.modules.attention import LocationAwareAttention, build_attention
from tests.conftest import needs_native_bf16
from tests.test_models import batch, forced_equals_steps, loop_of_steps, make_model, tiny

B, S, HQ, HK, A, FILTERS, KERNEL = 3, 7, 5, 4, 6, 3, 5
LENGTHS = [7, 4, 1]


def numpy_location_aware(w: dict[str, np.ndarray], s: np.ndarray, H: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """e_i = W_a^T tanh(W_b s + W_c h_i + U f_i + b), f = F * prev (zero beyond the ends), written
    out position by position. s (Hq,), H (N, K), prev (N,) -> (N,)."""
    conv, half = w["F.weight"][:, 0, :], w["F.weight"].shape[-1] // 2  # (filters, k)
    n = H.shape[0]
    e = np.zeros(n)
    for i in range(n):
        f = np.zeros(conv.shape[0])
        for j in range(conv.shape[0]):
            for k in range(conv.shape[1]):
                src = i + k - half
                if 0 <= src < n:
                    f[j] += conv[j, k] * prev[src]
        hidden = w["W_b.weight"] @ s + w["W_c.weight"] @ H[i] + w["U.weight"] @ f + w["b"]
        e[i] = w["W_a.weight"][0] @ np.tanh(hidden)
    return e


def make_attention(seed: int = 1) -> LocationAwareAttention:
    torch.manual_seed(seed)
    att = build_attention("location_aware", query_size=HQ, key_size=HK, attn_size=A, attn_filters=FILTERS,
                          attn_kernel=KERNEL).double()  # fmt: skip
    att.requires_grad_(False)
    for p in att.parameters():  # set weights: deterministic, away from zero
        torch.nn.init.uniform_(p, -1.0, 1.0)
    return att


def inputs(extra_pad: int = 0):
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(B, HQ, generator=gen, dtype=torch.float64)
    values = torch.randn(B, S, HK, generator=gen, dtype=torch.float64)
    mask = torch.arange(S)[None, :] < torch.tensor(LENGTHS)[:, None]
    values = values * mask[..., None]
    prev = torch.rand(B, S, generator=gen, dtype=torch.float64) * mask
    prev = prev / prev.sum(1, keepdim=True)  # a previous step's weights: 0 at padding, summing to 1
    if extra_pad:
        values = torch.cat([values, torch.zeros(B, extra_pad, HK, dtype=torch.float64)], dim=1)
        mask = torch.cat([mask, torch.zeros(B, extra_pad, dtype=torch.bool)], dim=1)
        prev = torch.cat([prev, torch.zeros(B, extra_pad, dtype=torch.float64)], dim=1)
    return query, values, mask, prev


def softmax(e: np.ndarray) -> np.ndarray:
    z = np.exp(e - e.max())
    return z / z.sum()


def test_score_matches_numpy_transcription_with_set_weights():
    att = make_attention()
    query, values, mask, prev = inputs()
    assert att.reads_previous
    context, weights = att(query, att.precompute_keys(values), values, mask, prev)
    w = {name: p.detach().numpy() for name, p in att.named_parameters()}
    for b, n in enumerate(LENGTHS):
        H = values[b, :n].numpy()
        alpha = softmax(numpy_location_aware(w, query[b].numpy(), H, prev[b, :n].numpy()))
        np.testing.assert_allclose(weights[b, :n].numpy(), alpha, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(context[b].numpy(), alpha @ H, rtol=1e-10, atol=1e-12)
    # the previous weights matter: other ones give other weights
    _, moved = att(query, att.precompute_keys(values), values, mask, prev.roll(1, dims=1) * mask)
    assert not torch.allclose(moved[0], weights[0])


def test_masked_positions_weigh_exactly_zero_and_the_first_step_reads_uniform_weights():
    att = make_attention()
    query, values, mask, prev = inputs()
    keys = att.precompute_keys(values)
    _, weights = att(query, keys, values, mask, prev)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, dtype=torch.float64))
    alpha0 = att.initial_weights(mask, torch.float64)
    uniform = (1.0 / mask.sum(1).double()).repeat_interleave(mask.sum(1))
    assert alpha0.dtype == torch.float64 and torch.all(alpha0[~mask] == 0.0) and torch.equal(alpha0[mask], uniform)
    torch.testing.assert_close(att(query, keys, values, mask)[1], att(query, keys, values, mask, alpha0)[1])


def test_extra_padding_changes_nothing_at_real_positions():
    att = make_attention()
    query, values, mask, prev = inputs()
    pq, pv, pm, pp = inputs(extra_pad=4)
    ctx, w = att(query, att.precompute_keys(values), values, mask, prev)
    ctx_p, w_p = att(pq, att.precompute_keys(pv), pv, pm, pp)
    torch.testing.assert_close(ctx_p, ctx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_p[:, :S], w, rtol=1e-12, atol=1e-12)
    assert torch.all(w_p[:, S:] == 0.0)


def test_grouped_and_many_step_queries_equal_one_row_at_a_time():
    """Beam search's G consecutive rows per sentence, and (B, T, Hq) queries with their own previous
    weights, attend as single rows do."""
    att = make_attention()
    _, values, mask, _ = inputs()
    keys = att.precompute_keys(values)
    gen = torch.Generator().manual_seed(5)
    G = 3
    queries = torch.randn(B, G, HQ, generator=gen, dtype=torch.float64)
    prevs = torch.rand(B, G, S, generator=gen, dtype=torch.float64) * mask[:, None]
    ctx_g, w_g = att(queries.flatten(0, 1), keys, values, mask, prevs.flatten(0, 1))  # (B * G, ...)
    ctx_t, w_t = att(queries, keys, values, mask, prevs)  # (B, G, ...)
    for g in range(G):
        ctx, w = att(queries[:, g], keys, values, mask, prevs[:, g])
        torch.testing.assert_close(ctx_g.view(B, G, -1)[:, g], ctx)
        torch.testing.assert_close(w_g.view(B, G, -1)[:, g], w)
        torch.testing.assert_close(w_t[:, g], w)


def test_an_even_kernel_is_refused_by_the_module_and_the_config():
    with pytest.raises(ValueError, match="odd kernel width, got 4"):
        build_attention("location_aware", query_size=4, key_size=4, attn_kernel=4)
    with pytest.raises(AttnseqError, match="'model.attn_kernel' must be an odd number"):
        load_config(None, ["model.attention=location_aware", "model.attn_kernel=30", "data.train=x", "data.valid=x"])
    cfg = load_config(None, ["model.attention=location_aware", "model.attn_filters=4", "model.attn_kernel=9",
                             "data.train=x", "data.valid=x"])  # fmt: skip
    att = build_model(cfg.model, src_vocab_size=9, tgt_vocab_size=9).decoder.attention
    assert isinstance(att, LocationAwareAttention) and tuple(att.F.weight.shape) == (4, 1, 9)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_the_state_carries_the_weights_and_the_loop_is_not_fused(decoder):
    model = make_model(tiny(decoder, "location_aware", attn_kernel=3))
    assert model.decoder.attention.score_form() is None and model.fast_features is None
    src, src_lengths, tgt_in, _ = batch()
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    torch.testing.assert_close(state.attention, model.decoder.attention.initial_weights(memory.src_mask, torch.float64))
    with torch.no_grad():
        _, state, attn = model.step(tgt_in[:, 0], state, memory)
    assert torch.equal(state.attention, attn)
    picked = state.index_select(torch.tensor([2, 0]))
    assert torch.equal(picked.attention, attn[[2, 0]])


def test_luong_without_input_feeding_runs_the_steps_in_turn():
    forced_equals_steps(make_model(tiny("luong", "location_aware", input_feeding=False, attn_kernel=3)))


BOS, EOS, PAD = 2, 3, 0


def search_model(decoder: str):
    from attnseq.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=16, enc_hidden_size=24, dec_hidden_size=24, decoder=decoder, attention="location_aware",
                      attn_kernel=5, dropout=0.0)  # fmt: skip
    model = build_model(cfg, src_vocab_size=20, tgt_vocab_size=12).eval()
    with torch.no_grad():
        model.decoder.W_y.bias[EOS] += 1.5  # sentences finish at different steps
    src = torch.randint(4, 20, (5, 7), generator=torch.Generator().manual_seed(1))
    src_lengths = torch.tensor([7, 7, 5, 4, 2])
    for row, n in enumerate(src_lengths.tolist()):
        src[row, n:] = PAD
    return model, src, src_lengths


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_beam_of_one_equals_greedy(decoder):
    model, src, src_lengths = search_model(decoder)
    greedy = greedy_search(model, src, src_lengths, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=12)
    beams = beam_search(model, src, src_lengths, beam_size=1, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=12,
                        penalty="none")  # fmt: skip
    assert {len(g.tokens) for (g,) in greedy} != {12}
    for (hyp,), (g,) in zip(beams, greedy, strict=True):
        assert hyp.tokens == g.tokens
        assert hyp.score == pytest.approx(g.score, abs=1e-5)
        assert torch.allclose(hyp.attention, g.attention, atol=1e-6)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_every_beam_scores_as_its_tokens_teacher_forced(decoder):
    """Beam search reorders the state's previous weights with the beams: each of the K hypotheses'
    score and attention equal those of the model teacher-forced on its own tokens, alone."""
    model, src, src_lengths = search_model(decoder)
    beams = beam_search(model, src, src_lengths, beam_size=4, n_best=4, bos_id=BOS, eos_id=EOS, pad_id=PAD,
                        max_len=9, penalty="none")  # fmt: skip
    checked = 0
    for row, hyps in enumerate(beams):
        n = int(src_lengths[row])
        for hyp in hyps:
            tgt_in = torch.tensor([[BOS, *hyp.tokens[:-1]]])
            with torch.no_grad():
                logits, attn = model.logits(src[row : row + 1, :n], src_lengths[row : row + 1], tgt_in)
            logp = torch.log_softmax(logits[0].float(), -1)
            score = float(logp[torch.arange(len(hyp.tokens)), torch.tensor(hyp.tokens)].sum())
            assert hyp.score == pytest.approx(score, abs=1e-4)
            torch.testing.assert_close(hyp.attention[:, :n], attn[0].float(), atol=1e-5, rtol=1e-5)
            checked += 1
    assert checked == 4 * len(beams)


def test_float32_decoding_copy_steps_as_the_model():
    model = make_model(tiny("luong", "location_aware", input_feeding=True, attn_size=5, attn_kernel=3)).float()
    fast = decoding_copy(model, torch.float32)
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        for a, b in zip(loop_of_steps(model, src, src_lengths, tgt_in), loop_of_steps(fast, src, src_lengths, tgt_in)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_native_bf16
def test_bf16_decoding_copy_stays_close():
    model = make_model(tiny("luong", "location_aware", input_feeding=True, attn_size=5, attn_kernel=3)).float()
    fast = decoding_copy(model, torch.bfloat16)
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        ref, _ = loop_of_steps(model, src, src_lengths, tgt_in)
        low, attn = loop_of_steps(fast, src, src_lengths, tgt_in)
    assert attn.dtype == torch.float32 and torch.allclose(attn.sum(-1), torch.ones(3, tgt_in.size(1)))
    assert (low.float() - ref).abs().max() < 0.05


def test_a_short_training_run_learns_to_reverse_sequences():
    """Reversing 3-5 tokens needs the attention to walk right to left one position a step; the
    location-aware model learns it in about a hundred updates (a model that learned nothing gets
    none right)."""
    from attnseq.batching import pad
    from attnseq.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=16, enc_hidden_size=32, dec_hidden_size=32, decoder="luong",
                      attention="location_aware", attn_size=16, attn_filters=4, attn_kernel=5, dropout=0.0)  # fmt: skip
    V = 12
    model = build_model(cfg, src_vocab_size=V, tgt_vocab_size=V)
    gen = torch.Generator().manual_seed(1)

    def sample(n_rows):
        seqs = [torch.randint(4, V, (int(torch.randint(3, 6, (1,), generator=gen)),), generator=gen).tolist()
                for _ in range(n_rows)]  # fmt: skip
        src = pad([s + [EOS] for s in seqs], PAD)
        tgt_in = pad([[BOS] + s[::-1] for s in seqs], PAD)
        tgt_out = pad([s[::-1] + [EOS] for s in seqs], PAD)
        return seqs, src, torch.tensor([len(s) + 1 for s in seqs]), tgt_in, tgt_out

    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(120):
        _, src, lengths, tgt_in, tgt_out = sample(32)
        loss = model.loss(src, lengths, tgt_in, tgt_out, pad_id=PAD) / (tgt_out != PAD).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    seqs, src, lengths, _, _ = sample(100)
    out = greedy_search(model, src, lengths, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=8)
    right = sum(hyp.tokens[: len(s) + 1] == s[::-1] + [EOS] for (hyp,), s in zip(out, seqs))
    assert right >= 90, right
