"""Tokenizers: text <-> list of token strings. Word and character level.

A tokenizer is chosen by name in the config (`data.src_tokenizer`, `data.tgt_tokenizer`) and is
stored in a model directory by that name, so loading needs no code from the directory.
"""

from __future__ import annotations

from typing import Protocol

from attnseq.config import DataConfig

SPACE = "\u2581"  # "▁" stands for a space in character tokenization, as in sentencepiece


class Tokenizer(Protocol):
    name: str

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: list[str]) -> str: ...


class WordTokenizer:
    """Splits on runs of whitespace; joins with one space."""

    name = "word"

    def __init__(self, *, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)


class CharTokenizer:
    """One token per character; a space becomes "▁" so that detokenize inverts tokenize."""

    name = "char"

    def __init__(self, *, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        text = " ".join((text.lower() if self.lowercase else text).split())
        return [SPACE if ch == " " else ch for ch in text]

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(" " if t == SPACE else t for t in tokens)


TOKENIZERS = {"word": WordTokenizer, "char": CharTokenizer}


def build_tokenizer(name: str, *, lowercase: bool = False) -> Tokenizer:
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; valid: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name](lowercase=lowercase)


def build_tokenizers(data: DataConfig) -> tuple[Tokenizer, Tokenizer]:
    """The (source, target) tokenizers a config's data section names."""
    return (
        build_tokenizer(data.src_tokenizer, lowercase=data.lowercase),
        build_tokenizer(data.tgt_tokenizer, lowercase=data.lowercase),
    )
