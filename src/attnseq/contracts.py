"""The contracts between the layers: what the trainer, the checkpoint, the server and the predictors
ask of an application and of a model. This module imports nothing of attnseq's but its error type,
so every layer may import it.

A task (translation, classification, ...) is a module under `attnseq.tasks` with one `Task`
subclass, registered in `attnseq.tasks`. It owns what is particular to it: how its files are read, the assets a model needs
beside its weights (tokenizers, vocabularies, label sets), how its model is built, how a model is
scored (and which direction of each metric is better), and the predictor that users call. The
trainer sees only a `Task`, datasets that cut and collate batches, and a model whose
`forward(batch)` returns a `LossOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from torch import Tensor, nn

from attnseq.errors import AttnseqError


@dataclass
class LossOutput:
    """What `forward(batch)` returns: the summed loss of a batch and the number of units it sums
    over (target tokens, sentences, ...); the trainer minimises loss_sum / units."""

    loss_sum: Tensor
    units: int
    # parts of the loss worth watching, summed over the batch like loss_sum (e.g. {"ctc": ...,
    # "attention": ...}); the trainer logs each divided by units
    logs: dict[str, float] = field(default_factory=dict)


class Batch(Protocol):
    units: int  # what the loss is averaged over

    def to(self, device) -> Batch: ...


class Dataset(Protocol):
    skipped: int  # examples dropped while reading (too long, empty after tokenizing)

    def __len__(self) -> int: ...

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]: ...

    def collate(self, index: list[int]) -> Batch: ...


class Assets(Protocol):
    """What a model needs beside its weights; saved as files inside the model directory."""

    def files(self) -> dict[str, bytes]: ...

    def describe(self) -> str: ...  # one phrase for the training banner, e.g. "vocab 120/40"


@dataclass
class TaskData:
    train: Dataset
    valid: Dataset
    assets: Any


@dataclass
class Prediction:
    """One JSON shape for every task: `attnseq <task> --json`, Python users and the server.

    input / output are texts (a class label for a classifier); input_tokens / output_tokens are the
    units the model read and wrote; attention is (len(output_tokens), len(input_tokens)) for a
    seq2seq model and (1, len(input_tokens)) for attention pooling; alternatives are the n-best
    list (best first, this prediction included) or, for a classifier, every class by probability.
    """

    input: str
    output: str
    score: float  # seq2seq: sum of log-probabilities; classifier: probability of `output`
    input_tokens: list[str]
    output_tokens: list[str]
    attention: np.ndarray | None
    rank_score: float | None = None  # beam search: the score after the length penalty
    alternatives: list[Prediction] = field(default_factory=list)

    def to_dict(self, *, digits: int = 5) -> dict:
        attention = None
        if self.attention is not None:
            attention = [[round(float(w), digits) for w in row] for row in self.attention]
        record = {"input": self.input, "output": self.output, "score": self.score,
                  "rank_score": self.rank_score, "input_tokens": self.input_tokens,
                  "output_tokens": self.output_tokens, "attention": attention}  # fmt: skip
        record["alternatives"] = [
            {"output": a.output, "score": a.score, "rank_score": a.rank_score, "output_tokens": a.output_tokens}
            for a in self.alternatives
        ]
        return record


@dataclass(frozen=True)
class SearchOption:
    """A keyword that a predictor's `predict` takes beside the inputs (the server builds its
    request schema from these, so a new task's options need no change there)."""

    name: str
    type: type  # int, float or bool
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""


class Predictor(Protocol):
    """Inputs in, `Prediction`s out, in input order; search settings per call."""

    search_options: ClassVar[tuple[SearchOption, ...]]  # what predict(**search) takes

    def predict(self, inputs: list[str], **search) -> list[Prediction]: ...

    def info(self) -> dict:  # what a user of the model needs to know: vocabulary sizes, labels, ...
        ...

    def search_defaults(self) -> dict:  # the value each search option takes when a call leaves it out
        ...


def check_inputs(inputs, *, what: str = "inputs") -> list[str]:
    """A predictor's inputs as the CLI would give them: a list (or other sequence) of str; one str
    on its own, or an item of another type, is an AttnseqError saying so."""
    if isinstance(inputs, (str, bytes)):
        raise AttnseqError(f"{what}: a list of texts, not one {type(inputs).__name__}; wrap it: [text]")
    try:
        items = list(inputs)
    except TypeError:
        raise AttnseqError(f"{what}: a list of texts, not {type(inputs).__name__}") from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise AttnseqError(f"{what}[{i}]: a text (str), not {type(item).__name__}")
    return items


def check_count(name: str, value, *, minimum: int = 1) -> int | None:
    """A search or batching setting given to a predictor: None (the config's) or an int >= minimum."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttnseqError(f"{name} = {value!r}: must be a whole number of at least {minimum}")
    return value


class Task:
    """Base of every application. Subclasses set `name`, `metrics` and `default_metric` and
    implement the methods below."""

    name: ClassVar[str]
    # metric name -> True where higher is better; the trainer's train.valid_metric is one of these
    metrics: ClassVar[dict[str, bool]]
    default_metric: ClassVar[str]
    unit: ClassVar[str] = "tok"  # what LossOutput.units counts, for the progress line
    examples: ClassVar[str] = "examples"  # what the training set holds, for the banner
    # the one precision its predictor runs in, where decode.precision does not apply (None: it does)
    predicts_in: ClassVar[str | None] = None

    def describe_model(self, cfg) -> str:
        """The model in a few words, a noun phrase, for the training banner ("luong/general model")."""
        raise NotImplementedError

    def summary(self, record: dict) -> str:
        """A validation record's metrics in one line for the training log."""
        raise NotImplementedError

    def data(self, cfg, *, saved: Path | None = None) -> TaskData:
        """Read train / valid; assets come from the model directory `saved` (resume), else are
        fitted on the training data."""
        raise NotImplementedError

    def load_assets(self, cfg, directory: Path):
        """The assets saved in a model directory."""
        raise NotImplementedError

    def build_model(self, cfg, assets) -> nn.Module:
        """A fresh model; its forward(batch) returns a LossOutput."""
        raise NotImplementedError

    def validate(self, model: nn.Module, data: TaskData, cfg, *, device: str) -> dict[str, float]:
        """Validation metrics of `model` (in eval mode) on data.valid; the loss is the trainer's."""
        raise NotImplementedError

    def predictor(self, model: nn.Module, cfg, assets, *, device: str = "cpu") -> Predictor:
        raise NotImplementedError

    def higher_is_better(self, metric: str) -> bool:
        return self.metrics[metric]

