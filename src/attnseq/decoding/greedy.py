"""Batched greedy search that keeps the attention weights of every step."""

from __future__ import annotations

import torch
from torch import Tensor

from attnseq.decoding.hypothesis import Hypothesis
from attnseq.decoding.repeats import block_repeats
from attnseq.decoding.topk import top_k


@torch.inference_mode()
def greedy_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int | Tensor,
    choose=None,
    block_ngram_repeat: int = 0,
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step, for all sentences at once (or the token
    `choose(logp) -> (log-probabilities (n,), ids (n,))` picks, e.g. a `Sampler`'s draw).

    Args:
        model: anything with `encode(src, src_lengths) -> memory` and
            `init_state(memory) -> state` (both with `index_select(idx)`) and
            `step(prev_tokens, state, memory) -> (logits, state, attn)`.
        src: (B, S) source ids; src_lengths: (B,).
        bos_id, eos_id, pad_id: target vocabulary specials.
        max_len: most tokens to generate, one int or a (B,) tensor per sentence.
        block_ngram_repeat: n > 0: no output holds the same n-gram twice (`decoding/repeats.py`).
    Returns:
        For each sentence, one `Hypothesis` (rank_score = score; attention (len(tokens), S) float32
        on the search's device). A sentence leaves the batch when it has produced </s> or reached
        its limit, and the search stops when none is left.
    """
    batch = src.size(0)
    device = src.device
    limit = torch.as_tensor(max_len, device=device).expand(batch)
    if int(limit.min()) < 1:
        raise ValueError("max_len must be at least 1 for every sentence")
    steps = int(limit.max())
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    prev = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    tokens = torch.full((batch, min(steps, 64)), pad_id, dtype=torch.long, device=device)  # grows as needed
    scores = torch.zeros(batch, device=device)
    # each step's attention of the sentences still searched: memory grows with the output produced,
    # not with the worst case max_len allows (a long source's limit could ask for gigabytes up front)
    attn_steps: list[tuple[Tensor, Tensor]] = []  # (rows of the batch, their weights (n, S))
    never = torch.tensor([pad_id, bos_id], device=device)  # ids search never generates
    active = torch.arange(batch, device=device)  # the sentences still searched; finished ones leave the batch
    for t in range(steps):
        if t == tokens.size(1):  # double the room for tokens, up to the longest limit
            more = torch.full((batch, min(t, steps - t)), pad_id, dtype=torch.long, device=device)
            tokens = torch.cat([tokens, more], dim=1)
        logits, state, attn = model.step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1).index_fill_(1, never, float("-inf"))  # (n, V)
        if block_ngram_repeat:
            logp = block_repeats(logp, tokens[active, :t], block_ngram_repeat)
        if choose is None:
            best_logp, best = top_k(logp, 1)
            best_logp, best = best_logp.squeeze(1), best.squeeze(1)
        else:
            best_logp, best = choose(logp)
        tokens[active, t] = best
        scores[active] += best_logp
        if attn is not None:
            attn_steps.append((active, attn.float()))
        done = (best == eos_id) | (t + 1 >= limit)
        if bool(done.all()):
            tokens = tokens[:, : t + 1]
            break
        prev = best
        if bool(done.any()):
            kept = (~done).nonzero().squeeze(1)
            active, limit, prev = active[kept], limit[kept], prev[kept]
            memory, state = memory.index_select(kept), state.index_select(kept)
    # to one hypothesis per sentence: one transfer of ids, lengths and scores, views of the attention
    lengths = (tokens != pad_id).sum(dim=1)
    attn: list[Tensor | None] = [None] * batch
    if attn_steps:
        attn_weights = attn_steps[0][1].new_zeros(batch, len(attn_steps), attn_steps[0][1].size(-1))  # (B, T, S)
        for t, (rows, weights) in enumerate(attn_steps):
            attn_weights[rows, t] = weights
        attn = list(attn_weights.unbind(0))
    ids, n, total = tokens.tolist(), lengths.tolist(), scores.tolist()
    return [
        [Hypothesis(ids[b][: n[b]], total[b], total[b], None if attn[b] is None else attn[b][: n[b]])]
        for b in range(batch)
    ]
