"""The contracts between the layers: what the trainer, the checkpoint, the server and the predictors
ask of an application and of a model. This module imports nothing of attnseq's but its error type,
so every layer may import it.

A task (translation, classification, ...) is a module under `attnseq.tasks` with one `Task`
subclass, registered in `attnseq.tasks`. It owns what is particular to it: its config sections and
their rules, how its files are read, the assets a model needs beside its weights (tokenizers,
vocabularies, label sets), how its model is built, how a model is scored (and which direction of
each metric is better), and the predictor that users call. The
trainer sees only a `Task`, datasets that cut and collate batches, and a model whose
`forward(batch)` returns a `LossOutput`.
"""

from __future__ import annotations

from collections.abc import Callable
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
    list (best first, this prediction included) or, for a classifier, every class by probability;
    copied (a model that copies) is, per output token, the share of its probability that copying
    from the input gave (0: generated, 1: copied), else None.
    """

    input: str
    output: str
    score: float  # seq2seq: sum of log-probabilities; classifier: probability of `output`
    input_tokens: list[str]
    output_tokens: list[str]
    attention: np.ndarray | None
    rank_score: float | None = None  # beam search: the score after the length penalty
    alternatives: list[Prediction] = field(default_factory=list)
    copied: list[float] | None = None

    def to_dict(self, *, digits: int = 5) -> dict:
        attention = None
        if self.attention is not None:
            attention = [[round(float(w), digits) for w in row] for row in self.attention]
        record = {"input": self.input, "output": self.output, "score": self.score,
                  "rank_score": self.rank_score, "input_tokens": self.input_tokens,
                  "output_tokens": self.output_tokens, "attention": attention}  # fmt: skip
        record["copied"] = None if self.copied is None else [round(float(c), digits) for c in self.copied]
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


# the most hypotheses a beam search keeps (beam_size, n_best), for the command line, Python and the server
MAX_BEAM = 64


def check_count(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int | None:
    """A search or batching setting given to a predictor: None (the config's) or an int in
    [minimum, maximum]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AttnseqError(f"{name} = {value!r}: must be a whole number of at least {minimum}")
    if maximum is not None and value > maximum:
        raise AttnseqError(f"{name} = {value!r}: at most {maximum}")
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
    # its config sections: "data" and "model", and "decode" / "train" where it extends the shared ones
    # (attnseq.schema); each section class lists its keys' ranges, `check` the rules across keys
    sections: ClassVar[dict[str, type]]
    shortlists: ClassVar[bool] = False  # decode.shortlist applies (text -> text models)

    def check(self, cfg, at) -> None:
        """Rules across the keys of a config of this task; `at(*keys)` names where their values came
        from. Raises AttnseqError naming the keys and the fix."""

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

    # What the command line asks of a task beyond training (`attnseq evaluate`, `plot`, `ablate`, and
    # the held-out report after `attnseq train`). The defaults say the task has none of them.

    # the command line's search options (`--beam-size`, ...; names of decode keys) that apply to its
    # predictor; any other given is refused: "not for <no_search>" ("" = "a <name> model")
    decode_options: ClassVar[tuple[str, ...]] = ()
    no_search: ClassVar[str] = ""
    reports_after_training: ClassVar[bool] = True  # `attnseq train` ends with test_report, where there is one

    def test_report(self, predictor, *, data: str | None = None, src: str | None = None, ref: str | None = None,
                    outputs: list[str] | None = None) -> dict | None:  # fmt: skip
        """The predictor's scores on its config's test split, or on `data` (a file in the task's
        format) or `src` / `ref` files where the task reads those; each output goes into `outputs`
        (one line each, for `evaluate --output`). None when there is no test split and no file.

        Raises:
            AttnseqError: for inputs the task does not read, naming what it reads.
        """
        if data or src or ref:
            raise AttnseqError(f"evaluate: a {self.name} model has no scoring of files")
        return None

    def report_lines(self, report: dict, cfg) -> list[str]:
        """A test report as lines for people (`evaluate`; after training, under "held-out: ")."""
        return [f"{key} {value}" for key, value in report.items() if isinstance(value, (int, float, str))]

    def plot(self, predictor, text: str, out: Path) -> tuple[str, Path]:
        """A picture of what the model attended to for one input, written to `out`: (the output, its path).

        Raises:
            AttnseqError: where the task or model has no such picture.
        """
        raise AttnseqError(f"plot: a {self.name} model has no picture of its attention")

    def ablation_variants(self, cfg) -> list[tuple[str, list[str]]]:
        """What `attnseq ablate` trains from the config `cfg`: each variant's name and its `--set`
        overrides ([] where the task has no ablation)."""
        return []

    def ablation(self, cfg, source: str) -> Ablation:
        """How `attnseq ablate` scores each variant's run, on what (the config `cfg`, read from `source`)."""
        raise AttnseqError(f"{source}: task {self.name} has no ablation")


@dataclass(frozen=True)
class Column:
    """A score in an ablation's table and chart: `scores[key]` shown as `label`, times `scale`, with
    `digits` decimals (and a % sign where `percent`)."""

    key: str
    label: str
    scale: float = 1.0
    digits: int = 2
    percent: bool = False

    def show(self, value: float) -> str:
        return f"{self.scale * value:.{self.digits}f}" + ("%" if self.percent else "")


@dataclass
class Ablation:
    """How `attnseq ablate` scores the variants a task names (`Task.ablation_variants`), trained from
    one config under one budget and scored alike: `score(predictor)` gives a run's scores (the
    `columns`' keys, and the decoding speed `sent_s` where it measures one) on `held_out`; a
    `baseline` that needs no training (its scores, with its `name`) is the table's last row, named
    `baseline_row`."""

    held_out: str
    columns: list[Column]
    score: Callable[[Any], dict]
    baseline: dict | None = None
    baseline_row: str = "baseline"
