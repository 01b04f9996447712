"""The configuration's machinery: strict typed sections read from YAML or `--set`, with file:line
errors, and the sections every task shares (`train`, `decode`).

A task declares its own `data`, `model` (and, where it adds keys, `decode`) sections beside its code
(`attnseq.contracts.Task.sections`); `attnseq.config` reads a whole config through the task registry.
Each section class lists the allowed ranges of its numeric keys in `ranges`.

Every field says why it exists. Unknown keys and values of the wrong type or outside their choices
raise `AttnseqError` naming the file, the line and the valid alternatives.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from attnseq.contracts import MAX_BEAM
from attnseq.errors import AttnseqError

RNNKind = Literal["rnn", "gru", "lstm"]
DecoderKind = Literal["init", "every-step", "luong", "bahdanau"]
AttentionKind = Literal["dot", "scaled_dot", "general", "concat", "location", "location_aware"]
TokenizerKind = Literal["word", "char", "spm"]
SpmType = Literal["bpe", "unigram"]
Precision = Literal["auto", "fp32", "bf16"]
DecodePrecision = Literal["auto", "fp32", "bf16", "int8"]
LengthPenalty = Literal["none", "avg", "gnmt"]
ShortlistSize = int | Literal["auto"]
PoolingKind = Literal["attention", "mean", "max", "last"]

# Allowed ranges of a section's keys: key -> (test, what the key must be), in `ranges`.
Range = tuple[Callable[[Any], bool], str]
AT_LEAST_1: Range = (lambda v: v >= 1, "at least 1")
NOT_NEGATIVE: Range = (lambda v: v >= 0, "0 or more")
POSITIVE: Range = (lambda v: v > 0, "more than 0")
A_SHARE: Range = (lambda v: 0.0 <= v < 1.0, "in [0, 1)")


@dataclass
class TrainConfig:
    """The optimisation loop."""

    seed: int = 1234  # seeds data order, initialisation, dropout and teacher-forcing draws
    batch_size: int = 64  # sentences per batch; batches are bucketed by length
    accumulate: int = 1  # batches per update (gradient accumulation); under torchrun, per process
    max_epochs: int = 30
    max_steps: int = 0  # stop after this many updates (0 = no limit); a stopped run can --resume
    max_minutes: float = 0.0  # wall-clock budget for training (0 = no limit)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay (0: Adam)
    clip: float = 1.0  # max global gradient norm (0 = no clipping)
    teacher_forcing: float = 1.0  # probability of feeding the reference y_{t-1} (1 = always)
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # validate and keep best/ with an exponential moving average of the weights (0 = off)
    lr_factor: float = 0.5  # ReduceLROnPlateau: multiply the LR by this ...
    lr_patience: int = 1  # ... after this many validations without improvement
    min_lr: float = 1e-5
    patience: int = 5  # early stopping: validations without improvement (0 = never stop early)
    # selects the best model and drives the schedule: translate exact_match | bleu | loss, classify
    # accuracy | macro_f1 | loss; "" = the task's first
    valid_metric: str = ""
    valid_max_sentences: int = 0  # greedy-decode at most this many validation pairs (0 = all)
    snapshot_minutes: float = 0.0  # also keep OUT/best_at_<N>min: the model a run with max_minutes = N returns
    save_every: int = 0  # also save a resumable checkpoint every N steps (0 = each epoch only)
    log_every: int = 50  # steps between training-loss lines in metrics.jsonl
    max_nonfinite: int = 10  # an update whose loss or gradient is inf / nan is skipped; stop after this many in a row
    device: str = "cpu"  # "cpu" or "cuda"
    # auto: bf16 where this device runs it natively, else fp32 (attnseq.runtime.resolve_precision);
    # bf16: autocast matrix products and RNNs to bfloat16 (fp32 master weights); fp32: no autocast
    precision: Precision = "auto"
    num_threads: int = 0  # torch CPU threads (0 = torch's default)
    # TensorBoard event files in RUN/tensorboard beside metrics.jsonl: auto = where the tensorboard package
    # is installed (pip install 'attnseq[tensorboard]'), always (an error without it), never
    tensorboard: Literal["auto", "always", "never"] = "auto"

    ranges: ClassVar[dict[str, Range]] = {
        "seed": (lambda v: 0 <= v < 2**63, "in [0, 2^63)"),
        "batch_size": AT_LEAST_1,
        "accumulate": AT_LEAST_1,
        "max_nonfinite": AT_LEAST_1,
        "max_epochs": AT_LEAST_1,
        "max_steps": NOT_NEGATIVE,
        "max_minutes": NOT_NEGATIVE,
        "lr": POSITIVE,
        "weight_decay": NOT_NEGATIVE,
        "clip": NOT_NEGATIVE,
        "teacher_forcing": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "label_smoothing": A_SHARE,
        "ema_decay": A_SHARE,
        "lr_factor": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
        "lr_patience": NOT_NEGATIVE,
        "min_lr": NOT_NEGATIVE,
        "patience": NOT_NEGATIVE,
        "valid_max_sentences": NOT_NEGATIVE,
        "save_every": NOT_NEGATIVE,
        "snapshot_minutes": NOT_NEGATIVE,
        "log_every": NOT_NEGATIVE,
        "num_threads": NOT_NEGATIVE,
    }


@dataclass
class DecodeConfig:
    """Generation: maximum length is max_len_a * source_length + max_len_b tokens."""

    max_len_a: float = 1.5
    max_len_b: int = 10
    batch_size: int = 128  # sentences per decoding batch
    beam_size: int = 1  # 1 = greedy search
    n_best: int = 1  # hypotheses returned per sentence (at most beam_size)
    length_penalty: LengthPenalty = "gnmt"  # how beam search ranks hypotheses of different lengths
    alpha: float = 0.6  # GNMT length penalty ((5 + length) / 6) ** alpha
    block_ngram_repeat: int = 0  # n > 0: no output repeats an n-gram of itself (0 = off)
    max_src_tokens: int = 1024  # a longer input is refused (its attention and search memory grow with it)
    # auto: the fastest this device runs natively (CPU: int8 where a quantized engine runs, GPU: fp32);
    # bf16: decode with a bfloat16 copy of the model; int8: the copy (bfloat16 where native, else
    # float32, where the decoder's recurrent product is int8 too) with its output layer W_y
    # dynamically quantized to int8 (CPU only); scores stay float32
    precision: DecodePrecision = "auto"
    # > 0: the output layer and search cover a lexical shortlist only (fast/shortlist.py): this many
    # target words per source word that co-occur with it most in the training pairs, plus the
    # `shortlist_frequent` most frequent target words (text -> text models; 0 = the whole vocabulary);
    # auto: 10 on a CPU for word-level target vocabularies of 4,000 words or more, else 0
    shortlist: ShortlistSize = "auto"
    shortlist_frequent: int = 100
    # a language model's directory (`task: lm`, trained on the target side with the model's tokenizer):
    # beam search adds lm_weight * log P_LM of each token it writes (shallow fusion, decoding/fusion.py);
    # "" = none. Validation during training decodes without it.
    lm: str = ""
    lm_weight: float = 0.3

    ranges: ClassVar[dict[str, Range]] = {
        "lm_weight": (lambda v: 0 <= v <= 10, "in [0, 10]"),
        "max_len_a": (lambda v: 0 <= v <= 100, "in [0, 100]"),
        "max_len_b": (lambda v: 1 <= v <= 100_000, "in [1, 100000]"),
        "batch_size": AT_LEAST_1,
        "beam_size": (lambda v: 1 <= v <= MAX_BEAM, f"in [1, {MAX_BEAM}]"),
        "n_best": (lambda v: 1 <= v <= MAX_BEAM, f"in [1, {MAX_BEAM}]"),
        "alpha": NOT_NEGATIVE,
        "block_ngram_repeat": NOT_NEGATIVE,
        "max_src_tokens": AT_LEAST_1,
        "shortlist": (lambda v: v == "auto" or 0 <= v <= 50, "auto or in [0, 50]"),
        "shortlist_frequent": NOT_NEGATIVE,
    }


def shortlist_requested(value: int | str) -> bool:
    """Whether decode.shortlist asks for a shortlist explicitly (a size > 0): auto asks only where
    the model has one and it pays (`Translator.shortlist_size`), 0 never."""
    return value not in (0, "auto")


@dataclass
class Config:
    """A whole config: the task's name and its four sections (their classes are the task's)."""

    data: Any = None
    model: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    task: str = "translate"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTION_NAMES = ("data", "model", "train", "decode")


def key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map dotted key paths ("model.attention") to 1-based line numbers in the YAML source."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            lines[path] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, path + "."))
    return lines


def check_unique_keys(node: yaml.Node | None, source: str, prefix: str = "") -> None:
    """A key given twice in one mapping is an error naming both lines (YAML would keep the last)."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        path, line = f"{prefix}{key_node.value}", key_node.start_mark.line + 1
        if path in seen:
            raise AttnseqError(f"{source}:{line}: '{path}' is given twice (also at line {seen[path]}); keep one")
        seen[path] = line
        check_unique_keys(value_node, source, path + ".")


def suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def shown(value: Any) -> str:
    """A value as an error message shows it: its repr, cut to 60 characters and with nested
    containers elided (reprlib), so a huge or self-expanding value (a YAML alias bomb) costs nothing."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 2, 4, 4, 60, 60
    return short.repr(value)


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field's annotation; ints are accepted where floats are expected."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # e.g. a whole number or "auto"
        for member in typing.get_args(annotation):
            try:
                return coerce(value, member, where)
            except AttnseqError:
                pass
        kinds = [f"{typing.get_args(m)[0]}" if typing.get_origin(m) is Literal else "a whole number"
                 for m in typing.get_args(annotation)]  # fmt: skip
        raise AttnseqError(f"{where}: expected {' or '.join(kinds)}, got {shown(value)}")
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        if value not in choices:
            raise AttnseqError(
                f"{where}: {shown(value)} is not allowed; choose one of {', '.join(map(str, choices))}"
                + suggest(str(value), [str(c) for c in choices])
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise AttnseqError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AttnseqError(f"{where}: expected a whole number, got {shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AttnseqError(f"{where}: expected a number, got {shown(value)}")
        return float(value)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            value = [value] if value is not None else []
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise AttnseqError(f"{where}: expected a string, got {shown(value)}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r}")  # a bug in this module, not user error


def sections_of(task) -> dict[str, type]:
    """The section classes of a task (`Task.sections` names data and model, and decode or train
    where the task extends them)."""
    own = task.sections
    return {"data": own["data"], "model": own["model"], "train": own.get("train", TrainConfig),
            "decode": own.get("decode", DecodeConfig)}  # fmt: skip


def new_config(task) -> Config:
    """A default config of `task` (a Task)."""
    s = sections_of(task)
    return Config(data=s["data"](), model=s["model"](), train=s["train"](), decode=s["decode"](), task=task.name)


def field_types(cls: type) -> dict[str, Any]:
    """A section's keys and their annotations (its dataclass fields; class-level tables left out)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply(cfg: Config, raw: dict[str, Any], source: str, lines: dict[str, int], tasks: dict) -> Config:
    """Apply a nested mapping to `cfg`; a `task` key (one of `tasks`, name -> Task) first switches
    the config to that task's sections (those of another task are not carried over). Returns the
    config."""

    def where(path: str) -> str:
        line = lines.get(path)
        return f"{source}:{line}: '{path}'" if line else f"{source}: '{path}'"

    if "task" in raw:
        task = coerce(raw["task"], Literal[tuple(tasks)], where("task"))
        if task != cfg.task:
            decode = {f.name: getattr(cfg.decode, f.name) for f in dataclasses.fields(DecodeConfig)}
            cfg = dataclasses.replace(new_config(tasks[task]), train=cfg.train)
            cfg.decode = dataclasses.replace(cfg.decode, **decode)  # the shared keys set so far, kept
    sections = sections_of(tasks[cfg.task])
    for section, values in raw.items():
        if section == "task":
            continue
        if section not in sections:
            valid = [*sections, "task"]
            raise AttnseqError(
                f"{where(section)} is not a config section; valid sections: "
                f"{', '.join(sections)}, and the key task{suggest(section, valid)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise AttnseqError(f"{where(section)} must be a mapping of keys to values")
        hints = field_types(sections[section])
        target = getattr(cfg, section)
        for key, value in values.items():
            path = f"{section}.{key}"
            if key not in hints:
                valid = sorted(hints)
                raise AttnseqError(
                    f"{where(path)} is not a known key{suggest(str(key), valid)}; "
                    f"valid keys in '{section}': {', '.join(valid)}"
                )
            setattr(target, key, coerce(value, hints[key], where(path)))
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """`"model.attention=concat"` -> ("model.attention", "concat"); the value is parsed as YAML."""
    if "=" not in text:
        raise AttnseqError(f"--set {text!r}: expected KEY=VALUE, e.g. --set model.attention=concat")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def nest(dotted: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        if key == "task":
            nested["task"] = value
            continue
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise AttnseqError(
                f"{source}: '{key}' must be SECTION.KEY, e.g. model.attention (sections: {', '.join(SECTION_NAMES)})"
            )
        nested.setdefault(section, {})[name] = value
    return nested


# Allowed ranges: key -> (test, what the key must be). One table, checked by `validate`.


def check_values(cfg: Config, at: Callable[..., str]) -> None:
    """Every number finite (inf / nan break training later) and every key in its section's `ranges`;
    `at(key)` says where a key's value came from."""
    for section in SECTION_NAMES:
        values = getattr(cfg, section)
        for f in dataclasses.fields(values):
            value = getattr(values, f.name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise AttnseqError(f"{at(f'{section}.{f.name}')}: '{section}.{f.name}' must be a finite number")
    for section in SECTION_NAMES:
        values = getattr(cfg, section)
        for name, (ok, allowed) in getattr(type(values), "ranges", {}).items():
            value = getattr(values, name)
            if not ok(value):
                key = f"{section}.{name}"
                raise AttnseqError(f"{at(key)}: '{key}' must be {allowed} (got {shown(value)})")


def check_split(d, at) -> None:
    """data.files split by data.split, or ready-made data.train / data.valid (the tasks that read
    record or labelled files)."""
    if d.files and (d.train or d.valid or d.test):
        raise AttnseqError(
            f"{at('data.files', 'data.train')}: give either data.files (split by data.split) or "
            "data.train / data.valid / data.test, not both"
        )
    if d.files:
        if len(d.split) != 3 or any(share < 0 for share in d.split) or not 0.999 < sum(d.split) < 1.001:
            raise AttnseqError(
                f"{at('data.split')}: 'data.split' must be three shares (train, valid, test) that sum to 1, "
                f"e.g. [0.8, 0.1, 0.1] (got {d.split})"
            )
        if min(d.split[:2]) <= 0:
            raise AttnseqError(f"{at('data.split')}: 'data.split' needs a train and a valid share above 0")


def origins_at(source: str, origins: dict[str, str] | None) -> Callable[..., str]:
    """`at(*keys)`: where the values of `keys` came from (`origins` maps a dotted key to "file.yaml:12"
    or "--set"; --set, applied last, before the file's lines), else `source`."""

    def at(*keys: str) -> str:
        places = [origins[k] for k in keys if origins and k in origins]
        return "--set" if "--set" in places else next(iter(places), source)

    return at


def validate_for(cfg: Config, task, source: str = "config", origins: dict[str, str] | None = None) -> Config:
    """Ranges (each section's `ranges`), the rules every task shares and `task.check`'s own; errors
    name where the values came from (`origins_at`). Returns the config."""
    at = origins_at(source, origins)
    check_values(cfg, at)
    metrics = tuple(task.metrics)
    if cfg.train.valid_metric and cfg.train.valid_metric not in metrics:
        raise AttnseqError(
            f"{at('train.valid_metric')}: 'train.valid_metric': {cfg.train.valid_metric!r} is not allowed with "
            f"task {cfg.task}; choose one of {', '.join(metrics)}" + suggest(cfg.train.valid_metric, list(metrics))
        )
    if shortlist_requested(cfg.decode.shortlist) and not task.shortlists:
        raise AttnseqError(f"{at('decode.shortlist')}: a shortlist of target words per source word is for text -> "
                           f"text models only, not task {cfg.task}; set decode.shortlist: 0")  # fmt: skip
    task.check(cfg, at)
    if cfg.decode.n_best > cfg.decode.beam_size:
        raise AttnseqError(
            f"{at('decode.n_best', 'decode.beam_size')}: decode.n_best = {cfg.decode.n_best} is more than "
            f"decode.beam_size = {cfg.decode.beam_size}; beam search keeps only beam_size hypotheses"
        )
    return cfg
