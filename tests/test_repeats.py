"""decode.block_ngram_repeat: no output holds an n-gram twice, in greedy and beam search, on
scripted probabilities that loop."""

from __future__ import annotations

import torch

from attnseq.decoding import beam_search, greedy_search
from attnseq.decoding.repeats import block_repeats
from tests.test_search import BOS, EOS, PAD, Rows, ScriptedModel, V


class BeamScripted(ScriptedModel):
    """The scripted model with beam search's layout: K state rows per memory row."""

    def step(self, prev_tokens, state, memory):
        return self.script[state.sentence, state.t], Rows(state.sentence, state.S, state.t + 1), None


def test_block_repeats_bans_exactly_the_tokens_that_would_repeat_an_ngram():
    logp = torch.zeros(3, V)
    history = torch.tensor([[4, 5, 4], [4, 5, 1], [1, 1, 1]])
    out = block_repeats(logp, history, 2)
    assert torch.isinf(out[0, 5]) and torch.isfinite(out[0]).sum() == V - 1  # (4, 5) again
    assert torch.isfinite(out[1]).all()  # after 1 came nothing yet
    assert torch.isinf(out[2, 1]) and torch.isfinite(out[2]).sum() == V - 1
    out3 = block_repeats(logp, history, 3)
    assert torch.isfinite(out3[0]).all() and torch.isinf(out3[2, 1])
    assert torch.equal(block_repeats(logp, history, 0), logp)
    assert torch.equal(block_repeats(logp, history[:, :1], 2), logp)  # no complete bigram yet
    unigrams = block_repeats(logp, history, 1)
    assert torch.isinf(unigrams[0, [4, 5]]).all() and torch.isfinite(unigrams[0, [0, 1, 2, 3]]).all()


def looping_script(steps: int = 8) -> list[list[list[float]]]:
    """One sentence that prefers 4 5 4 5 ... (0.6), then 1 (0.25), and </s> only at the end."""
    rows = []
    for t in range(steps):
        p = [0.03] * V
        p[4 if t % 2 == 0 else 5], p[1] = 0.6, 0.25
        if t == steps - 1:
            p = [0.02] * V
            p[EOS] = 0.9
        rows.append([x / sum(p) for x in p])
    return [rows]


def bigrams(ids: list[int]) -> list[tuple[int, int]]:
    return list(zip(ids, ids[1:]))


def test_greedy_search_blocks_a_loop():
    src, lengths = torch.full((1, 4), 5), torch.tensor([4])
    args = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=8)
    loop = greedy_search(ScriptedModel(looping_script()), src, lengths, **args)[0][0].tokens
    assert loop[:4] == [4, 5, 4, 5]
    ((blocked,),) = greedy_search(ScriptedModel(looping_script()), src, lengths, block_ngram_repeat=2, **args)
    ids = blocked.tokens
    assert ids[:3] == [4, 5, 4] and len(set(bigrams(ids))) == len(bigrams(ids)), ids


def test_beam_search_blocks_a_loop_in_every_hypothesis():
    src, lengths = torch.full((1, 4), 5), torch.tensor([4])
    found = beam_search(BeamScripted(looping_script()), src, lengths, beam_size=3, n_best=3, bos_id=BOS,
                        eos_id=EOS, pad_id=PAD, max_len=8, block_ngram_repeat=2)  # fmt: skip
    assert found[0]
    for hyp in found[0]:
        assert len(set(bigrams(hyp.tokens))) == len(bigrams(hyp.tokens)), hyp.tokens
    plain = beam_search(BeamScripted(looping_script()), src, lengths, beam_size=3, n_best=1, bos_id=BOS,
                        eos_id=EOS, pad_id=PAD, max_len=8)  # fmt: skip
    assert plain[0][0].tokens[:4] == [4, 5, 4, 5]
