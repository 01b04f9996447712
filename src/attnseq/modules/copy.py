"""The copy mechanism of a pointer-generator (See et al. 2017), over the attention of SPEC 2 / 4.

At each step t the decoder's output o_t (Luong's s~_t, Bahdanau's deep output) and the embedding of
the word it read, e(y_{t-1}), decide how much to generate and how much to copy:

  p_gen = sigmoid(w_p [o_t; e(y_{t-1})] + b_p)
  P(w)  = p_gen * softmax(W_y o_t + b_y)_w  +  (1 - p_gen) * sum of alpha^t_i over the source
          positions i whose token x_i is w

so a word of the source can be written by pointing at it: the attention weights alpha^t are what
copies. How much of a written word's probability came from copying, (1 - p_gen) * sum of alpha^t_i
over the positions holding it, divided by P(w), is `copied_share` (what the page and `plot` show).
The source and target vocabularies may differ: `copy_map` gives each source id the target id of
the same token (<unk> where the target vocabulary lacks it). P sums to 1 over the target
vocabulary; with p_gen = 1 it is the vocabulary softmax (tests/test_copy.py holds both).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnseq.vocab import Vocab


def copy_map(src_vocab: Vocab, tgt_vocab: Vocab) -> Tensor:
    """(V_src,) the target id of each source token (<unk> where the target vocabulary lacks it)."""
    return torch.tensor(tgt_vocab.encode(src_vocab.itos), dtype=torch.long)


class CopyGenerator(nn.Module):
    """Mixes the vocabulary distribution with the attention over the source (module docstring)."""

    def __init__(self, feature_size: int, emb_size: int, src_to_tgt: Tensor) -> None:
        super().__init__()
        self.W_p = nn.Linear(feature_size + emb_size, 1)
        self.register_buffer("copy_map", src_to_tgt, persistent=False)  # rebuilt from the vocabularies

    def p_gen(self, features: Tensor, emb: Tensor) -> Tensor:
        """(..., 1) the probability of generating from the vocabulary, in float32."""
        return torch.sigmoid(self.W_p(torch.cat([features, emb.to(features.dtype)], dim=-1)).float())

    def forward(self, logits: Tensor, features: Tensor, emb: Tensor, attn: Tensor, src_ids: Tensor) -> Tensor:
        """log P(w) (..., V) in float32 from the vocabulary logits (..., V), o_t (..., H), e(y_{t-1})
        (..., E), the attention weights (..., S) and the source ids (..., S) (padding has weight 0);
        the leading dimensions are any, (N,) for a step or (B, T) for a teacher-forced batch."""
        p_gen = self.p_gen(features, emb)
        mixed = torch.softmax(logits.float(), dim=-1) * p_gen
        mixed = mixed.scatter_add(-1, self.copy_map[src_ids], attn.float() * (1.0 - p_gen))
        return torch.log(mixed.clamp_min(torch.finfo(torch.float32).tiny))

    def copied_share(
        self, logits: Tensor, features: Tensor, emb: Tensor, attn: Tensor, src_ids: Tensor, target: Tensor
    ) -> Tensor:
        """(...) the share of P(target) that copying gives, in [0, 1]: (1 - p_gen) * the attention on
        the source positions whose token is `target`, over P(target). Arguments as for `forward`,
        with `target` (...) the written ids."""
        p_gen = self.p_gen(features, emb)  # (..., 1)
        generated = torch.softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)) * p_gen
        hits = self.copy_map[src_ids] == target.unsqueeze(-1)  # (..., S)
        copied = (attn.float() * hits).sum(dim=-1, keepdim=True) * (1.0 - p_gen)
        return (copied / (generated + copied).clamp_min(torch.finfo(torch.float32).tiny)).squeeze(-1)
