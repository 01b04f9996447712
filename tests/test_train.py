"""Training: a tiny run learns, resume continues exactly, the run directory and its log."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from attnseq.trainer import Trainer


@pytest.fixture
def small_config(tmp_path, dates_dir, tiny_config):
    """200 training pairs: 7 batches an epoch, so a few steps cross epoch boundaries."""
    lines = (dates_dir / "train.tsv").read_text().splitlines()[:200]
    (tmp_path / "train200.tsv").write_text("\n".join(lines) + "\n")

    def make(*overrides):
        return tiny_config(f"data.train={tmp_path / 'train200.tsv'}", "model.dropout=0.3", *overrides)

    return make


def valid_records(out) -> list[dict]:
    """End-of-epoch validation records without their timing."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keep = ("step", "epoch", "lr", "loss", "exact_match", "bleu")
    return [{k: r[k] for k in keep} for r in records if r["event"] == "valid" and r["epoch"] == int(r["epoch"])]


def test_resume_follows_exactly_the_path_of_an_uninterrupted_run(tmp_path, small_config):
    """Stopped in mid-epoch 2 and resumed: same losses, LR schedule, early stop and final weights.

    The learning rate is so low that exact match stays flat: the LR is cut after every epoch
    (lr_patience 0) and early stopping ends the run at epoch 3 (patience 2).
    """
    overrides = ("train.teacher_forcing=0.7", "train.max_epochs=6", "train.patience=2", "train.lr=1e-4",
                 "train.lr_patience=0", "train.min_lr=1e-7")  # fmt: skip
    full = Trainer(small_config(*overrides), tmp_path / "full", progress_bar=False).fit()
    assert full.stopped_because == "no improvement in 2 validations (train.patience)"
    assert len(full.losses) == 21  # 3 epochs of 7 batches

    first = Trainer(small_config(*overrides, "train.max_steps=10"), tmp_path / "split", progress_bar=False).fit()
    assert first.stopped_because == "train.max_steps = 10 reached"
    again = Trainer(small_config(*overrides, "train.max_steps=10"), tmp_path / "split", resume=True).fit()
    assert again.losses == [] and again.stopped_because == "train.max_steps = 10 reached"
    rest = Trainer(small_config(*overrides), tmp_path / "split", resume=True, progress_bar=False).fit()

    assert first.losses + rest.losses == full.losses  # exactly, step by step
    assert rest.stopped_because == full.stopped_because
    full_valid = valid_records(tmp_path / "full")
    assert valid_records(tmp_path / "split") == full_valid
    assert [r["lr"] for r in full_valid] == [1e-4, 5e-5, 2.5e-5]  # the schedule really moved
    full_w, split_w = (load_file(tmp_path / run / "last" / "model.safetensors") for run in ("full", "split"))
    assert full_w.keys() == split_w.keys()
    assert all(torch.equal(full_w[k], split_w[k]) for k in full_w)
    done = Trainer(small_config(*overrides), tmp_path / "split", resume=True, progress_bar=False).fit()
    assert done.losses == [] and "early-stopped" in done.stopped_because


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


def test_ema_weights_are_validated_saved_as_best_and_resumed_exactly(tmp_path, small_config):
    """With train.ema_decay, best/ holds the moving average; a stopped and resumed run ends with the
    same trained weights and the same average as an uninterrupted one."""
    overrides = ("train.ema_decay=0.9", "train.max_epochs=2", "train.patience=0", "train.lr=0.01")
    full = Trainer(small_config(*overrides), tmp_path / "full", progress_bar=False)
    full.fit()
    raw = dict(full.model.named_parameters())
    for name, avg in full.eval_model.named_parameters():  # the average trails the trained weights
        assert avg.shape == raw[name].shape
    assert not all(torch.equal(a, raw[n]) for n, a in full.eval_model.named_parameters())
    best = load_file(tmp_path / "full" / "best" / "model.safetensors")
    epoch2 = {n: p.detach() for n, p in full.eval_model.named_parameters()}
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    if [r for r in records if r["event"] == "valid"][-1]["improved"]:
        assert all(torch.equal(best[n], epoch2[n]) for n in best)

    Trainer(small_config(*overrides, "train.max_steps=9"), tmp_path / "split", progress_bar=False).fit()
    resumed = Trainer(small_config(*overrides), tmp_path / "split", resume=True, progress_bar=False)
    resumed.fit()
    for (n, a), (_, b) in zip(full.eval_model.named_parameters(), resumed.eval_model.named_parameters()):
        assert torch.equal(a, b), n
    full_w, split_w = (load_file(tmp_path / run / "last" / "model.safetensors") for run in ("full", "split"))
    assert all(torch.equal(full_w[k], split_w[k]) for k in full_w)
