"""DistributedDataParallel through torchrun: two gloo processes on loopback train as one process
would on the same global batch, and a DDP run killed and resumed equals the uninterrupted one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DATES_CONFIG, ROOT
from tests.runs import records, weights

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def sets(dates_dir: Path, *extra: str) -> list[str]:
    pairs = [f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
             "data.test=", "model.emb_size=16", "model.enc_hidden_size=32", "model.dec_hidden_size=32",
             "train.batch_size=16", "train.log_every=2", "train.precision=fp32", "train.num_threads=1",
             "train.valid_max_sentences=20", *extra]  # fmt: skip
    return [arg for pair in pairs for arg in ("--set", pair)]


def torchrun(out: Path, args: list[str], *, resume: bool = False, kill: str = "") -> subprocess.Popen:
    """`torchrun --nproc-per-node 2 -m attnseq train ...` (through tests.fault_driver, which kills
    the whole group at the moment `kill` names)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "tests.fault_driver", "train", str(DATES_CONFIG), "--out", str(out), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "ATTNSEQ_TEST_KILL": kill}
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=env, start_new_session=True, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(tmp_path, small_dates):
    from attnseq.cli import main

    args = sets(small_dates, "model.dropout=0", "train.max_steps=8")
    proc = torchrun(tmp_path / "ddp", args)
    one = tmp_path / "one"  # one process, each update on the same two batches (train.accumulate = 2)
    assert main(["train", str(DATES_CONFIG), "--out", str(one), *args, "--set", "train.accumulate=2"]) == 0
    finish(proc)
    a, b = weights(tmp_path / "ddp" / "last"), weights(one / "last")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    ddp_train = [r["loss"] for r in records(tmp_path / "ddp") if r["event"] == "train"]
    one_train = [r["loss"] for r in records(one) if r["event"] == "train"]
    assert ddp_train == pytest.approx(one_train, rel=1e-6) and len(ddp_train) == 4
    state = torch.load(tmp_path / "ddp" / "last" / "trainer_state.pt", weights_only=True)
    assert state["progress"]["world"] == 2 and len(state["rank_rng"]) == 2
    assert not torch.equal(state["rank_rng"][0]["torch_rng"], state["rank_rng"][1]["torch_rng"])


def test_a_killed_ddp_run_resumes_to_the_uninterrupted_run(tmp_path, small_dates):
    args = sets(small_dates, "model.dropout=0.2", "train.max_steps=24", "train.save_every=4")
    whole = tmp_path / "whole"
    finish(torchrun(whole, args))
    cut = tmp_path / "cut"
    # 19 batches = 9 updates of 2 an epoch; saves at steps 4, 8, 9 (epoch end), 12, ...: kill every
    # process of the group two updates after the one at 12
    proc = torchrun(cut, args, kill="step:14")
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert torch.load(cut / "last" / "trainer_state.pt", weights_only=True)["progress"]["step"] == 12
    finish(torchrun(cut, args, resume=True))
    for name in ("last", "best"):
        a, b = weights(whole / name), weights(cut / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert records(cut) == records(whole)


def test_resume_with_another_number_of_processes_is_refused(tmp_path, small_dates, capsys):
    from attnseq.cli import main

    args = sets(small_dates, "train.max_steps=4")
    finish(torchrun(tmp_path / "run", args))
    assert main(["train", str(DATES_CONFIG), "--out", str(tmp_path / "run"), *args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trained on 2 process(es); resume it with as many" in err


def test_the_trainer_is_freed_before_the_group_closes(tmp_path, small_dates, monkeypatch):
    """DistributedDataParallel sits in reference cycles; left to the interpreter's exit, its reducer
    aborted a rank (SIGABRT, "terminate called without an active exception", gloo's threads still
    holding its work). `attnseq train` drops the trainer before the group closes, and the close
    collects it, so nothing that holds the process group outlives the close."""
    import gc

    from attnseq.cli import main
    from attnseq.distributed import Group
    from attnseq.trainer import Trainer

    seen = []

    def close(self, together: bool = True) -> None:
        gc.collect()
        seen.append((together, sum(type(o) is Trainer for o in gc.get_objects())))

    monkeypatch.setattr(Group, "close", close)
    args = sets(small_dates, "train.max_steps=2")
    assert main(["train", str(DATES_CONFIG), "--out", str(tmp_path / "run"), *args]) == 0
    assert seen == [(True, 0)]


def test_fit_lets_go_of_the_ddp_wrapper(tiny_config, tmp_path):
    """Trainer.close (the end of fit) drops the module that wraps the model for training, so the
    group's close collects a DistributedDataParallel wrapper even while an error's traceback still
    holds the trainer. A plain wrapper stands in for it here (a group of one has none)."""
    from torch import nn

    from attnseq.trainer import Trainer

    trainer = Trainer(tiny_config("train.max_steps=1"), tmp_path / "run", progress_bar=False)
    trainer.train_model = nn.Sequential(trainer.model)
    trainer.fit()
    assert trainer.train_model is trainer.model
