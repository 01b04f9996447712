"""Beam search driven by a scripted fake decoder (exact hypotheses and scores), and beam 1 equal
to greedy search on real models."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from attnseq.config import ModelConfig
from attnseq.decoding import Hypothesis, beam_search, greedy_search, length_penalty
from attnseq.models.seq2seq import build_model

PAD, UNK, BOS, EOS, A, B = 0, 1, 2, 3, 4, 5
V = 6


@dataclass
class Rows:
    """Per-row facts the fake model needs; reordered by the search like a real state."""

    sentence: torch.Tensor  # (N,) which sentence each row belongs to
    prefixes: list[tuple[int, ...]]
    S: int

    def index_select(self, idx):
        return Rows(self.sentence[idx], [self.prefixes[i] for i in idx.tolist()], self.S)


class PrefixModel:
    """The next-token distribution depends on the sentence and the tokens generated so far:
    tables[sentence][prefix] = {token: probability}; unlisted prefixes end with </s> for sure.
    The attention of step t is one-hot on source position t (clipped)."""

    def __init__(self, tables):
        self.tables = tables
        self.steps = 0

    def encode(self, src, src_lengths):
        return Rows(torch.arange(src.size(0)), [()] * src.size(0), src.size(1))

    def init_state(self, memory):
        return memory

    def step(self, prev, state, memory):
        self.steps += 1
        # the search's contract: memory holds one row per sentence, the state G consecutive rows each
        groups = len(state.prefixes) // memory.sentence.numel()
        assert torch.equal(state.sentence, memory.sentence.repeat_interleave(groups))
        prefixes = [p if int(tok) == BOS else (*p, int(tok)) for p, tok in zip(state.prefixes, prev)]
        logits = torch.full((len(prefixes), V), float("-inf"))
        attn = torch.zeros(len(prefixes), memory.S)
        for row, (b, prefix) in enumerate(zip(state.sentence.tolist(), prefixes)):
            for tok, p in self.tables[b].get(prefix, {EOS: 1.0}).items():
                logits[row, tok] = math.log(p)
            attn[row, min(len(prefix), memory.S - 1)] = 1.0
        return logits, Rows(state.sentence, prefixes, state.S), attn


# a</s> (0.6*0.55 = 0.33) beats greedy-reachable paths; aa</s> = 0.6*0.45*0.9 = 0.243 is longer
TABLE = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS: 0.55, A: 0.45},
    (A, A): {EOS: 0.9, A: 0.1},
    (B,): {B: 0.625, EOS: 0.375},
    (B, B): {B: 1.0},
}


def search(tables, *, beam=2, n_best=2, penalty="none", alpha=0.6, max_len=10):
    src = torch.full((len(tables), 3), 7)
    model = PrefixModel(tables)
    found = beam_search(model, src, torch.full((len(tables),), 3), beam_size=beam, n_best=n_best, bos_id=BOS,
                        eos_id=EOS, pad_id=PAD, max_len=max_len, penalty=penalty, alpha=alpha)  # fmt: skip
    return found, model


def test_exact_hypotheses_and_scores():
    (hyps,), _ = search([TABLE])
    assert [h.tokens for h in hyps] == [[A, EOS], [A, A, EOS]]
    assert hyps[0].score == pytest.approx(math.log(0.33), abs=1e-6)
    assert hyps[1].score == pytest.approx(math.log(0.243), abs=1e-6)
    assert [h.rank_score for h in hyps] == [h.score for h in hyps]  # no length penalty
    assert all(isinstance(h, Hypothesis) for h in hyps)  # greedy search's type too
    assert [tuple(h.attention.shape) for h in hyps] == [(2, 3), (3, 3)]  # one row per token


def test_beam_finds_what_greedy_misses():
    # greedy takes a (0.6) then stops: 0.6 * 0.3 = 0.18; the beam keeps b and finds b</s> 0.36
    table = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.3, A: 0.7}, (A, A): {EOS: 0.2, A: 0.8}, (B,): {EOS: 0.9, A: 0.1}}
    (hyps,), _ = search([table], n_best=1)
    assert hyps[0].tokens == [B, EOS]
    assert hyps[0].score == pytest.approx(math.log(0.36), abs=1e-6)


def test_length_penalty_flips_the_ranking():
    (plain,), _ = search([TABLE], penalty="none")
    (avg,), _ = search([TABLE], penalty="avg")
    assert [h.tokens for h in plain] == [[A, EOS], [A, A, EOS]]
    assert [h.tokens for h in avg] == [[A, A, EOS], [A, EOS]]
    assert avg[0].rank_score == pytest.approx(math.log(0.243) / 3, abs=1e-6)
    (gnmt,), _ = search([TABLE], penalty="gnmt", alpha=3.0)  # ((5+n)/6)^3 favours length enough
    assert [h.tokens for h in gnmt] == [[A, A, EOS], [A, EOS]]
    assert gnmt[0].rank_score == pytest.approx(math.log(0.243) / length_penalty("gnmt", 3, 3.0), abs=1e-6)


def test_length_penalty_values():
    assert length_penalty("none", 7) == 1.0
    assert length_penalty("avg", 7) == 7.0
    assert length_penalty("gnmt", 1, 0.6) == 1.0
    assert length_penalty("gnmt", 7, 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown length penalty"):
        length_penalty("wu", 3)


def test_max_length_finishes_hypotheses_as_they_are():
    (hyps,), model = search([TABLE], max_len=1)
    assert [h.tokens for h in hyps] == [[A], [B]]  # no </s>: stopped at the limit
    assert [h.score for h in hyps] == pytest.approx([math.log(0.6), math.log(0.4)])
    assert model.steps == 1
    # a limit per sentence: the first stops after one token, the second searches on
    found, _ = search([TABLE, TABLE], max_len=torch.tensor([1, 10]))
    assert [h.tokens for h in found[0]] == [[A], [B]]
    assert [h.tokens for h in found[1]] == [[A, EOS], [A, A, EOS]]


def test_n_best_order_and_count():
    (three,), _ = search([TABLE], beam=3, n_best=3)
    ranks = [h.rank_score for h in three]
    assert ranks == sorted(ranks, reverse=True) and len(three) == 3
    (one,), _ = search([TABLE], beam=3, n_best=1)
    assert one[0].tokens == three[0].tokens
    with pytest.raises(ValueError, match="n_best"):
        search([TABLE], beam=2, n_best=3)


def test_stops_when_every_sentence_has_finished():
    _, model = search([{(): {EOS: 1.0}}])
    assert model.steps == 1  # one step: every beam ended at once, although max_len is 10


def test_batched_sentences_search_independently():
    other = {(): {B: 0.9, A: 0.1}, (B,): {B: 0.5, EOS: 0.5}, (B, B): {EOS: 1.0}}
    together, _ = search([TABLE, other, TABLE])
    alone = [search([t])[0][0] for t in (TABLE, other, TABLE)]
    for got, want in zip(together, alone, strict=True):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want])


def test_attention_follows_each_hypothesis():
    (hyps,), _ = search([TABLE])
    for h in hyps:
        assert h.attention.shape == (len(h.tokens), 3)
        expected = torch.zeros(len(h.tokens), 3)
        for t in range(len(h.tokens)):
            expected[t, min(t, 2)] = 1.0
        assert torch.equal(h.attention, expected)


@pytest.mark.parametrize(
    "decoder,attention", [("luong", "general"), ("bahdanau", "concat"), ("every-step", "dot"), ("init", "dot")]
)
def test_beam_of_one_equals_greedy_on_a_real_model(decoder, attention):
    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=16, enc_hidden_size=24, dec_hidden_size=24, decoder=decoder, attention=attention,
                      dropout=0.0)  # fmt: skip
    model = build_model(cfg, src_vocab_size=20, tgt_vocab_size=12).eval()
    # a model that rather ends soon, so that sentences finish at different steps
    with torch.no_grad():
        model.decoder.W_y.bias[EOS] += 1.5
    src = torch.randint(4, 20, (5, 7))
    src_lengths = torch.tensor([7, 7, 5, 4, 2])
    src[2, 5:] = PAD
    src[3, 4:] = PAD
    src[4, 2:] = PAD
    greedy = greedy_search(model, src, src_lengths, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=12)
    beams = beam_search(model, src, src_lengths, beam_size=1, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=12,
                        penalty="none")  # fmt: skip
    assert {len(g.tokens) for (g,) in greedy} != {12}  # some sentences ended before the limit
    for (hyp,), (g,) in zip(beams, greedy, strict=True):
        assert hyp.tokens == g.tokens
        assert hyp.score == pytest.approx(g.score, abs=1e-5)
        assert g.rank_score == g.score
        if g.attention is not None:
            assert torch.allclose(hyp.attention, g.attention, atol=1e-6)
