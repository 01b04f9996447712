"""Batched greedy search that keeps the attention weights of every step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Hypotheses:
    """Search output for a batch (token ids exclude <s>; each row ends at its </s> if produced)."""

    tokens: Tensor  # (B, T) ids, padded with pad_id after </s>
    lengths: Tensor  # (B,) tokens up to and including </s>
    scores: Tensor  # (B,) sum of log-probabilities of the kept tokens
    attn_weights: Tensor | None  # (B, T, S), None for models without attention


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
) -> Hypotheses:
    """Pick the most probable token at every step, for all sentences at once.

    Args:
        model: anything with `encode(src, src_lengths)`, `init_state(memory)` and
            `step(prev_tokens, state, memory) -> (logits, state, attn)`.
        src: (B, S) source ids; src_lengths: (B,).
        bos_id, eos_id, pad_id: target vocabulary specials.
        max_len: most tokens to generate, one int or a (B,) tensor per sentence.
    Returns:
        Hypotheses; stops as soon as every sentence has produced </s> or reached its limit.
    """
    batch = src.size(0)
    device = src.device
    limit = torch.as_tensor(max_len, device=device).expand(batch)
    if int(limit.min()) < 1:
        raise ValueError("max_len must be at least 1 for every sentence")
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    prev = torch.full((batch,), bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    never = torch.tensor([pad_id, bos_id], device=device)  # ids search never generates
    tokens, attns = [], []
    for t in range(int(limit.max())):
        logits, state, attn = model.step(prev, state, memory)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        logp[:, never] = float("-inf")
        best_logp, best = logp.max(dim=-1)
        best = best.masked_fill(finished, pad_id)
        scores += best_logp.masked_fill(finished, 0.0)
        tokens.append(best)
        attns.append(attn)
        finished |= (best == eos_id) | (t + 1 >= limit)
        prev = best
        if bool(finished.all()):
            break
    out = torch.stack(tokens, dim=1)  # (B, T)
    lengths = (out != pad_id).sum(dim=1)
    attn_weights = None if attns[0] is None else torch.stack(attns, dim=1)  # (B, T, S)
    return Hypotheses(tokens=out, lengths=lengths, scores=scores, attn_weights=attn_weights)
