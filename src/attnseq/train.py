"""Training, for any task: Adam on `forward(batch)`'s loss per unit, clipping, LR on plateau,
validation every epoch, early stopping, an optional weight average, best and last models, exact
resume, a JSONL metrics log, budgets in epochs, steps and minutes.

The trainer knows no vocabularies, metrics or decoding: the `Task` reads the data, builds the model,
and names and computes the validation metrics (`attnseq.contracts`).

Under `torchrun` the processes of one `attnseq.distributed.Group` train one model together
(DistributedDataParallel): each takes its share of every update's batches, rank 0 validates, saves
and logs.

Run directory layout:
  OUT/best/      model directory of the best validation score
  OUT/last/      model directory of the latest state, with trainer_state.pt for --resume
  OUT/metrics.jsonl
  OUT/.lock      held while a training writes here (a second one into the same OUT is refused)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from attnseq import runtime
from attnseq.checkpoint import (
    build_checked,
    load_config_json,
    load_trainer_state,
    load_weights,
    recover_interrupted_swap,
    replace_dir,
    save_model_dir,
    verify_model_dir,
)
from attnseq.config import Config
from attnseq.distributed import Group
from attnseq.errors import AttnseqError
from attnseq.fileio import DirectoryLock, remove_stale_temporaries
from attnseq.metrics import perplexity
from attnseq.runtime import autocast, resolve_device
from attnseq.contracts import Task, TaskData
from attnseq.tasks import get_task


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bias_corrected_ema(decay: float):
    """`multi_avg_fn` for `AveragedModel`: the exponential moving average of the weights, corrected
    for its start as Adam corrects its moments. After n updates the weights w_1..w_n of the updates
    count (1 - decay) decay^(n-k) / (1 - decay^n): they sum to 1, so a short run's average is an
    average of what it trained, not mostly the initialization (with decay 0.999 an uncorrected
    average still holds 86% of its starting weights after 150 steps). Long runs are unchanged:
    the correction fades as decay^n does."""

    def update(averaged: list, current: list, num_averaged) -> None:
        n = int(num_averaged) + 1  # the number of this update; the first (n = 1) copies
        keep = decay * (1 - decay ** (n - 1)) / (1 - decay**n)
        torch._foreach_lerp_(averaged, current, 1 - keep)

    return update


@dataclass
class Progress:
    """Where training stands; saved in trainer_state.pt so that --resume continues exactly."""

    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # next update of the current epoch (its batches: `Trainer.updates`)
    step: int = 0  # updates so far (skipped non-finite ones included)
    best: float | None = None  # best end-of-epoch validation score: drives the LR schedule and patience
    best_saved: float | None = None  # score of the model in best/ (budget stops in mid-epoch count too)
    bad_validations: int = 0  # end-of-epoch validations since `best` improved
    train_seconds: float = 0.0  # time spent in training steps, over all runs
    tgt_tokens: int = 0  # loss units (LossOutput.units: target tokens, sentences) trained on, over all runs
    early_stopped: bool = False
    snapshot_taken: bool = False  # train.snapshot_minutes reached and best_at_<N>min written
    world: int = 1  # processes training together (torchrun); --resume needs the same number
    window_loss: float = 0.0  # loss x units since the last training-loss record of metrics.jsonl ...
    window_units: int = 0  # ... and its units, so a resumed run's next record averages the same steps
    log_bytes: int = 0  # the length of metrics.jsonl when this state was saved (--resume cuts it back to it)
    nonfinite: int = 0  # updates skipped because the loss or gradient was inf / nan
    nonfinite_run: int = 0  # ... of them in a row, up to now
    validated_step: int = -1  # the step of the last validation (a run stopped by a budget validates once)


class ProgressLine:
    """One line on a terminal's stderr while training: step of the planned steps, epoch, loss,
    target tok/s and the time left (by the step budget, the minute budget, whichever ends first;
    early stopping may end sooner). Shown only on a terminal (or with enabled=True), so logs and
    pipes stay clean. Redrawn at most every half second."""

    def __init__(self, trainer: Trainer, *, enabled: bool | None) -> None:
        self.trainer = trainer
        t, p = trainer.cfg.train, trainer.progress
        per_epoch = max(len(trainer.updates(p.epoch)), 1)
        planned = p.step + (t.max_epochs - p.epoch) * per_epoch - p.batch_in_epoch
        self.total = min(planned, t.max_steps) if t.max_steps else planned
        self.start_step, self.start_seconds = p.step, p.train_seconds
        self.loss, self.tokens = None, 0
        size = shutil.get_terminal_size()
        self.bar = tqdm(
            # the size asked once: tqdm's own query draws nothing on a terminal that reports 0 x 0 (a
            # pseudo-terminal without a size); shutil falls back to $COLUMNS / $LINES, then 80 x 24
            total=self.total, initial=p.step, unit="step", ncols=size.columns, nrows=size.lines, leave=False,
            mininterval=0.5,
            disable=None if enabled is None else not enabled, bar_format="{n_fmt}/{total_fmt} steps  {desc}",
        )  # fmt: skip

    def update(self, loss: float, tokens: int) -> None:
        if self.bar.disable:
            return
        self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss  # smoothed for reading
        self.tokens += tokens
        t, p = self.trainer.cfg.train, self.trainer.progress
        elapsed = max(p.train_seconds - self.start_seconds, 1e-9)  # training time only, as the budget counts
        left = (self.total - p.step) * elapsed / max(p.step - self.start_step, 1)
        if t.max_minutes:
            left = min(left, max(60 * t.max_minutes - p.train_seconds, 0.0))
        self.bar.set_description_str(
            f"epoch {p.epoch + 1}  loss {self.loss:.3f}  {self.tokens / elapsed:,.0f} {self.trainer.task.unit}/s  "
            f"{tqdm.format_interval(left)} left, validation aside",
            refresh=False,
        )
        self.bar.update(1)
        if p.step == self.start_step + 1:
            self.bar.refresh()  # the whole line at once, not after the first redraw interval

    def clear(self) -> None:
        self.bar.clear()

    def close(self) -> None:
        self.bar.close()


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # training loss of each step of this call
    best: float | None = None  # score of the model in best/
    stopped_because: str = ""


class Trainer:
    """Train a model described by a config into a run directory (as one rank of `group` under
    torchrun; alone by default)."""

    def __init__(
        self, cfg: Config, out_dir: str | Path, *, resume: bool = False, progress_bar: bool | None = None,
        task: Task | None = None, group: Group | None = None,
    ):  # fmt: skip
        self.cfg, self.out = cfg, Path(out_dir)
        self.task = task or get_task(cfg.task)
        self.group = group or Group()
        self.valid_metric = cfg.valid_metric
        self.progress_bar = progress_bar
        self.on_validate = None  # optional callback(record) with each validation's metrics.jsonl record
        self._line: ProgressLine | None = None  # the progress line while fit runs
        self._pending_log: list[str] = []
        self._updates: tuple[int, list] | None = None  # (epoch, its updates), built once per epoch
        self._epoch_batches = 0
        self._lock: DirectoryLock | None = None
        t = cfg.train
        self.device = self.group.device(resolve_device(t.device))
        # what train.precision and decode.precision run as here: an explicit precision this device
        # cannot run natively stops here, before anything is read or written
        self.precision = runtime.resolve_precision(
            t.precision, stage="train", device=str(self.device), where="train.precision"
        )
        fixed = self.task.predicts_in
        if fixed is not None and cfg.decode.precision not in ("auto", fixed):
            raise AttnseqError(f"decode.precision = {cfg.decode.precision}: a {cfg.task} model predicts in {fixed} "
                               "only; leave decode.precision at auto")  # fmt: skip
        self.decode_precision = fixed or runtime.resolve_precision(
            cfg.decode.precision, stage="decode", device=str(self.device), where="decode.precision"
        )
        self.saved_step: int | None = None  # the step of the last save of last/ (None: nothing saved)
        self.created_out = False
        main = self.group.main
        if main:
            self._take_run_dir(resume)
        try:
            self._build(resume)
        except BaseException:
            self.close()
            if self.created_out:  # nothing was written into it yet
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    def _take_run_dir(self, resume: bool) -> None:
        """Check OUT, create it and lock it (so no second training writes into it), and clear what
        an interrupted save left there."""
        last = self.out / "last"
        if self.out.exists() and not self.out.is_dir():
            raise AttnseqError(f"{self.out}: is a file, not a directory; choose another --out")
        if resume:
            recover_interrupted_swap(last)
            if not (last / "trainer_state.pt").is_file():
                raise AttnseqError(
                    f"{self.out}: nothing to resume (no last/trainer_state.pt), as a run stopped before its first "
                    "save has none; drop --resume to start it again"
                )
        else:
            self._refuse_a_held_run()
        self.created_out = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)  # a bad --out shows now, not after training
        except OSError as exc:
            raise AttnseqError(f"{self.out}: cannot create the run directory ({exc.strerror or exc})") from None
        self._lock = DirectoryLock(self.out)  # a training that started into OUT since the checks holds it
        remove_stale_temporaries(self.out)
        if not resume:  # the log of a run stopped before its first save completed, which this one replaces
            (self.out / "metrics.jsonl").unlink(missing_ok=True)

    def _refuse_a_held_run(self) -> None:
        if any((self.out / name).exists() for name in ("last", "best", "last.old", "best.old")):
            raise AttnseqError(
                f"{self.out}: already holds a training run; pass --resume to continue it or choose another --out"
            )

    def _build(self, resume: bool) -> None:
        cfg, t, group, last = self.cfg, self.cfg.train, self.group, self.out / "last"
        state = None
        if resume and group.main:
            saved_cfg = load_config_json(last / "config.json")
            if saved_cfg.task != cfg.task or saved_cfg.model != cfg.model or saved_cfg.data != cfg.data:
                raise AttnseqError(
                    f"{self.out}: the config's data / model sections differ from the run being resumed; "
                    "give the same config and --set overrides (only train.* and decode.* may change on --resume)"
                )
            if saved_cfg.valid_metric != self.valid_metric:
                raise AttnseqError(
                    f"{self.out}: the run selects models by train.valid_metric = {saved_cfg.valid_metric}; "
                    "it cannot change on --resume (start a new run to use another)"
                )
            verify_model_dir(last, fix="the run cannot resume from it; start a new one")
            state = load_trainer_state(last)
            world = state["progress"].get("world", 1)
            if world != group.world:
                raise AttnseqError(
                    f"{self.out}: this run trained on {world} process(es); resume it with as many "
                    f"(torchrun --nproc-per-node ...), not {group.world}"
                )
        if group.main:
            self.data: TaskData = self.task.data(cfg, saved=last if resume else None)
        files = group.broadcast(self.data.assets.files() if group.main else None)
        if not group.main:  # the other ranks take the vocabularies / tokenizers rank 0 made
            with tempfile.TemporaryDirectory(prefix="attnseq-rank-") as tmp:
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
                self.data = self.task.data(cfg, saved=Path(tmp))
        if not resume:
            torch.manual_seed(t.seed)
        self.model = build_checked(
            self.task, cfg, self.data.assets, device=self.device, training=True, where="training"
        )
        if resume and group.main:
            load_weights(self.model, last)
        self.model.to(self.device).train()
        # the module that trains: under torchrun a DistributedDataParallel wrapper (which starts every
        # rank from rank 0's weights), else the model itself
        self.train_model: nn.Module = self.model
        if group.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, forward_sync_buffers=False)
        if t.weight_decay:
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True
            )
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, fused=True)
        mode = "max" if self.task.higher_is_better(self.valid_metric) else "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=mode, factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr
        )
        # train.ema_decay: validation, best/ and the snapshot use an exponential moving average of the weights
        self.ema = None
        if t.ema_decay:
            self.ema = AveragedModel(self.model, multi_avg_fn=bias_corrected_ema(t.ema_decay)).eval()
        self.eval_model: nn.Module = self.ema.module if self.ema is not None else self.model
        self.progress = Progress(world=group.world)
        if resume:
            self._restore(group.broadcast(state))
            self.saved_step = self.progress.step
            if group.main:
                self._cut_log(self.progress.log_bytes)
        else:
            # the same stream whether or not the model was built; each rank its own dropout draws
            torch.manual_seed(t.seed + group.rank)
        if not self.updates(self.progress.epoch):
            per = group.world * t.accumulate
            raise AttnseqError(
                f"train.batch_size = {t.batch_size}: the training data make fewer than {per} batches, the "
                f"{group.world} process(es) x train.accumulate = {t.accumulate} one update needs; lower them"
            )

    def close(self) -> None:
        """Release the run directory and the DistributedDataParallel wrapper (fit does when it ends;
        a trainer fits once). The wrapper sits in reference cycles, so letting go of it here lets
        `Group.close` collect it even where an error's traceback still holds the trainer."""
        if hasattr(self, "train_model"):  # a build that failed may not have made it
            self.train_model = self.model
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def updates(self, epoch: int) -> list[list[list[int]]]:
        """The updates of an epoch: for each, this rank's batches (lists of example indices).

        Every rank cuts the same seeded length-bucketed batches; update k is batches
        [k P, (k + 1) P) with P = processes x train.accumulate, and rank r takes its
        train.accumulate of them. A remainder of fewer than P batches is left out of the epoch
        (it changes each epoch with the shuffle), so every rank runs the same number of updates."""
        if self._updates is None or self._updates[0] != epoch:
            t, g = self.cfg.train, self.group
            batches = self.data.train.batch_indices(t.batch_size, seed=t.seed + epoch)
            a, per = t.accumulate, g.world * t.accumulate
            ups = [batches[k * per + g.rank * a : k * per + (g.rank + 1) * a] for k in range(len(batches) // per)]
            self._updates = (epoch, ups)
        return self._updates[1]

    # ------------------------------------------------------------------------------ state
    def _state(self) -> dict:
        """What --resume needs beside the weights (under torchrun: every rank's RNG state too;
        every rank must call it)."""
        rngs = self.group.gather(self._rng_state())
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            **rngs[0],
        }
        if self.group.active:
            state["rank_rng"] = rngs
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def _rng_state(self) -> dict:
        rng = {"torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _restore(self, state: dict) -> None:
        try:
            self._restore_state(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise AttnseqError(
                f"{self.out / 'last' / 'trainer_state.pt'}: does not fit this model and trainer "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                "the run cannot resume, start a new one"
            ) from None

    def _restore_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        t = self.cfg.train  # the LR continues where it was; the schedule's settings follow the config
        self.scheduler.factor, self.scheduler.patience = t.lr_factor, t.lr_patience
        self.scheduler.min_lrs = [t.min_lr] * len(self.optimizer.param_groups)
        rng = state["rank_rng"][self.group.rank] if self.group.active else state
        torch.set_rng_state(rng["torch_rng"])
        if "cuda_rng" in rng and self.device.type == "cuda":
            cuda_rng = rng["cuda_rng"]  # one generator's state (older checkpoints: a list, one per GPU)
            torch.cuda.set_rng_state(cuda_rng[0] if isinstance(cuda_rng, list) else cuda_rng, self.device)
        self.progress = Progress(**state["progress"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def _save(self, name: str, *, with_state: bool, metrics: dict | None = None) -> None:
        """best/ gets the weights validation saw (the average with train.ema_decay); last/ the
        trained weights, which --resume continues from, with the average in trainer_state.pt.
        Saving last/ flushes the log first and records its length in the state. Under torchrun
        every rank calls it for last/ (the state gathers their RNG states); rank 0 writes."""
        if with_state:
            self._flush_log()
            self.progress.log_bytes = self._log_size()
            state = self._state()
        if self.group.main:
            try:
                save_model_dir(
                    self.out / name,
                    model=self.model if with_state else self.eval_model,
                    config=self.cfg,
                    assets=self.data.assets,
                    trainer_state=state if with_state else None,
                    resolved=self.resolved(),
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
        if with_state:
            self.saved_step = self.progress.step

    def resolved(self) -> dict[str, str]:
        """What the config's `auto` settings run as on this device (config.json, metrics.jsonl)."""
        return {"train.precision": self.precision, "decode.precision": self.decode_precision,
                "device": runtime.capabilities(str(self.device)).summary()}  # fmt: skip

    def discard_if_unsaved(self) -> bool:
        """After an interruption: remove the run directory this trainer created if nothing was saved
        into it yet (it holds no model and no log). Returns whether it did."""
        if self.saved_step is not None or not self.created_out or (self.out / "last").exists():
            return False
        shutil.rmtree(self.out, ignore_errors=True)
        return True

    def _log(self, record: dict) -> None:
        """Queue a metrics.jsonl record (rank 0 keeps the log); records reach the file just before
        the checkpoint they belong to, whose state records the log's length then."""
        if self.group.main:
            self._pending_log.append(json.dumps(record) + "\n")

    def _flush_log(self) -> None:
        if self._pending_log and self.out.is_dir():
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.writelines(self._pending_log)
                f.flush()
                os.fsync(f.fileno())
            self._pending_log.clear()

    def _log_size(self) -> int:
        try:
            return (self.out / "metrics.jsonl").stat().st_size
        except OSError:
            return 0

    def _cut_log(self, size: int) -> None:
        """On --resume: drop what the log holds beyond the saved state (records of steps the
        resumed run trains again, or a line cut short by a kill), so it reads as one run's."""
        path = self.out / "metrics.jsonl"
        if size and self._log_size() > size:
            os.truncate(path, size)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batches: list, units: int) -> float:
        """One update on this rank's `batches` of it, whose units (LossOutput.units) over all
        ranks are `units`: the gradient of the summed loss / units, as one process would take it
        from all the update's batches. Returns that loss (nan where it or the gradient was not
        finite: the update is then skipped and counted)."""
        t, world = self.cfg.train, self.group.world
        self.optimizer.zero_grad(set_to_none=True)
        # DistributedDataParallel averages gradients over the ranks, so each rank divides by
        # units / world; the last batch's backward runs the all-reduce
        scale = units / world if world > 1 else units
        total = 0.0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or world == 1 else self.train_model.no_sync()
            with sync:
                with autocast(self.device, self.precision):
                    out = self.train_model(batch.to(self.device))
                loss = out.loss_sum / scale
                loss.backward()
            total += loss.item()
        total = self.group.sum([total], self.device)[0] / world if world > 1 else total
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), t.clip) if t.clip > 0 else None
        if not math.isfinite(total) or (norm is not None and not torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.nonfinite += 1
            self.progress.nonfinite_run += 1
            return math.nan
        self.progress.nonfinite_run = 0
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return total

    @torch.inference_mode()
    def validate(self) -> dict:
        """The loss per unit (and its perplexity) on all of valid, then the task's metrics."""
        model = self.eval_model
        model.eval()
        valid = self.data.valid
        total, units = 0.0, 0
        for index in valid.batch_indices(self.cfg.decode.batch_size):
            with autocast(self.device, self.precision):
                out = model(valid.collate(index).to(self.device))
            total += float(out.loss_sum)
            units += out.units
        loss = total / max(units, 1)
        metrics = {"loss": loss, "ppl": perplexity(loss)}
        metrics.update(self.task.validate(model, self.data, self.cfg, device=str(self.device)))
        self.model.train()
        if self.ema is not None:
            model.eval()
        return metrics

    # ------------------------------------------------------------------------------ loop
    def _budget_spent(self) -> str:
        """Why training must stop now ("" if it may go on); checked before every step."""
        t, p = self.cfg.train, self.progress
        if p.epoch >= t.max_epochs:
            return f"train.max_epochs = {t.max_epochs} done"
        if t.max_steps and p.step >= t.max_steps:
            return f"train.max_steps = {t.max_steps} reached"
        if t.max_minutes and p.train_seconds >= 60 * t.max_minutes:
            return f"train.max_minutes = {t.max_minutes:g} reached"
        return ""

    def _step_plan(self, indices: list) -> tuple[list | None, int, bool, bool]:
        """Before an update: whether a budget stops the run now and whether the snapshot is due;
        under torchrun also the update's batches and their units over all ranks, in one exchange
        (rank 0's clock decides for every rank). Alone, the batches are collated after the
        snapshot (None here), in the order runs have always drawn them."""
        t, p = self.cfg.train, self.progress
        stop = bool(self._budget_spent())
        snapshot = bool(t.snapshot_minutes) and not p.snapshot_taken and p.train_seconds >= 60 * t.snapshot_minutes
        if not self.group.active:
            return None, 0, stop, snapshot
        batches = [self.data.train.collate(index) for index in indices]
        main = self.group.main
        units = sum(b.units for b in batches)
        total, stop_n, snap_n = self.group.sum([units, stop and main, snapshot and main], self.device)
        return batches, int(total), stop_n > 0, snap_n > 0

    def _better(self, score: float, than: float | None) -> bool:
        higher = self.task.higher_is_better(self.valid_metric)
        return than is None or (score > than if higher else score < than)

    def _validate_and_save(self, result: FitResult, *, end_of_epoch: bool) -> None:
        """Validate, keep the best model, save last/ and flush the log.

        Only end-of-epoch validations move the LR schedule and early stopping, so a run stopped by a
        budget in mid-epoch and resumed follows exactly the path of an uninterrupted run.
        """
        t, p = self.cfg.train, self.progress
        if self._line is not None:
            self._line.clear()  # the progress line gives way to what validation prints
        metrics = self.group.broadcast(self.validate() if self.group.main else None)  # rank 0 validates
        p.validated_step = p.step
        score = metrics[self.valid_metric]
        if end_of_epoch:
            improved = self._better(score, p.best)
            p.best = score if improved else p.best
            self.scheduler.step(score)
            p.bad_validations = 0 if improved else p.bad_validations + 1
            if t.patience and p.bad_validations >= t.patience:
                p.early_stopped = True
                result.stopped_because = f"no improvement in {t.patience} validations (train.patience)"
        new_best = self._better(score, p.best_saved)
        scores = {"step": p.step, "valid_metric": self.valid_metric, **metrics}
        if new_best:
            p.best_saved = score
            self._save("best", with_state=False, metrics=scores)
        record = {
            "event": "valid",
            "step": p.step,
            "epoch": p.epoch + p.batch_in_epoch / max(self._epoch_batches, 1),  # with the fraction
            "lr": self.optimizer.param_groups[0]["lr"],
            "best": p.best_saved,
            "improved": new_best,
            "train_minutes": p.train_seconds / 60,
            **metrics,
        }
        self._log(record)
        self._save("last", with_state=True, metrics=scores)
        self._flush_log()
        if self.on_validate is not None:
            self.on_validate(record)

    def _snapshot(self, result: FitResult) -> None:
        """What a run stopped now by train.max_minutes would return, kept as best_at_<N>min/.

        It validates as a budget stop does (mid-epoch validations never move the schedule), so the
        rest of the run is unchanged."""
        self.progress.snapshot_taken = True
        self._validate_and_save(result, end_of_epoch=False)
        if not self.group.main:
            return
        target = self.out / f"best_at_{self.cfg.train.snapshot_minutes:g}min"
        tmp = Path(tempfile.mkdtemp(dir=self.out, prefix=f".{target.name}.", suffix=".tmp"))
        shutil.copytree(self.out / "best", tmp, dirs_exist_ok=True)
        replace_dir(tmp, target)

    def fit(self) -> FitResult:
        """Train until a budget (epochs, steps, minutes) is spent or early stopping ends the run,
        with train.num_threads torch threads (the process's setting is restored afterwards)."""
        with runtime.torch_threads(self.cfg.train.num_threads):
            self._line = ProgressLine(self, enabled=self.progress_bar if self.group.main else False)
            try:
                return self._fit()
            finally:
                self._line.close()
                self._line = None
                self.close()

    def _fit(self) -> FitResult:
        cfg, t, p = self.cfg, self.cfg.train, self.progress
        result = FitResult(best=p.best_saved)
        if p.early_stopped:
            result.stopped_because = "this run early-stopped (train.patience); start a new run to train more"
            return result
        self._log(
            {
                "event": "start",
                "step": p.step,
                "params": count_parameters(self.model),
                "train_pairs": len(self.data.train),
                "skipped_pairs": self.data.train.skipped,
                "valid_pairs": len(self.data.valid),
                "skipped_valid_pairs": self.data.valid.skipped,
                "resolved": self.resolved(),
                "config": cfg.to_dict(),
            }
        )
        self.model.train()
        window_start = time.perf_counter()
        while not result.stopped_because:
            updates = self.updates(p.epoch)
            self._epoch_batches = len(updates)
            clock = time.perf_counter()
            while p.batch_in_epoch < len(updates):
                now = time.perf_counter()
                p.train_seconds += now - clock
                clock = now
                batches, units, stop, snapshot = self._step_plan(updates[p.batch_in_epoch])
                if stop:
                    result.stopped_because = self._budget_spent() or "rank 0 stopped on its budget"
                    break
                if snapshot:
                    self._snapshot(result)
                    clock = time.perf_counter()
                if batches is None:
                    batches = [self.data.train.collate(index) for index in updates[p.batch_in_epoch]]
                    units = sum(b.units for b in batches)
                loss = self.train_step(batches, units)
                result.losses.append(loss)
                p.batch_in_epoch += 1
                p.step += 1
                p.tgt_tokens += units
                if math.isfinite(loss):
                    p.window_loss += loss * units
                    p.window_units += units
                elif p.nonfinite_run >= t.max_nonfinite:
                    raise AttnseqError(
                        f"step {p.step}: the loss or its gradient was inf / nan in {p.nonfinite_run} updates in "
                        f"a row (train.max_nonfinite = {t.max_nonfinite}; {p.nonfinite} skipped in all); "
                        f"lower train.lr, or use train.precision fp32; "
                        + (f"{self.out / 'last'} holds step {self.saved_step}" if self.saved_step is not None
                           else "nothing was saved")
                    )  # fmt: skip
                if self._line is not None:
                    self._line.update(loss, units)
                if t.log_every and p.step % t.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    self._log(
                        {
                            "event": "train",
                            "step": p.step,
                            "epoch": p.epoch + 1,
                            "loss": p.window_loss / max(p.window_units, 1),
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "tok_s": p.window_units / max(elapsed, 1e-9),
                            "skipped": p.nonfinite,
                        }
                    )
                    p.window_loss, p.window_units, window_start = 0.0, 0, time.perf_counter()
                if t.save_every and p.step % t.save_every == 0:
                    self._save("last", with_state=True)
            p.train_seconds += time.perf_counter() - clock
            if p.batch_in_epoch >= len(updates):
                p.epoch += 1
                p.batch_in_epoch = 0
                self._validate_and_save(result, end_of_epoch=True)
                result.stopped_because = result.stopped_because or self._budget_spent()
            elif p.validated_step != p.step:  # a budget stopped the run in mid-epoch
                self._validate_and_save(result, end_of_epoch=False)
            window_start = time.perf_counter()
        result.best = p.best_saved
        tok_s = p.tgt_tokens / max(p.train_seconds, 1e-9)
        self._log({"event": "end", "step": p.step, "reason": result.stopped_because, "best": p.best_saved,
                   "train_minutes": p.train_seconds / 60, "tok_s": tok_s})  # fmt: skip
        self._flush_log()
        return result
