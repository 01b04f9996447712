"""What the tests that compare whole training runs share: the small dates corpus they train on,
a run's metrics.jsonl records without wall-clock fields, and saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TIMING = {"tok_s", "train_minutes"}  # wall-clock fields: the only ones two equal runs may differ in


@pytest.fixture(scope="session")
def small_dates(tmp_path_factory):
    """300 / 30 / 10 dates pairs: 19 batches of 16 an epoch."""
    from attnseq.tasks.dates import write_corpus

    out = tmp_path_factory.mktemp("small_dates")
    write_corpus(out, sizes={"train": 300, "valid": 30, "test": 10})
    return out


def records(run: Path) -> list[dict]:
    """metrics.jsonl without its start records (one per process start) and wall-clock fields."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in r.items() if k not in TIMING} for r in map(json.loads, lines) if r["event"] != "start"]


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    x, y = weights(a), weights(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
