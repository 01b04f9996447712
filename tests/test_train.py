"""Training: a tiny run learns, resume continues exactly, the run directory and its log."""

from __future__ import annotations

import json

import pytest

from attnseq.train import Trainer


@pytest.fixture
def small_config(tmp_path, dates_dir, tiny_config):
    """200 training pairs: 7 batches an epoch, so a few steps cross epoch boundaries."""
    lines = (dates_dir / "train.tsv").read_text().splitlines()[:200]
    (tmp_path / "train200.tsv").write_text("\n".join(lines) + "\n")

    def make(*overrides):
        return tiny_config(f"data.train={tmp_path / 'train200.tsv'}", "model.dropout=0.3", *overrides)

    return make


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, small_config):
    overrides = ("train.teacher_forcing=0.7", "train.max_epochs=4", "train.patience=0")
    full = Trainer(small_config(*overrides, "train.max_steps=20"), tmp_path / "full", progress_bar=False).fit()
    first = Trainer(small_config(*overrides, "train.max_steps=10"), tmp_path / "split", progress_bar=False).fit()
    assert first.stopped_because == "train.max_steps = 10 reached"
    rest = Trainer(
        small_config(*overrides, "train.max_steps=20"), tmp_path / "split", resume=True, progress_bar=False
    ).fit()
    assert len(full.losses) == 20 and len(first.losses) == 10 and len(rest.losses) == 10
    assert first.losses + rest.losses == full.losses  # exactly, step by step


def test_run_directory_metrics_and_early_stopping(tmp_path, small_config):
    out = tmp_path / "run"
    result = Trainer(
        small_config("train.max_epochs=30", "train.patience=1", "train.lr=1e-9"), out, progress_bar=False
    ).fit()
    assert "no improvement in 1 validations" in result.stopped_because
    assert (out / "best" / "model.safetensors").is_file()
    assert (out / "last" / "trainer_state.pt").is_file()
    assert not (out / "best" / "trainer_state.pt").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "end"
    valid = [r for r in records if r["event"] == "valid"]
    assert 2 <= len(valid) < 30
    assert {"loss", "ppl", "exact_match", "bleu", "lr"} <= set(valid[0])
    assert all(r["loss"] > 0 for r in records if r["event"] == "train")


def test_lr_is_reduced_on_plateau(tmp_path, small_config):
    out = tmp_path / "run"
    Trainer(
        small_config(
            "train.max_epochs=3", "train.patience=0", "train.lr=1e-5", "train.lr_patience=0", "train.min_lr=1e-12"
        ),
        out,
        progress_bar=False,
    ).fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if r["event"] == "valid"]
    assert lrs[-1] < lrs[0]
