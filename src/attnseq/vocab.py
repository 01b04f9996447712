"""Vocabulary: token strings <-> ids, with the four specials at fixed ids."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from attnseq.errors import AttnseqError
from attnseq.fileio import atomic_write_text, read_text_file

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Ids 0..3 are <pad>, <unk>, <s>, </s>; the rest are ordered by frequency, then alphabetically."""

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokens: list[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos = list(tokens)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(
        cls,
        sequences: Iterable[list[str]],
        *,
        min_freq: int = 1,
        max_size: int = 0,
        source: str = "training data",
    ) -> Vocab:
        """Count tokens; keep those seen `min_freq` times or more, at most `max_size` (0 = all).

        Raises:
            AttnseqError: when no token survives (empty data, or min_freq too high).
        """
        counts = Counter(tok for seq in sequences for tok in seq)
        kept = sorted(
            (tok for tok, n in counts.items() if n >= min_freq and tok not in SPECIALS),
            key=lambda tok: (-counts[tok], tok),
        )
        if max_size > 0:
            kept = kept[:max_size]
        if not kept:
            raise AttnseqError(
                f"{source}: the vocabulary is empty ({len(counts)} distinct tokens, none seen "
                f"{min_freq}+ times); check the file has text, or lower data.min_freq"
            )
        return cls([*SPECIALS, *kept])

    def encode(self, tokens: list[str]) -> list[int]:
        unk = self.unk_id
        return [self.stoi.get(tok, unk) for tok in tokens]

    def decode(self, ids: Iterable[int], *, strip_specials: bool = True) -> list[str]:
        out = []
        for i in ids:
            if strip_specials and i == self.eos_id:
                break
            if strip_specials and i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i])
        return out

    def to_bytes(self) -> bytes:
        """The vocabulary file's content: a JSON list of the tokens in id order."""
        return (json.dumps(self.itos, ensure_ascii=False, indent=0) + "\n").encode("utf-8")

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_bytes().decode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        if not path.is_file():
            raise AttnseqError(f"{path}: vocabulary file not found in the model directory")
        try:
            tokens = json.loads(read_text_file(path))
        except json.JSONDecodeError as exc:
            raise AttnseqError(f"{path}:{exc.lineno}: not a valid vocabulary file (invalid JSON: {exc.msg})") from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise AttnseqError(f"{path}: not a valid vocabulary file (expected a JSON list of token strings)")
        if len(set(tokens)) != len(tokens):
            raise AttnseqError(f"{path}: not a valid vocabulary file (a token appears twice)")
        try:
            return cls(tokens)
        except ValueError as exc:
            raise AttnseqError(f"{path}: not a valid vocabulary file ({exc})") from None
