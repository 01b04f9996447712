"""Greedy search driven by a fake model that emits scripted probabilities."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from attnseq.decoding import Hypothesis, attention_to_cpu, greedy_search

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 6


@dataclass
class Rows:
    """Which sentence each row of the batch is, and the step; reordered like a real state."""

    sentence: torch.Tensor  # (n,)
    S: int
    t: int = 0

    def index_select(self, idx):
        return Rows(self.sentence[idx], self.S, self.t)


class ScriptedModel:
    """step t returns the log-probabilities script[b][t] for sentence b; attention = one-hot on t.
    Records how many rows each step ran."""

    def __init__(self, script: list[list[list[float]]]):
        self.script = torch.log(torch.tensor(script))  # (B, T, V)
        self.rows: list[int] = []

    def encode(self, src, src_lengths):
        return Rows(torch.arange(src.size(0)), src.size(1))

    def init_state(self, memory):
        return memory

    def step(self, prev_tokens, state, memory):
        t = state.t
        assert prev_tokens.size(0) == state.sentence.size(0) == memory.sentence.size(0)
        self.rows.append(prev_tokens.size(0))
        attn = torch.zeros(prev_tokens.size(0), memory.S)
        attn[:, min(t, memory.S - 1)] = 1.0
        return self.script[state.sentence, t], Rows(state.sentence, state.S, t + 1), attn


def dist(best: int, p: float = 0.7) -> list[float]:
    rest = (1.0 - p) / (V - 1)
    return [p if i == best else rest for i in range(V)]


def run(model, *, max_len=10, batch=2):
    src = torch.full((batch, 4), 5)
    return greedy_search(model, src, torch.full((batch,), 4), bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=max_len)


def test_exact_hypotheses_scores_and_early_stop():
    script = [
        [dist(4, 0.6), dist(EOS, 0.9), dist(5), dist(5)],  # "4 </s>"
        [dist(5, 0.5), dist(4, 0.8), dist(EOS, 0.7), dist(5)],  # "5 4 </s>"
    ]
    model = ScriptedModel(script)
    found = run(model)
    assert [len(hyps) for hyps in found] == [1, 1] and all(isinstance(h, Hypothesis) for (h,) in found)
    assert [h.tokens for (h,) in found] == [[4, EOS], [5, 4, EOS]]
    expected = torch.tensor([math.log(0.6) + math.log(0.9), math.log(0.5) + math.log(0.8) + math.log(0.7)])
    torch.testing.assert_close(torch.tensor([h.score for (h,) in found]), expected)
    assert all(h.rank_score == h.score for (h,) in found)
    assert model.rows == [2, 2, 1]  # the finished sentence left the batch; stopped when both had finished
    assert [tuple(h.attention.shape) for (h,) in found] == [(2, 4), (3, 4)]  # one row per token
    assert found[1][0].attention[2].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert found[0][0].attention.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    assert attention_to_cpu(found) is found  # on the CPU already


def test_pad_and_bos_are_never_generated():
    script = [[dist(PAD, 0.9), dist(BOS, 0.9), dist(EOS, 0.9)]]
    ((hyp,),) = run(ScriptedModel(script), batch=1)
    assert PAD not in hyp.tokens and BOS not in hyp.tokens


def test_max_len_per_sentence():
    script = [[dist(4)] * 6, [dist(5)] * 6]
    model = ScriptedModel(script)
    found = run(model, max_len=torch.tensor([2, 4]))
    assert [h.tokens for (h,) in found] == [[4, 4], [5, 5, 5, 5]]  # stopped at the limit, without </s>
    assert [h.attention.size(0) for (h,) in found] == [2, 4]
    assert model.rows == [2, 2, 1, 1]
