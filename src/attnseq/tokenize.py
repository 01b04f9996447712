"""Tokenizers: text <-> list of token strings. Word, character and sentencepiece subwords.

A tokenizer is chosen by name in the config (`data.src_tokenizer`, `data.tgt_tokenizer`). Word and
char tokenizers are rebuilt from the config alone; a sentencepiece tokenizer also has a model
(`model_proto`), trained from the training files by `attnseq train` unless the config names one,
and saved inside every model directory (`src.spm.model`, `tgt.spm.model`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import sentencepiece as spm

from attnseq.errors import AttnseqError

if TYPE_CHECKING:  # the text tasks' data sections (attnseq.tasks.translation)
    from attnseq.tasks.translation import DataConfig

SPACE = "\u2581"  # "▁" stands for a space in character tokenization, as in sentencepiece


class Tokenizer(Protocol):
    name: str

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: list[str]) -> str: ...


class WordTokenizer:
    """Splits on runs of whitespace (and with `split_punctuation`, punctuation off words:
    "great!" -> "great !"); joins with one space."""

    name = "word"
    _PUNCT = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")

    def __init__(self, *, lowercase: bool = False, split_punctuation: bool = False) -> None:
        self.lowercase = lowercase
        self.split_punctuation = split_punctuation

    def tokenize(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        return self._PUNCT.findall(text) if self.split_punctuation else text.split()

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


class SentencePieceTokenizer:
    """Subwords from a trained sentencepiece model (BPE or unigram); detokenize restores the text."""

    name = "spm"

    def __init__(self, model_proto: bytes, *, lowercase: bool = False) -> None:
        self.model_proto = model_proto
        self.lowercase = lowercase
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)

    def tokenize(self, text: str) -> list[str]:
        return self.processor.encode(text.lower() if self.lowercase else text, out_type=str)

    def detokenize(self, tokens: list[str]) -> str:
        return self.processor.decode_pieces(tokens)


TOKENIZERS = {"word": WordTokenizer, "char": CharTokenizer}
SPM_FILES = ("src.spm.model", "tgt.spm.model")  # names inside a model directory


def train_sentencepiece(texts: Iterable[str], *, vocab_size: int, model_type: str, lowercase: bool = False) -> bytes:
    """Train a sentencepiece model on `texts`; returns the serialized model.

    The vocabulary size is a ceiling (`hard_vocab_limit=False`): a small corpus gets fewer pieces
    instead of an error. All characters are kept (`character_coverage=1.0`).
    """
    out = io.BytesIO()
    try:
        _train_spm(texts, out, vocab_size=vocab_size, model_type=model_type, lowercase=lowercase)
    except RuntimeError as exc:
        detail = str(exc).split(") ", 1)[-1].split(" Increase")[0]
        raise AttnseqError(
            f"data.spm_vocab_size = {vocab_size}: sentencepiece could not train ({detail}); "
            "raise data.spm_vocab_size above the number of distinct characters, or use more text"
        ) from None
    return out.getvalue()


def _train_spm(texts, out, *, vocab_size: int, model_type: str, lowercase: bool) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t.lower() if lowercase else t for t in texts]),
        model_writer=out,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,  # deterministic piece order
        minloglevel=2,
    )


def read_spm_model(path: str | Path, key: str) -> bytes:
    """A sentencepiece model file named by the config, checked to load."""
    from attnseq.catalogue import resolve

    path = resolve(path)
    if not path.is_file():
        raise AttnseqError(f"{path}: sentencepiece model not found ({key}); fix the path or set it to '' to train one")
    proto = path.read_bytes()
    try:
        spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError:
        raise AttnseqError(
            f"{path}: not a sentencepiece model ({key}); give a .model file written by sentencepiece"
        ) from None
    return proto


def build_tokenizer(
    name: str, *, lowercase: bool = False, model_proto: bytes | None = None, split_punctuation: bool = False
) -> Tokenizer:
    if name == "spm":
        if model_proto is None:
            raise ValueError("a sentencepiece tokenizer needs its model")
        return SentencePieceTokenizer(model_proto, lowercase=lowercase)
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; valid: {', '.join([*TOKENIZERS, 'spm'])}")
    if name == "word":
        return WordTokenizer(lowercase=lowercase, split_punctuation=split_punctuation)
    return TOKENIZERS[name](lowercase=lowercase)


class FirstTokens:
    """A tokenizer whose output is cut to its first `limit` tokens (`data.src_truncate`): a long
    source (an abstract) is read as its beginning, the same in training and in decoding."""

    def __init__(self, inner: Tokenizer, limit: int) -> None:
        self.inner, self.limit, self.name = inner, limit, inner.name

    def tokenize(self, text: str) -> list[str]:
        return self.inner.tokenize(text)[: self.limit]

    def detokenize(self, tokens: list[str]) -> str:
        return self.inner.detokenize(tokens)


def build_tokenizers(data: DataConfig, protos: tuple[bytes | None, bytes | None] = (None, None)):
    """The (source, target) tokenizers a config's data section names; `protos` are the
    sentencepiece models of the sides that use one. The source side keeps its first
    data.src_truncate tokens where that is set."""
    src = build_tokenizer(data.src_tokenizer, lowercase=data.lowercase, model_proto=protos[0])
    if getattr(data, "src_truncate", 0):
        src = FirstTokens(src, data.src_truncate)
    return src, build_tokenizer(data.tgt_tokenizer, lowercase=data.lowercase, model_proto=protos[1])


def fit_tokenizers(data: DataConfig, src_texts: list[str], tgt_texts: list[str]) -> tuple[Tokenizer, Tokenizer]:
    """Tokenizers for training: sentencepiece models are read from `data.src_spm_model` /
    `data.tgt_spm_model` when given, else trained on the training texts (one joint model for both
    sides with `data.spm_joint`)."""
    protos: list[bytes | None] = [None, None]
    sides = [(0, data.src_tokenizer, data.src_spm_model, "data.src_spm_model", src_texts),
             (1, data.tgt_tokenizer, data.tgt_spm_model, "data.tgt_spm_model", tgt_texts)]  # fmt: skip
    for i, kind, path, key, _ in sides:
        if kind == "spm" and path:
            protos[i] = read_spm_model(path, key)
    train = [(i, texts) for i, kind, _, _, texts in sides if kind == "spm" and protos[i] is None]
    kw = dict(vocab_size=data.spm_vocab_size, model_type=data.spm_type, lowercase=data.lowercase)
    if data.spm_joint and len(train) == 2:
        protos[0] = protos[1] = train_sentencepiece([*src_texts, *tgt_texts], **kw)
    else:
        for i, texts in train:
            protos[i] = train_sentencepiece(texts, **kw)
    return build_tokenizers(data, (protos[0], protos[1]))


def tokenizer_files(tokenizers: tuple[Tokenizer, Tokenizer]) -> dict[str, bytes]:
    """What a model directory must hold for its tokenizers: {file name: bytes}."""
    inner = [getattr(tok, "inner", tok) for tok in tokenizers]  # FirstTokens saves what it cuts
    return {name: tok.model_proto for name, tok in zip(SPM_FILES, inner) if isinstance(tok, SentencePieceTokenizer)}


def load_tokenizers(data: DataConfig, directory: Path) -> tuple[Tokenizer, Tokenizer]:
    """The tokenizers of a saved model directory."""
    protos: list[bytes | None] = [None, None]
    for i, (name, kind) in enumerate(zip(SPM_FILES, (data.src_tokenizer, data.tgt_tokenizer))):
        if kind == "spm":
            path = Path(directory) / name
            if not path.is_file():
                raise AttnseqError(f"{path}: missing; the model directory is incomplete (copy it whole)")
            protos[i] = read_spm_model(path, "model directory")
    return build_tokenizers(data, (protos[0], protos[1]))
