"""Batched beam search with length penalties, n-best output and the attention of each hypothesis.

All sentences and all their beams run as one batch of B*K rows through the model's `step`; a
sentence that is done leaves the batch; only hypotheses that finish (rare events) are handled one
by one in Python. The first step runs one row per sentence (every beam starts from the same <s>),
and its best extensions make the K beams. The source memory stays one row per sentence: the K
beams of a sentence are K consecutive rows of the state, and attention reads them as a group.

Ranking: a finished hypothesis of n tokens (its </s> included) and log-probability sum s is ranked
by s / lp(n) with
  none: lp(n) = 1
  avg:  lp(n) = n
  gnmt: lp(n) = ((5 + n) / 6) ** alpha              (Wu et al. 2016)

Stopping: a sentence is done when beam_size hypotheses have finished, when its hypotheses reach
its maximum length (they finish there as they are, without </s>), or when no unfinished hypothesis
has a non-zero probability left. At each step the top 2K
extensions are considered; those ending in </s> among the first K finish, and the first K others
carry on (as in fairseq).
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnseq.decoding.hypothesis import Hypothesis
from attnseq.decoding.repeats import block_repeats
from attnseq.decoding.topk import top_k

LENGTH_PENALTIES = ("none", "avg", "gnmt")


def length_penalty(kind: str, length: int, alpha: float = 0.6) -> float:
    """The divisor lp(n) of a hypothesis of `length` tokens (see the module docstring)."""
    if kind == "none":
        return 1.0
    if kind == "avg":
        return float(length)
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    raise ValueError(f"unknown length penalty {kind!r}; choose one of {', '.join(LENGTH_PENALTIES)}")


@torch.inference_mode()
def beam_search(
    model,
    src: Tensor,
    src_lengths: Tensor,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int | Tensor,
    n_best: int = 1,
    penalty: str = "gnmt",
    alpha: float = 0.6,
    block_ngram_repeat: int = 0,
    prefix_scorer=None,
) -> list[list[Hypothesis]]:
    """Beam search over a batch of sentences.

    Args:
        model: anything with `encode(src, src_lengths) -> memory` (with `index_select(idx)`),
            `init_state(memory) -> state` (with `index_select(idx)`) and
            `step(prev_tokens, state, memory) -> (logits (N, V), state, attn (N, S) or None)`,
            where the N rows of state are G consecutive rows per row of memory (G = 1 at the
            first step, then beam_size).
        src: (B, S) source ids; src_lengths: (B,).
        beam_size: K hypotheses kept per sentence; n_best: how many to return (at most K).
        max_len: most tokens to generate, one int or a (B,) tensor.
        penalty, alpha: the length penalty (see the module docstring).
        block_ngram_repeat: n > 0: no hypothesis holds the same n-gram twice (`decoding/repeats.py`).
        prefix_scorer: None, or a function of the memory returning a scorer with `extend(logp (N, V))
            -> joint increments (N, V)` and `advance(rows, tokens)` (`decoding/ctc_prefix.py`):
            hypotheses are then ranked by its joint scores, which their `score` holds.
    Returns:
        For each sentence, its `n_best` finished `Hypothesis`es, best first by rank_score; attention
        (len(tokens), S) float32 on the search's device.
    """
    if beam_size < 1 or not 1 <= n_best <= beam_size:
        raise ValueError(f"need beam_size >= 1 and 1 <= n_best <= beam_size (got {beam_size}, {n_best})")
    length_penalty(penalty, 1, alpha)  # unknown kinds fail before any work
    B, K = src.size(0), beam_size
    device = src.device
    limit = torch.as_tensor(max_len, device=device).expand(B)
    if int(limit.min()) < 1:
        raise ValueError("max_len must be at least 1 for every sentence")

    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    scorer = None if prefix_scorer is None else prefix_scorer(memory)
    scores = torch.zeros(B, 1, device=device)  # (sentences, beams): one beam, <s>, at the first step
    prev = torch.full((B,), bos_id, dtype=torch.long, device=device)
    history = torch.empty(B, 0, dtype=torch.long, device=device)
    attn_history: Tensor | None = None
    never = torch.tensor([pad_id, bos_id], device=device)
    first_row = torch.arange(B, device=device).unsqueeze(1)  # (B, 1) times the beams per sentence
    order = torch.arange(2 * K, device=device)
    first_k = order < K  # (2K,) the candidates that may finish
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    active = torch.arange(B, device=device)  # the sentences still searched; done ones leave the batch

    for t in range(int(limit.max())):
        logits, state, attn = model.step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1).index_fill_(1, never, float("-inf"))  # (B*K, V)
        if block_ngram_repeat:
            logp = block_repeats(logp, history, block_ngram_repeat)
        if scorer is not None:
            logp = scorer.extend(logp)
        (n, g), vocab = scores.shape, logp.size(-1)  # sentences still searched, beams each (1 or K)
        top_scores, top_index = top_k(logp.view(n, g, vocab), min(2 * K, g * vocab), bias=scores)  # (n, 2K)
        beam, token = top_index // vocab, top_index % vocab
        if attn is not None:
            step_attn = attn.float().unsqueeze(1)
            attn_history = step_attn if attn_history is None else torch.cat([attn_history, step_attn], dim=1)

        # hypotheses that end here: </s> among the first K, or everything at the length limit
        at_limit = t + 1 >= limit  # (B,)
        width = token.size(1)
        ends = ((token == eos_id) | at_limit.unsqueeze(1)) & first_k[:width] & (top_scores > float("-inf"))
        if bool(ends.any()):  # rare: a few hypotheses per step, moved to Python in one transfer each
            b, j = ends.nonzero().unbind(1)
            rows = b * g + beam[b, j]
            ended = zip(active[b].tolist(), history[rows].tolist(), token[b, j].tolist(), top_scores[b, j].tolist(),
                        [None] * rows.numel() if attn_history is None else attn_history[rows].unbind(0))  # fmt: skip
            for sentence, tokens, last, score, attention in ended:
                hyps = finished[sentence]
                if len(hyps) < K:
                    tokens.append(last)
                    rank_score = score / length_penalty(penalty, len(tokens), alpha)
                    hyps.append(Hypothesis(tokens, score, rank_score, attention))
        # the first K extensions that did not end carry on
        keep = ((token == eos_id).long() * 2 * K + order[:width]).argsort(dim=1)[:, :K]  # (B, K)
        scores = top_scores.gather(1, keep)
        alive = (scores > float("-inf")).any(dim=1)  # False: nothing left that could still finish
        full = torch.tensor([len(finished[i]) >= K for i in active.tolist()], device=device)
        done = full | at_limit | ~alive
        if bool(done.all()):
            break
        rows = (first_row[:n] * g + beam.gather(1, keep)).view(-1)  # (n*K,) the row each new beam extends
        prev = token.gather(1, keep).view(-1)
        if bool(done.any()):  # drop finished sentences: later steps run only the others' rows
            kept = (~done).nonzero().squeeze(1)
            rows, prev = rows.view(n, K)[kept].view(-1), prev.view(n, K)[kept].view(-1)
            scores, limit, active = scores[kept], limit[kept], active[kept]
            memory = memory.index_select(kept)
        if scorer is not None:
            scorer.advance(rows, prev)
        history = torch.cat([history.index_select(0, rows), prev.unsqueeze(1)], dim=1)
        if attn_history is not None:
            attn_history = attn_history.index_select(0, rows)
        state = state.index_select(rows)

    return [sorted(hyps, key=lambda h: -h.rank_score)[:n_best] for hyps in finished]
