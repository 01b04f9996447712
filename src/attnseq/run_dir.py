"""The run directory of a training (`attnseq train --out OUT`): the lock that keeps a second training
out, the metrics log, the model directories saved into it, and what --resume reads back from it.

Layout:
  OUT/best/      model directory of the best validation score
  OUT/last/      model directory of the latest state, with trainer_state.pt for --resume
  OUT/best_at_<N>min/  train.snapshot_minutes = N: the model a run with train.max_minutes = N returns
  OUT/metrics.jsonl
  OUT/.lock      held while a training writes here (a second one into the same OUT is refused)

The training loop is `attnseq.trainer.Trainer`'s; this module only reads and writes the directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from attnseq.checkpoint import (
    load_trainer_state,
    read_model_config,
    recover_interrupted_swap,
    replace_dir,
    save_model_dir,
    verify_model_dir,
)
from attnseq.contracts import Task
from attnseq.errors import AttnseqError
from attnseq.fileio import DirectoryLock, remove_stale_temporaries
from attnseq.schema import Config


class RunDir:
    """One training's run directory. Under torchrun every rank holds one, and only rank 0 writes.

    Metrics records are queued and reach metrics.jsonl just before the checkpoint they belong to,
    whose trainer state records the log's length then: --resume cuts the log back to that length.

    Args:
        path: The run directory (`--out`).

    Attributes:
        path: The run directory.
        last: Its last/ model directory, which --resume continues from.
        created: Whether `take` created the directory (so nothing of an earlier run is in it).
        saved_step: The training step of the last save of last/, which the trainer sets after each
            one (None: nothing saved).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last = self.path / "last"
        self.created = False
        self.saved_step: int | None = None
        self._lock: DirectoryLock | None = None
        self._pending_log: list[str] = []
        self.board = None  # a TensorBoard SummaryWriter that gets every record flushed (`use_tensorboard`)

    def take(self, resume: bool) -> None:
        """Check the directory, create it and lock it (so no second training writes into it), and
        clear what an interrupted save left there.

        Args:
            resume: Whether the training continues the run saved here; else the directory must not
                hold one yet, and a log left by a run stopped before its first save is removed.

        Raises:
            AttnseqError: The path is a file; there is nothing to resume; the directory already
                holds a run (without `resume`); it cannot be created; another process holds it.
        """
        last = self.last
        if self.path.exists() and not self.path.is_dir():
            raise AttnseqError(f"{self.path}: is a file, not a directory; choose another --out")
        if resume:
            recover_interrupted_swap(last)
            if not (last / "trainer_state.pt").is_file():
                raise AttnseqError(
                    f"{self.path}: nothing to resume (no last/trainer_state.pt), as a run stopped before its first "
                    "save has none; drop --resume to start it again"
                )
        else:
            self._refuse_a_held_run()
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)  # a bad --out shows now, not after training
        except OSError as exc:
            raise AttnseqError(f"{self.path}: cannot create the run directory ({exc.strerror or exc})") from None
        self._lock = DirectoryLock(self.path)  # a training that started into OUT since the checks holds it
        remove_stale_temporaries(self.path)
        if not resume:  # the log of a run stopped before its first save completed, which this one replaces
            (self.path / "metrics.jsonl").unlink(missing_ok=True)

    def _refuse_a_held_run(self) -> None:
        if any((self.path / name).exists() for name in ("last", "best", "last.old", "best.old")):
            raise AttnseqError(
                f"{self.path}: already holds a training run; pass --resume to continue it or choose another --out"
            )

    def close(self) -> None:
        """Release the lock, if held (another training may then write here), and close TensorBoard's files."""
        if self.board is not None:
            self.board.close()
            self.board = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def resume_state(self, cfg: Config, task: Task, valid_metric: str, *, world: int) -> dict:
        """Check that the run saved in last/ can continue under `cfg`, and read its trainer state.

        Args:
            cfg: The config the run continues with (only its train.* and decode.* may differ from
                the saved one).
            task: The run's task, which reads the saved config.
            valid_metric: The validation metric that selects models now.
            world: The number of processes training together now.

        Returns:
            The contents of last/trainer_state.pt.

        Raises:
            AttnseqError: The task, data or model sections or train.valid_metric differ from the
                saved run's; last/ is damaged; the run trained on another number of processes.
        """
        last = self.last
        saved_cfg = read_model_config(last, task)
        if saved_cfg.task != cfg.task or saved_cfg.model != cfg.model or saved_cfg.data != cfg.data:
            raise AttnseqError(
                f"{self.path}: the config's data / model sections differ from the run being resumed; "
                "give the same config and --set overrides (only train.* and decode.* may change on --resume)"
            )
        saved_metric = saved_cfg.train.valid_metric or task.default_metric
        if saved_metric != valid_metric:
            raise AttnseqError(
                f"{self.path}: the run selects models by train.valid_metric = {saved_metric}; "
                "it cannot change on --resume (start a new run to use another)"
            )
        verify_model_dir(last, fix="the run cannot resume from it; start a new one")
        state = load_trainer_state(last)
        saved_world = state["progress"].get("world", 1)
        if saved_world != world:
            raise AttnseqError(
                f"{self.path}: this run trained on {saved_world} process(es); resume it with as many "
                f"(torchrun --nproc-per-node ...), not {world}"
            )
        return state

    # ------------------------------------------------------------------------------ metrics.jsonl
    def log(self, record: dict) -> None:
        """Queue a metrics.jsonl record (its JSON is taken now); `flush_log` writes the queue.

        Args:
            record: The record, one JSON object.
        """
        self._pending_log.append(json.dumps(record) + "\n")

    def flush_log(self) -> None:
        """Append the queued records to metrics.jsonl and fsync it (nothing while none are queued);
        with TensorBoard, each record's numbers also become scalars `EVENT/KEY` at its step."""
        if self._pending_log and self.path.is_dir():
            with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.writelines(self._pending_log)
                f.flush()
                os.fsync(f.fileno())
            if self.board is not None:
                for line in self._pending_log:
                    record = json.loads(line)
                    for key, value in record.items():
                        if key not in ("event", "step") and isinstance(value, (int, float)) and "step" in record:
                            self.board.add_scalar(f"{record['event']}/{key}", value, record["step"])
                self.board.flush()
            self._pending_log.clear()

    def use_tensorboard(self, setting: str) -> None:
        """train.tensorboard: auto writes event files to RUN/tensorboard where the tensorboard package is
        installed, always requires it, never does not."""
        import importlib.util

        installed = importlib.util.find_spec("tensorboard") is not None
        if setting == "always" and not installed:
            raise AttnseqError("train.tensorboard = always needs the tensorboard package: "
                               "pip install 'attnseq[tensorboard]' (or set train.tensorboard: auto)")  # fmt: skip
        if setting != "never" and installed:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(self.path / "tensorboard"))

    def log_size(self) -> int:
        """The length of metrics.jsonl in bytes (0 when there is none)."""
        try:
            return (self.path / "metrics.jsonl").stat().st_size
        except OSError:
            return 0

    def cut_log(self, size: int) -> None:
        """On --resume: drop what the log holds beyond the saved state (records of steps the
        resumed run trains again, or a line cut short by a kill), so it reads as one run's.

        Args:
            size: The log's length when the state was saved (0: leave the log as it is).
        """
        path = self.path / "metrics.jsonl"
        if size and self.log_size() > size:
            os.truncate(path, size)

    # ------------------------------------------------------------------------------ models
    def save(
        self, name: str, *, model: nn.Module, config: Config, assets, trainer_state: dict | None,
        resolved: dict[str, str], metrics: dict | None,
    ) -> None:  # fmt: skip
        """Write the model directory `name` (best, last) whole, replacing the one there.

        Args:
            name: The model directory's name in the run directory.
            model: The model whose weights it holds.
            config: The run's config.
            assets: The task's assets (vocabularies, tokenizers).
            trainer_state: What --resume needs beside the weights (last/ only), or None.
            resolved: What the config's `auto` settings run as (config.json).
            metrics: The validation scores of these weights (metrics.json), or None.

        Raises:
            AttnseqError: It could not be written (a full disk, a lost mount); what was saved
                before stays whole, and the message says so.
        """
        try:
            save_model_dir(
                self.path / name,
                model=model,
                config=config,
                assets=assets,
                trainer_state=trainer_state,
                resolved=resolved,
                metrics=metrics,
            )
        except AttnseqError as exc:  # a full disk, a lost mount: what was saved before stays whole
            kept = (
                f"the last good best/ and last/ are intact (last/ at step {self.saved_step}); free space "
                "and continue with --resume"
                if self.saved_step is not None
                else "nothing was saved before"
            )
            raise AttnseqError(f"{exc}; {kept}") from None

    def snapshot(self, minutes: float) -> None:
        """Copy best/ to best_at_<minutes>min/, swapped in whole.

        Args:
            minutes: The training time it stands for (train.snapshot_minutes).
        """
        target = self.path / f"best_at_{minutes:g}min"
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}.", suffix=".tmp"))
        shutil.copytree(self.path / "best", tmp, dirs_exist_ok=True)
        replace_dir(tmp, target)

    def discard_if_unsaved(self) -> bool:
        """After an interruption: remove the directory if `take` created it and nothing was saved
        into it yet (it holds no model and no log).

        Returns:
            Whether it was removed.
        """
        if self.saved_step is not None or not self.created or self.last.exists():
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True
