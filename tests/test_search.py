"""Greedy search driven by a fake model that emits scripted probabilities."""

from __future__ import annotations

import math

import torch

from attnseq.decoding import greedy_search

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 6


class ScriptedModel:
    """step t returns the log-probabilities script[b][t] for sentence b; attention = one-hot on t."""

    def __init__(self, script: list[list[list[float]]]):
        self.script = torch.log(torch.tensor(script))  # (B, T, V)
        self.calls = 0

    def encode(self, src, src_lengths):
        return {"S": src.size(1)}

    def init_state(self, memory):
        return {"t": 0}

    def step(self, prev_tokens, state, memory):
        t = state["t"]
        self.calls += 1
        attn = torch.zeros(prev_tokens.size(0), memory["S"])
        attn[:, min(t, memory["S"] - 1)] = 1.0
        return self.script[:, t], {"t": t + 1}, attn


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
    hyp = run(model)
    assert hyp.tokens.tolist() == [[4, EOS, PAD], [5, 4, EOS]]
    assert hyp.lengths.tolist() == [2, 3]
    expected = torch.tensor([math.log(0.6) + math.log(0.9), math.log(0.5) + math.log(0.8) + math.log(0.7)])
    torch.testing.assert_close(hyp.scores, expected)
    assert model.calls == 3  # stopped when both sentences had finished
    assert hyp.attn_weights.shape == (2, 3, 4)
    assert hyp.attn_weights[1, 2].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_pad_and_bos_are_never_generated():
    script = [[dist(PAD, 0.9), dist(BOS, 0.9), dist(EOS, 0.9)]]
    hyp = run(ScriptedModel(script), batch=1)
    assert PAD not in hyp.tokens[0, : hyp.lengths[0]].tolist()
    assert BOS not in hyp.tokens[0].tolist()


def test_max_len_per_sentence():
    script = [[dist(4)] * 6, [dist(5)] * 6]
    hyp = run(ScriptedModel(script), max_len=torch.tensor([2, 4]))
    assert hyp.tokens.tolist() == [[4, 4, PAD, PAD], [5, 5, 5, 5]]
    assert hyp.lengths.tolist() == [2, 4]
