"""task: lm. A recurrent language model (`models/lm.py`) over the target side of a task's data, for
shallow fusion into another model's beam search (decode.lm; `decoding/fusion.py`).

It reads lines of text (data.corpus text: one sentence per line) or a column of a TSV manifest
(data.corpus tsv, e.g. a speech corpus's transcripts, with data.split_column picking the rows of
each split), tokenized as the model it will serve tokenizes (data.tokenizer: the same kind, and
for sentencepiece the same model file, data.spm_model). Validation and `attnseq evaluate` report
perplexity (per token, </s> included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from attnseq.audio.corpus import split_rows
from attnseq.batching import bucketed_batches, pad
from attnseq.checkpoint import load_predictor
from attnseq.contracts import Prediction, Task, TaskData, check_inputs
from attnseq.errors import AttnseqError
from attnseq.models.lm import LMBatch, LMModelConfig, RNNLanguageModel
from attnseq.readers import read_lines
from attnseq.schema import AT_LEAST_1, Config, Range, TokenizerKind
from attnseq.tokenize import Tokenizer, build_tokenizer, read_spm_model, train_sentencepiece
from attnseq.vocab import Vocab

VOCAB, SPM = "vocab.json", "spm.model"


@dataclass
class LMDataConfig:
    """task: lm. The sentences a language model learns, and how they become tokens."""

    corpus: Literal["text", "tsv"] = "text"
    train: str = ""  # text: a file of one sentence per line (plain or .gz); tsv: a split's name (with split_column)
    valid: str = ""
    test: str = ""
    manifest: str = ""  # tsv: the manifest (a header row; columns separated by TABs)
    text_column: str = "text"
    split_column: str = ""  # tsv: the column naming each row's split ("" = data.train / valid / test are manifests)
    tokenizer: TokenizerKind = "char"  # as the model the LM serves tokenizes its output
    spm_model: str = ""  # tokenizer spm: that model's sentencepiece file ("" = train one on the training text)
    spm_vocab_size: int = 200
    lowercase: bool = False
    max_tokens: int = 512  # longer training sentences are left out

    ranges: ClassVar[dict[str, Range]] = {
        "spm_vocab_size": (lambda v: v >= 8, "at least 8"),
        "max_tokens": AT_LEAST_1,
    }


def check_lm(cfg: Config, at) -> None:
    d, m = cfg.data, cfg.model
    if not (d.train and d.valid):
        raise AttnseqError(f"{at('data.train', 'data.valid')}: task lm needs data.train and data.valid")
    if d.corpus == "tsv" and d.split_column and not d.manifest:
        raise AttnseqError(f"{at('data.split_column')}: data.split_column picks rows of data.manifest; set it")
    if m.tie_embeddings and m.emb_size != m.hidden_size:
        raise AttnseqError(f"{at('model.tie_embeddings', 'model.emb_size')}: tied embeddings need model.emb_size "
                           f"({m.emb_size}) equal to model.hidden_size ({m.hidden_size})")  # fmt: skip


def read_sentences(d: LMDataConfig, split: str) -> list[str]:
    """The sentences of `split` (train / valid / test; [] where the config names none)."""
    name = getattr(d, split)
    if not name:
        return []
    if d.corpus == "text":
        return [line.strip() for _, line in read_lines(name) if line.strip()]
    _, rows = split_rows(d, split, [d.text_column])
    return [row[d.text_column].strip() for row in rows if row[d.text_column].strip()]


@dataclass
class LMAssets:
    vocab: Vocab
    tokenizer: Tokenizer

    def files(self) -> dict[str, bytes]:
        files = {VOCAB: self.vocab.to_bytes()}
        if getattr(self.tokenizer, "model_proto", None) is not None:
            files[SPM] = self.tokenizer.model_proto
        return files

    def describe(self) -> str:
        return f"vocab {len(self.vocab):,}"


class Sentences:
    """Id-encoded sentences; batches of similar length."""

    def __init__(self, texts: list[str], assets: LMAssets, *, max_tokens: int) -> None:
        self.texts, self.ids, self.skipped = [], [], 0
        for text in texts:
            tokens = assets.tokenizer.tokenize(text)
            if not tokens or len(tokens) > max_tokens:
                self.skipped += 1
                continue
            self.texts.append(text)
            self.ids.append(assets.vocab.encode(tokens))

    def __len__(self) -> int:
        return len(self.ids)

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        return bucketed_batches(len(self), lambda i: len(self.ids[i]), batch_size, seed=seed)

    def collate(self, index: list[int]) -> LMBatch:
        return encode_batch([self.ids[i] for i in index], index)


def encode_batch(ids: list[list[int]], index: list[int]) -> LMBatch:
    return LMBatch(pad([[Vocab.bos_id, *s] for s in ids], Vocab.pad_id), pad([[*s, Vocab.eos_id] for s in ids],
                   Vocab.pad_id), torch.tensor([len(s) + 1 for s in ids]), list(index))  # fmt: skip


class LanguageModel:
    """Sentences in, one `Prediction` each out: output = the sentence's perplexity per token (its
    </s> included), score = its log-probability, input_tokens = its tokens."""

    search_options = ()

    def __init__(self, model: RNNLanguageModel, config: Config, assets: LMAssets, *, device: str = "cpu") -> None:
        self.model, self.config, self.assets = model, config, assets
        self.vocab, self.tokenizer = assets.vocab, assets.tokenizer
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> LanguageModel:
        return load_predictor(path, task=LMTask(), device=device)

    def info(self) -> dict:
        return {"vocab": len(self.vocab), "tokenizer": self.config.data.tokenizer}

    def search_defaults(self) -> dict:
        return {}

    def log_probs(self, texts: list[str], *, batch_size: int = 64) -> list[tuple[float, int]]:
        """(log-probability, tokens scored) of each text, </s> counted."""
        ids = [self.vocab.encode(self.tokenizer.tokenize(t)) for t in texts]
        out: list[tuple[float, int]] = []
        self.model.eval()
        for start in range(0, len(ids), batch_size):
            part = ids[start : start + batch_size]
            scores = self.model.score(encode_batch(part, []).to(self.device))
            out += [(float(s), len(p) + 1) for s, p in zip(scores.tolist(), part)]
        return out

    def predict(self, inputs: list[str], **search) -> list[Prediction]:
        if search:
            raise AttnseqError(f"a language model takes no search options (got {', '.join(search)})")
        texts = check_inputs(inputs)
        return [Prediction(input=t, output=f"{math.exp(-lp / n):.3f}", score=lp,
                           input_tokens=self.tokenizer.tokenize(t), output_tokens=[], attention=None)
                for t, (lp, n) in zip(texts, self.log_probs(texts))]  # fmt: skip

    def perplexity(self, texts: list[str]) -> dict:
        scored = self.log_probs(texts)
        tokens = sum(n for _, n in scored)
        return {"ppl": math.exp(-sum(lp for lp, _ in scored) / max(tokens, 1)), "tokens": tokens, "n": len(texts)}


class LMTask(Task):
    name = "lm"
    metrics = {"ppl": False, "loss": False}
    default_metric = "ppl"
    sections = {"data": LMDataConfig, "model": LMModelConfig}
    examples = "sentences"
    no_search = "a language model (it scores text)"

    def check(self, cfg: Config, at) -> None:
        check_lm(cfg, at)

    def describe_model(self, cfg: Config) -> str:
        m = cfg.model
        return f"{m.layers}-layer {m.rnn} language model"

    def summary(self, r: dict) -> str:
        return f"perplexity {r['ppl']:.3f}"

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        d = cfg.data
        texts = {split: read_sentences(d, split) for split in ("train", "valid")}
        for split, found in texts.items():
            if not found:
                raise AttnseqError(f"data.{split}: no sentences; check data.{split} and the file it names")
        if saved is not None:
            assets = self.load_assets(cfg, saved)
        else:
            proto = None
            if d.tokenizer == "spm":
                proto = read_spm_model(d.spm_model, "data.spm_model") if d.spm_model else train_sentencepiece(
                    texts["train"], vocab_size=d.spm_vocab_size, model_type="unigram",
                    lowercase=d.lowercase)  # fmt: skip
            tokenizer = build_tokenizer(d.tokenizer, lowercase=d.lowercase, model_proto=proto)
            vocab = Vocab.build((tokenizer.tokenize(t) for t in texts["train"]), source="the training sentences")
            assets = LMAssets(vocab, tokenizer)
        train, valid = (Sentences(texts[s], assets, max_tokens=d.max_tokens if s == "train" else 10**9)
                        for s in ("train", "valid"))  # fmt: skip
        return TaskData(train, valid, assets)

    def load_assets(self, cfg: Config, directory: Path) -> LMAssets:
        directory = Path(directory)
        vocab = Vocab.load(directory / VOCAB)
        proto = read_spm_model(directory / SPM, "model directory") if cfg.data.tokenizer == "spm" else None
        return LMAssets(vocab, build_tokenizer(cfg.data.tokenizer, lowercase=cfg.data.lowercase, model_proto=proto))

    def build_model(self, cfg: Config, assets: LMAssets) -> RNNLanguageModel:
        model = RNNLanguageModel(len(assets.vocab), cfg.model, pad_id=Vocab.pad_id)
        model.label_smoothing = cfg.train.label_smoothing
        return model

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """Nothing beyond the trainer's pass over valid: its loss per token and `ppl` are the metrics."""
        return {}

    def predictor(self, model, cfg: Config, assets: LMAssets, *, device: str = "cpu") -> LanguageModel:
        return LanguageModel(model, cfg, assets, device=device)

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None) -> dict | None:
        """Perplexity on the config's test split, or on --data (a file of one sentence per line)."""
        if src or ref:
            raise AttnseqError("evaluate: a language model is scored on its config's test split or --data FILE")
        texts = [line.strip() for _, line in read_lines(data) if line.strip()] if data else read_sentences(
            predictor.config.data, "test")  # fmt: skip
        if not texts:
            return None
        found = predictor.predict(texts)
        if outputs is not None:
            outputs.extend(p.output for p in found)
        return predictor.perplexity(texts)

    def report_lines(self, report: dict, cfg) -> list[str]:
        return [f"perplexity {report['ppl']:.3f} per token ({report['tokens']:,} tokens in {report['n']:,} sentences)"]
