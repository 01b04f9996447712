"""Coverage (See et al. 2017): the score against a NumPy transcription, the coverage the decoder
carries equal to the running sum of its attention, the coverage loss on a hand example, the copy
distribution still a distribution, teacher forcing equal to a loop of steps, search, the config's
rules and the loss term in a model's training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnseq.decoding.beam import beam_search
from attnseq.decoding.greedy import greedy_search
from attnseq.errors import AttnseqError
from attnseq.models.seq2seq import build_model
from attnseq.modules.attention import CoverageAttention, build_attention
from attnseq.modules.copy import copy_map
from attnseq.modules.loss import coverage_loss
from attnseq.vocab import SPECIALS, Vocab
from tests.test_models import V_SRC, V_TGT, batch, forced_equals_steps, make_model, targets, tiny

B, S, HQ, HK, A = 3, 6, 5, 4, 7
LENGTHS = [6, 3, 1]


def numpy_coverage_score(w: dict[str, np.ndarray], s: np.ndarray, H: np.ndarray, c: np.ndarray) -> np.ndarray:
    """e_i = W_a^T tanh(W_b s + W_c h_i + w_c c_i), position by position. s (Hq,), H (N, K), c (N,)."""
    hidden = [w["W_b.weight"] @ s + w["W_c.weight"] @ H[i] + w["w_c.weight"][:, 0] * c[i] for i in range(len(H))]
    return np.array([w["W_a.weight"][0] @ np.tanh(h) for h in hidden])


def test_the_score_reads_the_coverage_as_see_et_al_write_it():
    torch.manual_seed(1)
    att = build_attention("concat", query_size=HQ, key_size=HK, attn_size=A, coverage=True).double()
    assert isinstance(att, CoverageAttention) and att.reads_previous and att.accumulates
    assert att.score_form() is None  # no fused loop may drop the coverage term
    for p in att.parameters():
        torch.nn.init.uniform_(p, -1.0, 1.0)
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(B, HQ, generator=gen, dtype=torch.float64)
    values = torch.randn(B, S, HK, generator=gen, dtype=torch.float64)
    mask = torch.arange(S)[None, :] < torch.tensor(LENGTHS)[:, None]
    coverage = torch.rand(B, S, generator=gen, dtype=torch.float64) * 2 * mask
    with torch.no_grad():
        context, weights = att(query, att.precompute_keys(values), values, mask, coverage)
    w = {k: v.numpy() for k, v in att.state_dict().items()}
    for b, n in enumerate(LENGTHS):
        e = numpy_coverage_score(w, query[b].numpy(), values[b, :n].numpy(), coverage[b, :n].numpy())
        alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(weights[b, :n].numpy(), alpha, rtol=1e-10)
        assert torch.all(weights[b, n:] == 0)
        np.testing.assert_allclose(context[b].numpy(), alpha @ values[b, :n].numpy(), rtol=1e-10)
    # the coverage changes the weights (w_c is not ignored)
    with torch.no_grad():
        _, without = att(query, att.precompute_keys(values), values, mask, torch.zeros_like(coverage))
    assert not torch.allclose(without[0], weights[0])


def test_only_additive_scores_take_coverage():
    with pytest.raises(ValueError, match="concat or location_aware, not general"):
        build_attention("general", query_size=4, key_size=4, coverage=True)
    cfg = tiny("luong", "general", coverage=True)
    from attnseq.models.config import check_seq2seq_model

    class Decode:
        shortlist = 0

    class Cfg:
        model, decode = cfg, Decode()

    with pytest.raises(AttnseqError, match="model.coverage adds .* concat or location_aware"):
        check_seq2seq_model(Cfg(), lambda *keys: ", ".join(keys))


def test_the_coverage_loss_on_a_hand_example():
    # one sentence, three steps over three positions; the third step is padding
    attn = torch.tensor([[[0.5, 0.5, 0.0], [0.2, 0.7, 0.1], [0.9, 0.1, 0.0]]])
    keep = torch.tensor([[True, True, False]])
    # c^1 = 0: min = 0;  c^2 = (0.5, 0.5, 0): min(0.2, 0.5) + min(0.7, 0.5) + min(0.1, 0) = 0.7
    assert coverage_loss(attn, keep).item() == pytest.approx(0.7)
    keep_all = torch.tensor([[True, True, True]])
    # c^3 = (0.7, 1.2, 0.1): min(0.9, 0.7) + min(0.1, 1.2) + 0 = 0.8
    assert coverage_loss(attn, keep_all).item() == pytest.approx(1.5)


@pytest.mark.parametrize(("decoder", "attention"), [("luong", "concat"), ("bahdanau", "concat"),
                                                     ("luong", "location_aware")])  # fmt: skip
def test_the_state_carries_the_running_sum_of_the_attention(decoder, attention):
    model = make_model(tiny(decoder, attention, coverage=True, attn_kernel=3))
    src, src_lengths, tgt_in, _ = batch()
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    assert torch.equal(state.attention, torch.zeros_like(state.attention))  # c^1 = 0
    total = torch.zeros_like(state.attention)
    with torch.no_grad():
        for t in range(tgt_in.size(1)):
            _, state, attn = model.step(tgt_in[:, t], state, memory)
            total = total + attn
            torch.testing.assert_close(state.attention, total, rtol=0, atol=1e-12)
    assert torch.all(state.attention[~memory.src_mask] == 0)
    picked = state.index_select(torch.tensor([2, 0]))
    assert torch.equal(picked.attention, total[[2, 0]])


@pytest.mark.parametrize("input_feeding", [True, False])
def test_teacher_forcing_equals_a_loop_of_steps_with_copying(input_feeding):
    src_vocab = Vocab([*SPECIALS, *(f"w{i}" for i in range(V_SRC - 4))])
    tgt_vocab = Vocab([*SPECIALS, *(f"w{i}" for i in range(V_TGT - 4))])  # w0 .. w6: the source's first words
    cfg = tiny("luong", "concat", coverage=True, copy=True, input_feeding=input_feeding)
    torch.manual_seed(3)
    model = build_model(cfg, src_vocab_size=V_SRC, tgt_vocab_size=V_TGT, copy_map=copy_map(src_vocab, tgt_vocab))
    model = model.double().eval()
    logp, attn = forced_equals_steps(model)
    src, src_lengths, tgt_in, lengths = batch()
    # the copy mechanism's mixture is still a distribution over the target vocabulary
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2], dtype=logp.dtype))
    # the training loss adds coverage_loss x its weight to the cross-entropy
    tgt_out = targets(tgt_in, lengths)
    keep = tgt_out != 0
    with torch.no_grad():
        terms = model.loss_terms(src, src_lengths, tgt_in, tgt_out, pad_id=0)
        total = model.loss(src, src_lengths, tgt_in, tgt_out, pad_id=0)
    nll = -logp[keep].gather(1, tgt_out[keep].unsqueeze(1)).sum()
    torch.testing.assert_close(terms["nll"], nll)
    torch.testing.assert_close(terms["coverage"], coverage_loss(attn, keep))
    assert terms["coverage"] > 0
    torch.testing.assert_close(total, nll + cfg.coverage_loss * coverage_loss(attn, keep))


def test_a_model_without_coverage_has_no_coverage_term():
    model = make_model(tiny("luong", "concat"))
    src, src_lengths, tgt_in, lengths = batch()
    with torch.no_grad():
        terms = model.loss_terms(src, src_lengths, tgt_in, targets(tgt_in, lengths), pad_id=0)
    assert set(terms) == {"nll"} and model.coverage_weight == 0


def test_beam_of_one_equals_greedy_with_coverage():
    torch.manual_seed(0)
    model = build_model(tiny("luong", "concat", coverage=True, emb_size=16, enc_hidden_size=24, dec_hidden_size=24),
                        src_vocab_size=20, tgt_vocab_size=12).eval()  # fmt: skip
    src = torch.randint(4, 20, (4, 7), generator=torch.Generator().manual_seed(1))
    src_lengths = torch.tensor([7, 5, 4, 2])
    for row, n in enumerate(src_lengths.tolist()):
        src[row, n:] = 0
    greedy = greedy_search(model, src, src_lengths, bos_id=2, eos_id=3, pad_id=0, max_len=10)
    beams = beam_search(model, src, src_lengths, beam_size=1, bos_id=2, eos_id=3, pad_id=0, max_len=10,
                        penalty="none")  # fmt: skip
    for (hyp,), (g,) in zip(beams, greedy, strict=True):
        assert hyp.tokens == g.tokens
        assert torch.allclose(hyp.attention, g.attention, atol=1e-6)
    wide = beam_search(model, src, src_lengths, beam_size=4, bos_id=2, eos_id=3, pad_id=0, max_len=10,
                       penalty="none")  # fmt: skip
    # a wide beam reorders the carried coverage with its beams: each found score is the model's own
    # log-probability of that output, teacher-forced with the coverage built from scratch
    for row, (hyp, *_) in enumerate(wide):
        tokens = torch.tensor([hyp.tokens])
        tgt_in = torch.cat([torch.tensor([[2]]), tokens[:, :-1]], dim=1)
        with torch.no_grad():
            logits, _ = model.logits(src[row : row + 1], src_lengths[row : row + 1], tgt_in)
        forced = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).sum()
        assert hyp.score == pytest.approx(float(forced), abs=1e-4)
