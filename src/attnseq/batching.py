"""Batches of text pairs: tokenized and id-encoded pairs (`PairDataset`), padding, and length-bucketed
batch lists."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from attnseq.tokenize import Tokenizer
from attnseq.vocab import Vocab


@dataclass
class Batch:
    """A padded batch. Ids use the vocabularies' `pad_id`; masks are True at real tokens."""

    src: torch.Tensor  # (B, S) source ids, each row ends with </s>
    src_lengths: torch.Tensor  # (B,) real lengths (int64, on CPU as packing requires)
    tgt_in: torch.Tensor  # (B, T) <s> y_1 .. y_{T-1}
    tgt_out: torch.Tensor  # (B, T) y_1 .. y_{T-1} </s>
    index: list[int]  # positions of these examples in the dataset
    tgt_lengths: torch.Tensor  # (B,) target lengths including </s>
    n_tgt_tokens: int  # tokens the loss is averaged over

    @property
    def units(self) -> int:
        return self.n_tgt_tokens

    def to(self, device: torch.device | str) -> Batch:
        """The tensors the model reads, on `device` (src_lengths stay on the CPU for packing)."""
        return dataclasses.replace(
            self, src=self.src.to(device), tgt_in=self.tgt_in.to(device), tgt_out=self.tgt_out.to(device)
        )


def encode_source(tokens: list[str], vocab: Vocab) -> list[int]:
    """Source ids end with </s>, so every source has at least one position to attend to."""
    return [*vocab.encode(tokens), vocab.eos_id]


def pad(seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate_source(src_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    return pad(src_ids, pad_id), torch.tensor([len(s) for s in src_ids], dtype=torch.long)


# (source text, target text, source tokens, target tokens)
TokenizedPair = tuple[str, str, list[str], list[str]]


def tokenize_pairs(pairs: list[tuple[str, str]], src_tok: Tokenizer, tgt_tok: Tokenizer) -> list[TokenizedPair]:
    """Tokenize once; vocabulary building and encoding both read the result."""
    return [(src, tgt, src_tok.tokenize(src), tgt_tok.tokenize(tgt)) for src, tgt in pairs]


class PairDataset:
    """Id-encoded pairs kept as Python lists; `collate` pads a batch on demand."""

    def __init__(
        self,
        pairs: list[TokenizedPair],
        *,
        src_vocab: Vocab,
        tgt_vocab: Vocab,
        max_src_len: int = 0,
        max_tgt_len: int = 0,
    ) -> None:
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.src_text: list[str] = []
        self.tgt_text: list[str] = []
        self.src_ids: list[list[int]] = []
        self.tgt_ids: list[list[int]] = []
        self.skipped = 0  # pairs over the length limits, or with a side that tokenizes to nothing
        for src, tgt, s_tok, t_tok in pairs:
            too_long = (max_src_len and len(s_tok) > max_src_len) or (max_tgt_len and len(t_tok) > max_tgt_len)
            if too_long or not s_tok or not t_tok:
                self.skipped += 1
                continue
            self.src_text.append(src)
            self.tgt_text.append(tgt)
            self.src_ids.append(encode_source(s_tok, src_vocab))
            self.tgt_ids.append(tgt_vocab.encode(t_tok))

    def __len__(self) -> int:
        return len(self.src_ids)

    def collate(self, index: list[int]) -> Batch:
        v = self.tgt_vocab
        src, src_lengths = collate_source([self.src_ids[i] for i in index], self.src_vocab.pad_id)
        tgt = [self.tgt_ids[i] for i in index]
        tgt_lengths = torch.tensor([len(t) + 1 for t in tgt], dtype=torch.long)
        return Batch(
            src=src,
            src_lengths=src_lengths,
            tgt_in=pad([[v.bos_id, *t] for t in tgt], v.pad_id),
            tgt_out=pad([[*t, v.eos_id] for t in tgt], v.pad_id),
            index=list(index),
            tgt_lengths=tgt_lengths,
            n_tgt_tokens=int(tgt_lengths.sum()),
        )

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        """Batches of similar (source, target) length (`bucketed_batches`)."""
        return bucketed_batches(len(self), lambda i: (len(self.src_ids[i]), len(self.tgt_ids[i])), batch_size,
                                seed=seed)  # fmt: skip


def bucketed_batches(n: int, length, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
    """Group examples 0..n-1 of similar `length(i)` to minimise padding.

    With a seed: shuffle, sort by length (stable, so ties stay shuffled), cut into batches,
    shuffle the batch order. Without: sorted, in order (for decoding).
    """
    order = list(range(n))
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        order = [order[i] for i in torch.randperm(len(order), generator=gen).tolist()]
    order.sort(key=length)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if gen is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches
