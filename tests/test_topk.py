"""The two-pass top-k of decoding/topk.py gives what torch.topk gives."""

from __future__ import annotations

import pytest
import torch

from attnseq.decoding.topk import CHUNK, top_k


@pytest.mark.parametrize("vocab", [6, 4 * CHUNK * 5, 9762, 50 * CHUNK])
@pytest.mark.parametrize("k", [1, 2, 10])
def test_equals_torch_topk(vocab, k):
    k = min(k, vocab - 2)
    gen = torch.Generator().manual_seed(vocab + k)
    scores = torch.randn(37, vocab, generator=gen) * 4
    scores[:, :2] = float("-inf")  # as search masks <pad> and <s>
    values, ids = top_k(scores, k)
    ref_values, ref_ids = scores.topk(k, dim=-1)
    assert torch.equal(values, ref_values)
    assert torch.equal(ids, ref_ids)


def test_the_best_may_sit_in_the_tail_chunk_or_crowd_one_chunk():
    vocab = 40 * CHUNK + 7  # a partial last chunk
    scores = torch.zeros(3, vocab)
    scores[0, -1] = 5.0  # the very last id
    scores[1, 3 * CHUNK : 3 * CHUNK + 4] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # all in one chunk
    scores[2, -7:] = torch.arange(7.0) + 1  # the whole tail
    values, ids = top_k(scores, 4)
    assert ids[0, 0] == vocab - 1 and values[0, 0] == 5.0
    assert ids[1].tolist() == [3 * CHUNK + i for i in range(4)]
    assert ids[2].tolist() == [vocab - 1, vocab - 2, vocab - 3, vocab - 4]
    assert torch.equal(values, scores.topk(4, dim=-1).values)


@pytest.mark.parametrize("vocab", [6, 9762, 50 * CHUNK])
@pytest.mark.parametrize("k", [1, 10])
def test_over_groups_with_a_bias_equals_torch_topk_over_the_flattened_sums(vocab, k):
    """Beam search's form: the k best of bias + scores over all beams of a sentence at once."""
    n, groups, k = 7, 5, min(k, vocab - 2)  # at most the first beam's finite scores
    gen = torch.Generator().manual_seed(vocab * k)
    scores = torch.randn(n, groups, vocab, generator=gen) * 4
    scores[..., :2] = float("-inf")
    bias = torch.randn(n, groups, generator=gen) * 3
    bias[0, 1:] = float("-inf")  # the first step: only the first beam is alive
    scores[1, 3, -1] = 50.0  # a winner in a later beam's tail chunk
    values, ids = top_k(scores, k, bias)
    ref_values, ref_ids = (scores + bias.unsqueeze(-1)).view(n, groups * vocab).topk(k, dim=-1)
    assert torch.equal(values, ref_values)
    assert torch.equal(ids, ref_ids)
    assert ids[0].div(vocab, rounding_mode="floor").eq(0).all()  # nothing from a dead beam
