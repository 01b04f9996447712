"""Joint CTC / attention decoding (decoding/ctc_prefix.py): the prefix scores against a sum over
every CTC path, padding, and beam search ranking by the joint score."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from attnseq.decoding.ctc_prefix import CTCPrefixScorer
from tests.test_ctc import collapse

V = 3  # target ids 0..2 (2 plays </s>); the blank is id 3
EOS = 2


def brute_force(logp: np.ndarray):
    """{collapsed label sequence: total probability} over every path of a (S, C) log-prob table."""
    S, C = logp.shape
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(C), repeat=S):
        p = math.exp(sum(logp[t, c] for t, c in enumerate(path)))
        key = collapse(path, C - 1)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def prefix_prob(totals, prefix):
    return sum(p for seq, p in totals.items() if seq[: len(prefix)] == tuple(prefix))


def table(seed: int, S: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(S, V + 1, generator=g) * 1.5, dim=-1)


@pytest.mark.parametrize("hypothesis", [(0,), (0, 0), (0, 1, 0), (1, 1, 1), (1, 0, 0, 1)])
def test_prefix_and_final_scores_equal_a_sum_over_every_path(hypothesis):
    S = 6
    logp = table(0, S)
    totals = brute_force(logp.numpy().astype(np.float64))
    scorer = CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([S]), eos_id=EOS, weight=1.0)
    zeros = torch.zeros(1, V)
    score = 0.0
    for k, token in enumerate(hypothesis):
        increments = scorer.extend(zeros)
        for c in (0, 1):  # every candidate's prefix probability, not only the one taken
            expected = prefix_prob(totals, hypothesis[:k] + (c,))
            assert math.exp(score + float(increments[0, c])) == pytest.approx(expected, rel=1e-4, abs=1e-12)
        ended = math.exp(score + float(increments[0, EOS]))
        assert ended == pytest.approx(totals.get(hypothesis[:k], 0.0), rel=1e-4, abs=1e-12)  # g </s>
        score += float(increments[0, token])
        scorer.advance(torch.tensor([0]), torch.tensor([token]))
    final = math.exp(score + float(scorer.extend(zeros)[0, EOS]))
    assert final == pytest.approx(totals.get(hypothesis, 0.0), rel=1e-4, abs=1e-12)


def test_a_padded_recording_scores_as_it_does_alone():
    long, short = table(1, 7), table(2, 4)
    padded = torch.stack([long, torch.cat([short, table(3, 3)])])  # the short one's padding is noise
    batch = CTCPrefixScorer(padded, torch.tensor([7, 4]), eos_id=EOS, weight=0.5)
    alone = CTCPrefixScorer(short.unsqueeze(0), torch.tensor([4]), eos_id=EOS, weight=0.5)
    logp = torch.log_softmax(torch.randn(2, V), dim=-1)
    for token in (1, 1, 0):
        both, one = batch.extend(logp), alone.extend(logp[1:])
        torch.testing.assert_close(both[1:], one)
        batch.advance(torch.tensor([0, 1]), torch.tensor([token, token]))
        alone.advance(torch.tensor([0]), torch.tensor([token]))


def test_rows_follow_the_beams_they_extend():
    logp = table(4, 5)
    scorer = CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([5]), eos_id=EOS, weight=1.0)
    zeros = torch.zeros(1, V)
    scorer.extend(zeros)
    scorer.advance(torch.tensor([0, 0]), torch.tensor([0, 1]))  # two beams: "0" and "1"
    two = scorer.extend(torch.zeros(2, V))
    scorer.advance(torch.tensor([1]), torch.tensor([0]))  # keep "1 0" only
    totals = brute_force(logp.numpy().astype(np.float64))
    assert math.exp(float(two[1, 0]) + math.log(prefix_prob(totals, (1,)))) == pytest.approx(
        prefix_prob(totals, (1, 0)), rel=1e-4
    )
    assert scorer.sentence.tolist() == [0] and scorer.last.tolist() == [0]


def test_the_joint_increment_mixes_attention_and_ctc():
    logp = table(5, 5)
    att = torch.log_softmax(torch.randn(1, V), dim=-1)
    ctc_only = CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([5]), eos_id=EOS, weight=1.0).extend(att)
    mixed = CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([5]), eos_id=EOS, weight=0.3).extend(att)
    torch.testing.assert_close(mixed, 0.7 * att + 0.3 * ctc_only)
    ruled_out = att.clone()
    ruled_out[0, 1] = float("-inf")
    assert CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([5]), eos_id=EOS, weight=1.0).extend(ruled_out)[0, 1] == (
        float("-inf")
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CTCPrefixScorer(logp.unsqueeze(0), torch.tensor([5]), eos_id=EOS, weight=1.5)


def ctc_table(frames: list[int], sure: float = 0.9, columns: int = 7) -> torch.Tensor:
    """(S, columns) log-probabilities: each frame says its id with probability `sure`."""
    p = torch.full((len(frames), columns), (1 - sure) / (columns - 1))
    for t, c in enumerate(frames):
        p[t, c] = sure
    return p.log()


def test_beam_search_ranks_by_the_joint_score():
    from attnseq.decoding import beam_search
    from tests.test_beam import BOS, PAD, TABLE, A, B, PrefixModel
    from tests.test_beam import EOS as END

    blank = 6
    tables = {0: ctc_table([A, blank, A, blank]), 1: ctc_table([B, blank, blank, blank])}

    def run(weight: float):
        model = PrefixModel([TABLE, TABLE])
        log_probs = torch.stack([tables[0], tables[1]])

        def scorer(memory):
            return CTCPrefixScorer(log_probs[memory.sentence], torch.tensor([4, 4]), eos_id=END, weight=weight)

        return beam_search(model, torch.full((2, 3), 7), torch.full((2,), 3), beam_size=2, n_best=2, bos_id=BOS,
                           eos_id=END, pad_id=PAD, max_len=6, penalty="none",
                           prefix_scorer=None if weight == 0 else scorer)  # fmt: skip

    alone = run(0.0)
    assert [h.tokens for h in alone[0]][0] == [A, END] and [h.tokens for h in alone[1]][0] == [A, END]
    joint = run(1.0)
    assert joint[0][0].tokens == [A, A, END]  # the CTC layer hears two words
    assert joint[1][0].tokens == [B, END]  # ... and here one other word
    for hyps, table in zip(joint, (tables[0], tables[1])):  # a finished score is log P_CTC(exactly g)
        totals = brute_force(table.numpy().astype(np.float64))
        for h in hyps:
            assert h.score == pytest.approx(math.log(totals[tuple(h.tokens[:-1])]), abs=1e-4)
    half = run(0.5)[0][0]
    assert half.score == pytest.approx(0.5 * math.log(0.243) + 0.5 * joint[0][0].score, abs=1e-4)
