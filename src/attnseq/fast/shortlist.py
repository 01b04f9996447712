"""A lexical shortlist for decoding: the output layer W_y (SPEC 1.4 / 2.5) computed only for the
target words a batch's source words make likely, plus the most frequent target words.

A decoder step's largest product is W_y s~_t over the whole target vocabulary, and search then
normalizes over all of it. Most of those words cannot appear in a given batch's translations: a
shortlist (as Marian's lexical shortlists) keeps, for every source word, the target words that
co-occur with it most (Dice coefficient over the training pairs' sentences), and for a batch the
union of its source words' lists, the `frequent` most frequent target words and the specials.
Search then runs over that union as if it were the vocabulary: the softmax is taken over it, so
scores are log-probabilities renormalized over the shortlist. With a shortlist that holds every
word, search finds exactly what it finds without one (tests/test_shortlist.py).

The table is built once from the training pairs when a text -> text model is trained and saved in
its directory (`shortlist.safetensors`); `decode.shortlist` (words per source word, 0 = off, auto:
`auto_size`) and `decode.shortlist_frequent` choose how much of it a decoding uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from attnseq.fast.frozen import Int8Linear, PackedLinear, can_pack

FILE = "shortlist.safetensors"
PER_WORD_MAX = 50  # target words kept per source word in the saved table
N_SPECIALS = 4  # <pad> <unk> <s> </s>: ids 0-3 of every vocabulary, always in a shortlist
# decode.shortlist auto: this many words per source word, for word-level target vocabularies of at
# least AUTO_MIN_VOCAB words decoded on a CPU, where it was measured to pay at a small BLEU cost; on
# subword pieces it cost more BLEU for little speed (docs/performance.md#lexical-shortlist)
AUTO_PER_WORD = 10
AUTO_MIN_VOCAB = 4000


def auto_size(*, tgt_tokenizer: str, tgt_vocab_size: int, device: torch.device) -> int:
    """What decode.shortlist auto means for a model: AUTO_PER_WORD where its target side is words
    (the kind a shortlist serves: a word co-occurs with a few translations; a subword piece or a
    character with many), its vocabulary large enough for the output layer to dominate a step, and
    the decoding runs on a CPU (where it was measured to pay); 0 (the whole vocabulary) otherwise."""
    if tgt_tokenizer == "word" and tgt_vocab_size >= AUTO_MIN_VOCAB and device.type == "cpu":
        return AUTO_PER_WORD
    return 0


class Shortlist:
    """table (source vocab, PER_WORD_MAX): each source word's likeliest target ids, best first
    (padded with 0, <pad>, which every shortlist holds anyway); frequent (target vocab,): target
    ids by training frequency, most frequent first."""

    def __init__(self, table: Tensor, frequent: Tensor) -> None:
        self.table, self.frequent = table.long(), frequent.long()
        self.target_size = int(frequent.numel())

    @classmethod
    def build(cls, src_ids: list[list[int]], tgt_ids: list[list[int]], src_size: int, tgt_size: int) -> Shortlist:
        """From id-encoded training pairs: sentence-level co-occurrence counts c(s, t), ranked per
        source word s by the Dice coefficient 2 c(s, t) / (c(s) + c(t)) (ties to the lower id)."""
        import scipy.sparse as sp

        def presence(sentences: list[list[int]], size: int):
            rows = [i for i, ids in enumerate(sentences) for _ in set(ids)]
            cols = [w for ids in sentences for w in set(ids)]
            data = np.ones(len(rows), dtype=np.float64)
            return sp.csr_matrix((data, (rows, cols)), shape=(len(sentences), size))

        S, T = presence(src_ids, src_size), presence(tgt_ids, tgt_size)
        together = (S.T @ T).tocsr()  # (source vocab, target vocab) sentences holding both
        count_s, count_t = np.asarray(S.sum(0)).ravel(), np.asarray(T.sum(0)).ravel()
        table = np.zeros((src_size, PER_WORD_MAX), dtype=np.int32)
        for s in range(src_size):
            start, end = together.indptr[s], together.indptr[s + 1]
            targets, both = together.indices[start:end], together.data[start:end]
            dice = 2 * both / (count_s[s] + count_t[targets])
            best = targets[np.lexsort((targets, -dice))[:PER_WORD_MAX]]
            table[s, : best.size] = best
        frequent = np.lexsort((np.arange(tgt_size), -count_t)).astype(np.int32)
        return cls(torch.from_numpy(table), torch.from_numpy(frequent))

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        return save({"table": self.table.int().contiguous(), "frequent": self.frequent.int().contiguous()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Shortlist:
        from safetensors.torch import load

        tensors = load(data)
        return cls(tensors["table"], tensors["frequent"])

    def select(self, src: Tensor, per_word: int, frequent: int) -> Tensor:
        """The target ids a batch of sources (B, S) may produce, ascending (so ids 0-3, the
        specials, keep their places): its words' first `per_word` candidates, the `frequent` most
        frequent target words and the specials."""
        keep = torch.zeros(self.target_size, dtype=torch.bool)
        keep[self.table[:, :per_word][src.reshape(-1).cpu()].reshape(-1)] = True
        keep[self.frequent[:frequent]] = True
        keep[:N_SPECIALS] = True
        return keep.nonzero().squeeze(1)


def shortlist_layer(W_y: nn.Linear, ids: Tensor, *, int8: bool, dtype: torch.dtype) -> nn.Module:
    """The rows `ids` of the output layer W_y as a layer of their own, made once per decoding
    batch: int8 (`Int8Linear`, quantized from W_y's float32 rows) when `int8`, else in `dtype` (the
    decoding copy's), packed for oneDNN where this CPU can (`PackedLinear`). Quantizing and packing
    int8 rows costs a few milliseconds (docs/performance.md), which only beam search's K rows per
    sentence earn back; greedy search takes the copy's dtype."""
    dtype = torch.float32 if int8 else dtype
    sub = nn.utils.skip_init(nn.Linear, W_y.in_features, ids.numel(), device=W_y.weight.device, dtype=dtype)
    with torch.no_grad():
        index = ids.to(W_y.weight.device)
        sub.weight.copy_(W_y.weight.index_select(0, index))
        sub.bias.copy_(W_y.bias.index_select(0, index))
    if int8:
        return Int8Linear(sub)
    return PackedLinear(sub) if can_pack(sub.weight) else sub


class Shortlisted:
    """A decoding model whose vocabulary is a shortlist: what search sees as token i is the
    target word ids[i]. It feeds the words themselves back to the decoder and computes only the
    shortlisted rows of W_y (`layer`, from `shortlist_layer`); encode and init_state are the
    model's own. For decoders without the copy mechanism."""

    def __init__(self, model, ids: Tensor, layer: nn.Module) -> None:
        self.model, self.ids, self.layer = model, ids.to(next(model.parameters()).device), layer

    def encode(self, src: Tensor, src_lengths: Tensor):
        return self.model.encode(src, src_lengths)

    def init_state(self, memory):
        return self.model.init_state(memory)

    def step(self, prev_tokens: Tensor, state, memory):
        features, state, attn = self.model.decoder._step(self.ids[prev_tokens], state, memory)
        return self.layer(features), state, attn

    def words(self, tokens: list[int]) -> list[int]:
        """Search's tokens as target vocabulary ids."""
        return self.ids[torch.as_tensor(tokens, dtype=torch.long, device=self.ids.device)].tolist() if tokens else []
