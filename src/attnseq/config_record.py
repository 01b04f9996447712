"""A model directory's config.json: its format number, the keys each format added, and writing and
strictly reading it (a saved config must hold every key its format had; a missing key is an
error, never a silent default)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from attnseq.errors import AttnseqError
from attnseq.fileio import atomic_write_text, read_json_file
from attnseq.schema import Config, apply, sections_of

# config.json's record of how the model was trained (e.g. {"train.precision": "bf16"}): what `auto`
# resolved to on the training machine; written for people and tools, not read back into the Config
RESOLVED = "resolved"
# config.json's SHA-256 of every other file of its model directory, checked when the model loads
CHECKSUMS = "files"
# config.json's format: a saved config must hold every key its format had (a missing key is an
# error, never a silent default); a key added later goes into ADDED_KEYS with the next format
FORMAT_KEY = "format"
# 12: data.src_truncate, model.coverage, model.coverage_loss; 11: train.tensorboard;
# 10: data.split_column, data.speed_copies, decode.lm, decode.lm_weight; 9: model.members;
# 8: decode.shortlist may be "auto"; model.ngrams, model.ngram_buckets
FORMAT = 12
ADDED_KEYS: dict[str, int] = {
    "train.accumulate": 2,
    "train.max_nonfinite": 2,
    "decode.max_src_tokens": 2,
    "model.spatial_dropout": 2,
    "model.state_dropout": 2,
    "model.attn_filters": 2,
    "model.attn_kernel": 2,
    "model.ctc_weight": 3,
    "decode.ctc_weight": 3,
    "data.speed_perturb": 4,
    "data.bare_edge": 4,
    "decode.shortlist": 5,
    "decode.shortlist_frequent": 5,
    "data.opening_burst": 6,
    "data.preemphasis": 7,
    "data.fmin": 7,
    "model.ngrams": 8,
    "model.ngram_buckets": 8,
    "model.members": 9,
    "data.split_column": 10,
    "data.speed_copies": 10,
    "decode.lm": 10,
    "decode.lm_weight": 10,
    "train.tensorboard": 11,
    "data.src_truncate": 12,
    "model.coverage": 12,
    "model.coverage_loss": 12,
}


def save_config_json(
    cfg: Config, path: Path, *, resolved: dict[str, str] | None = None, checksums: dict[str, str] | None = None
) -> None:
    record = {FORMAT_KEY: FORMAT, **cfg.to_dict()}
    if resolved:
        record[RESOLVED] = resolved
    if checksums:
        record[CHECKSUMS] = checksums
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_config_record(path: Path) -> dict:
    """config.json as written by `save_config_json`: a JSON object (its records included)."""
    if not path.is_file():
        raise AttnseqError(f"{path}: not found; a model directory holds config.json")
    raw = read_json_file(path)
    if not isinstance(raw, dict):
        raise AttnseqError(
            f"{path}: expected a JSON object (task, data, model, train, decode), found a JSON "
            f"{type(raw).__name__ if raw is not None else 'null'}; the model directory is damaged, copy it whole again"
        )
    return raw


def parse_saved(path: Path, tasks: dict, *, record: dict | None = None) -> Config:
    """A model directory's config.json (`record`: its contents, already read), read strictly (every
    key of its format must be there) but not yet checked across keys."""
    raw = dict(read_config_record(path) if record is None else record)
    for record in (RESOLVED, CHECKSUMS):
        raw.pop(record, None)
    version = raw.pop(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT:
        raise AttnseqError(
            f"{path}: '{FORMAT_KEY}' = {version!r} is not a config format this attnseq reads (1 to {FORMAT}); "
            "a newer attnseq wrote it: upgrade attnseq"
        )
    if "task" not in raw:
        raise AttnseqError(f"{path}: 'task' is missing; a saved model's config names its task (restore the key)")
    cfg = apply(Config(task=""), raw, str(path), {}, tasks)  # no task yet: `task` picks the sections
    for section, cls in sections_of(tasks[cfg.task]).items():
        values = raw.get(section)
        if not isinstance(values, dict):
            raise AttnseqError(
                f"{path}: section '{section}' is missing; a saved model's config.json holds every section and key "
                "it was trained with (restore it from a copy of the model directory)"
            )
        missing = [f"{section}.{f.name}" for f in dataclasses.fields(cls)
                   if f.name not in values and ADDED_KEYS.get(f"{section}.{f.name}", 1) <= version]  # fmt: skip
        if missing:
            raise AttnseqError(
                f"{path}: '{missing[0]}' is missing{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                "a saved model's config.json holds every key it was trained with, and a default could give wrong "
                "output (restore it from a copy of the model directory)"
            )
    return cfg
