"""Reading a whole config: a top-level `task` picks that task's sections (`attnseq.tasks`); `train`
and `decode` are shared (`attnseq.schema`). The section classes are importable from here too.

Unknown keys and values of the wrong type or outside their ranges or choices raise `AttnseqError`
naming the file, the line and the valid alternatives; `validate` adds the rules across keys: the
shared ones here, each task's own in `Task.check`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from attnseq.config_record import (  # noqa: F401 - the config's names, importable from here
    ADDED_KEYS,
    CHECKSUMS,
    FORMAT,
    FORMAT_KEY,
    RESOLVED,
    parse_saved,
    read_config_record,
    save_config_json,
)
from attnseq.errors import AttnseqError
from attnseq.fileio import read_text_file
from attnseq.models.config import ClassifierConfig, ModelConfig
from attnseq.schema import (  # noqa: F401 - the config's names, importable from here
    Config,
    DecodeConfig,
    DecodePrecision,
    TrainConfig,
    apply,
    check_unique_keys,
    check_values,
    key_lines,
    nest,
    new_config,
    parse_override,
    sections_of,
    shortlist_requested,
    suggest,
    validate_for,
)
from attnseq.tasks import get_task, known_tasks
from attnseq.tasks.classify import ClassifyDataConfig
from attnseq.tasks.records import RecordsDataConfig
from attnseq.tasks.speech_config import SpeechDataConfig, SpeechDecodeConfig, SpeechModelConfig
from attnseq.tasks.translation import DataConfig

__all__ = ["ClassifierConfig", "ClassifyDataConfig", "Config", "DataConfig", "DecodeConfig", "ModelConfig",
           "RecordsDataConfig", "SpeechDataConfig", "SpeechDecodeConfig", "SpeechModelConfig", "TrainConfig",
           "for_task", "task_sections", "load_config", "load_config_json",
           "validate"]  # fmt: skip


def for_task(task: str) -> Config:
    """A default config of `task`."""
    return new_config(get_task(task))


def task_sections() -> dict[str, dict[str, type]]:
    """Every registered task's section classes: task name -> {"data": ..., "model": ..., "train": ...,
    "decode": ...}."""
    return {name: sections_of(task) for name, task in known_tasks().items()}


def validate(cfg: Config, source: str = "config", origins: dict[str, str] | None = None) -> Config:
    """Ranges (each section's `ranges`), the rules every task shares and the task's own (`Task.check`).

    `origins` maps a dotted key to where its value came from ("file.yaml:12", "--set"); errors
    name that place, or `source` for keys left at their defaults.
    """
    return validate_for(cfg, get_task(cfg.task), source, origins)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults when `path` is None) and apply `--set` overrides.

    Raises:
        AttnseqError: missing file, invalid YAML, unknown section/key, wrong type or choice.
    """
    cfg = for_task("translate")
    origins: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AttnseqError(f"{path}: config file not found; check the path (configs/ has examples)")
        text = read_text_file(path)
        try:
            node = yaml.compose(text)
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]  # one line, for every kind
            raise AttnseqError(f"{path}{line}: invalid YAML ({problem})") from None
        if not isinstance(raw, dict):
            raise AttnseqError(f"{path}: expected sections data / model / train / decode at top level")
        check_unique_keys(node, str(path))
        lines = key_lines(node)
        cfg = apply(cfg, raw, str(path), lines, known_tasks())
        origins.update({key: f"{path}:{line}" for key, line in lines.items()})
    if overrides:
        dotted = dict(parse_override(o) for o in overrides)
        cfg = apply(cfg, nest(dotted, "--set"), "--set", {}, known_tasks())
        origins.update({key: "--set" for key in dotted})
    return validate(cfg, str(path) if path else "config", origins)


def load_config_json(path: Path) -> Config:
    """A model directory's config, read strictly: every key of its format must be there."""
    return validate(parse_saved(path, known_tasks()), str(path))
