"""Faults during training: kill -9 at seeded random moments (some in the middle of saves) then
--resume equals the uninterrupted run; a full disk keeps the last good models; a second training
into the same run directory is refused; non-finite losses are skipped, counted and stop the run."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DATES_CONFIG, ROOT
from tests.runs import records, same_weights

MOMENTS = ("step", "weights", "state", "replace", "flush")


def sets(dates_dir: Path, *extra: str) -> list[str]:
    pairs = [f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}", "data.test=",
             "model.emb_size=16", "model.enc_hidden_size=32", "model.dec_hidden_size=32", "model.dropout=0.2",
             "train.batch_size=16", "train.log_every=3", "train.save_every=4", "train.max_steps=20",
             "train.ema_decay=0.9", "train.valid_max_sentences=20", *extra]  # fmt: skip
    return [arg for pair in pairs for arg in ("--set", pair)]


def train(out: Path, args: list[str], *, resume: bool = False, kill: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tests.fault_driver", "train", str(DATES_CONFIG), "--out", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNSEQ_TEST_KILL": kill}
    return subprocess.run(cmd + (["--resume"] if resume else []), env=env, cwd=ROOT, start_new_session=True,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_kill_at_ten_seeded_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, small_dates):
    args = sets(small_dates)
    whole = tmp_path / "whole"
    done = train(whole, args)
    assert done.returncode == 0, done.stderr[-2000:]
    # 300 pairs / 16 = 19 updates an epoch: 20 steps make saves by save_every, an end-of-epoch
    # validation and a budget stop; each save writes weights, state and swaps directories
    rng = random.Random(20261203)
    moments = [(rng.choice(MOMENTS), rng.randint(1, 8)) for _ in range(10)]
    assert {m for m, _ in moments} >= {"step", "weights", "state", "replace"}  # inside saves, not only between
    for i, (where, n) in enumerate(moments):
        run = tmp_path / f"cut{i}"
        cut = train(run, args, kill=f"{where}:{n if where != 'step' else 2 * n}")
        assert cut.returncode == -9, (where, n, cut.stderr[-2000:])
        first = not (run / "last").exists() and not (run / "last.old").exists()  # killed in the first save
        resumed = train(run, args, resume=not first)  # then it starts again in the same directory
        assert resumed.returncode == 0, (where, n, resumed.stderr[-2000:])
        for name in ("last", "best"):
            assert same_weights(whole / name, run / name), (where, n, name)
        assert records(run) == records(whole), (where, n)
        assert not list(run.glob(".*.tmp")), (where, n)  # what the kill left mid-save is gone


def test_a_second_training_into_the_same_run_directory_is_refused(tmp_path, small_dates, capsys):
    from attnseq.cli import main
    from attnseq.fileio import DirectoryLock

    out = tmp_path / "run"
    out.mkdir()
    lock = DirectoryLock(out)  # as a training running in another process holds it
    try:
        assert main(["train", str(DATES_CONFIG), "--out", str(out), *sets(small_dates)]) == 2
    finally:
        lock.close()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"(pid {os.getpid()}) is writing a training run here" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the refused run


def _storage_errors():
    from safetensors import SafetensorError

    return [  # what each writer raises when the disk fills up: (writer in attnseq.checkpoint, error, file, reason)
        ("save_file", OSError(errno.ENOSPC, "No space left on device"), "model.safetensors", "No space left on device"),
        ("save_file", SafetensorError("Error while serializing: IoError(No space left on device)"), "model.safetensors",
         "Error while serializing: IoError(No space left on device)"),
        ("torch.save", RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 2048 vs 1984"),
         "trainer_state.pt", "[enforce fail at inline_container.cc:626] . unexpected pos 2048 vs 1984"),
    ]  # fmt: skip


@pytest.mark.parametrize("writer, error, name, reason", _storage_errors(), ids=["oserror", "safetensors", "torch"])
def test_a_full_disk_keeps_the_last_good_models_and_says_so(
    tmp_path, small_dates, capsys, monkeypatch, writer, error, name, reason
):
    from attnseq import checkpoint
    from attnseq.cli import main

    out = tmp_path / "run"
    args = sets(small_dates)
    owner, attr = (checkpoint, "save_file") if writer == "save_file" else (checkpoint.torch, "save")
    real, calls = getattr(owner, attr), []

    def full_at_the_sixth_save(*a, **kw):  # saves: last/ at steps 4, 8, 12, 16, best/ at 19, then last/ at 19
        calls.append(1)
        if len(calls) > (5 if writer == "save_file" else 4):  # torch.save writes only last/'s state
            raise type(error)(*error.args)  # a fresh one: a shared error's traceback would keep this run alive
        return real(*a, **kw)

    monkeypatch.setattr(owner, attr, full_at_the_sixth_save)
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0] == (f"attnseq: error: {out / 'last' / name}: could not write it ({reason}); {out / 'last'} is "
                      "unchanged; the last good best/ and last/ are intact (last/ at step 16); free space and "
                      "continue with --resume")  # fmt: skip
    assert (out / "last" / "trainer_state.pt").is_file() and (out / "best" / "model.safetensors").is_file()
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(owner, attr, real)
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *args, "--resume"]) == 0


def test_non_finite_losses_are_skipped_counted_and_stop_the_run(tmp_path, tiny_config, monkeypatch):
    from attnseq.errors import AttnseqError
    from attnseq.models.seq2seq import Seq2Seq
    from attnseq.trainer import Trainer

    original, calls = Seq2Seq.forward, []

    def poisoned(self, batch):
        out = original(self, batch)
        calls.append(1)
        if 3 <= len(calls) <= 4 or len(calls) >= 8:  # two bad updates, then bad for good
            out.loss_sum = out.loss_sum * float("nan")
        return out

    monkeypatch.setattr(Seq2Seq, "forward", poisoned)
    trainer = Trainer(tiny_config("train.max_steps=40", "train.max_nonfinite=3"), tmp_path / "run", progress_bar=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(AttnseqError, match=r"step 10: the loss or its gradient was inf / nan in 3 updates in a row"):
        trainer.fit()
    assert trainer.progress.nonfinite == 5 and trainer.progress.nonfinite_run == 3
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())  # good steps trained
