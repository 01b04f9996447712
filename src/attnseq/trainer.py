"""Training, for any task: Adam on `forward(batch)`'s loss per unit, clipping, LR on plateau,
validation every epoch, early stopping, an optional weight average, best and last models, exact
resume, a JSONL metrics log, budgets in epochs, steps and minutes.

The trainer knows no vocabularies, metrics or decoding: the `Task` reads the data, builds the model,
and names and computes the validation metrics (`attnseq.contracts`).

Under `torchrun` the processes of one `attnseq.distributed.Group` train one model together
(DistributedDataParallel): each takes its share of every update's batches, rank 0 validates, saves
and logs.

What the run directory holds, and its reading and writing: `attnseq.run_dir`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from attnseq import runtime
from attnseq.contracts import Task, TaskData
from attnseq.distributed import Group, rank_updates, shared_task_data
from attnseq.errors import AttnseqError
from attnseq.progress_line import ProgressLine
from attnseq.run_dir import RunDir
from attnseq.runtime import resolve_device
from attnseq.schema import Config
from attnseq.tasks import get_task
from attnseq.train_state import (  # noqa: F401 - names of this module too
    Progress,
    TrainState,
    better,
    bias_corrected_ema,
    resolve_precisions,
    training_model,
    valid_loss,
)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
        self.valid_metric = cfg.train.valid_metric or self.task.default_metric
        self.progress_bar = progress_bar
        self.on_validate = None  # optional callback(record) with each validation's metrics.jsonl record
        self._line: ProgressLine | None = None  # the progress line while fit runs
        self.run = RunDir(self.out)  # the run directory: its lock, metrics log and saved models
        self._updates: tuple[int, list] | None = None  # (epoch, its updates), built once per epoch
        self._epoch_batches = 0
        self.step_logs: dict[str, float] = {}  # the parts of the last update's loss (LossOutput.logs)
        t = cfg.train
        self.device = self.group.device(resolve_device(t.device))
        # an explicit precision this device cannot run natively stops here, before anything is read or written
        self.precision, self.decode_precision = resolve_precisions(cfg, self.task, self.device)
        if self.group.main:
            self.run.take(resume)
        try:
            if self.group.main:
                self.run.use_tensorboard(t.tensorboard)  # event files beside metrics.jsonl, where installed
            self._build(resume)
        except BaseException:
            self.close()
            if self.run.created:  # nothing was written into it yet
                shutil.rmtree(self.out, ignore_errors=True)
            raise

    # the optimizer, the LR schedule, the weight average and the progress live in `self.state`
    optimizer = property(lambda self: self.state.optimizer)
    ema = property(lambda self: self.state.ema)
    progress = property(lambda self: self.state.progress)

    def _build(self, resume: bool) -> None:
        cfg, t, group, last = self.cfg, self.cfg.train, self.group, self.run.last
        state = None
        if resume and group.main:
            state = self.run.resume_state(cfg, self.task, self.valid_metric, world=group.world)
        self.data: TaskData = shared_task_data(group, self.task, cfg, saved=last if resume else None)
        if not resume:
            torch.manual_seed(t.seed)
        weights = last if resume and group.main else None
        self.model, self.train_model = training_model(self.task, cfg, self.data.assets, device=self.device,
                                                      group=group, weights=weights)  # fmt: skip
        self.state = TrainState(self.model, t, higher=self.task.higher_is_better(self.valid_metric),
                                world=group.world)  # fmt: skip
        # train.ema_decay: validation, best/ and the snapshot use an exponential moving average of the weights
        self.eval_model: nn.Module = self.ema.module if self.ema is not None else self.model
        if resume:
            self.state.restore(group.broadcast(state), t, rank=group.rank if group.active else None,
                               device=self.device, where=self.out / "last" / "trainer_state.pt")  # fmt: skip
            self.run.saved_step = self.progress.step
            if group.main:
                self.run.cut_log(self.progress.log_bytes)
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
        self.run.close()

    def updates(self, epoch: int) -> list[list[list[int]]]:
        """The updates of an epoch: for each, this rank's batches (`distributed.rank_updates`)."""
        if self._updates is None or self._updates[0] != epoch:
            t = self.cfg.train
            batches = self.data.train.batch_indices(t.batch_size, seed=t.seed + epoch)
            self._updates = (epoch, rank_updates(batches, self.group, accumulate=t.accumulate))
        return self._updates[1]

    def _save(self, name: str, *, with_state: bool, metrics: dict | None = None) -> None:
        """best/ gets the weights validation saw (the average with train.ema_decay); last/ the
        trained weights, which --resume continues from, with the average in trainer_state.pt.
        Saving last/ flushes the log first and records its length in the state. Under torchrun
        every rank calls it for last/ (the state gathers their RNG states); rank 0 writes."""
        if with_state:
            self.run.flush_log()
            self.progress.log_bytes = self.run.log_size()
            state = self.state.state_dict(self.group, self.device)
        if self.group.main:
            self.run.save(name, model=self.model if with_state else self.eval_model, config=self.cfg,
                          assets=self.data.assets, trainer_state=state if with_state else None,
                          resolved=self.resolved(), metrics=metrics)  # fmt: skip
        if with_state:
            self.run.saved_step = self.progress.step

    def resolved(self) -> dict[str, str]:
        """What the config's `auto` settings run as on this device (config.json, metrics.jsonl)."""
        return {"train.precision": self.precision, "decode.precision": self.decode_precision,
                "device": runtime.capabilities(str(self.device)).summary()}  # fmt: skip

    def _log(self, record: dict) -> None:
        """Queue a metrics.jsonl record (rank 0 keeps the log); records reach the file just before
        the checkpoint they belong to, whose state records the log's length then."""
        if self.group.main:
            self.run.log(record)

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batches: list, units: int) -> float:
        """One update on this rank's `batches` of it, whose units over all ranks are `units`
        (`TrainState.step`); the parts of the loss it logs are kept in `step_logs`."""
        loss, self.step_logs = self.state.step(self.train_model, self.model, batches, units, group=self.group,
                                               device=self.device, precision=self.precision,
                                               clip=self.cfg.train.clip)  # fmt: skip
        return loss

    @torch.inference_mode()
    def validate(self) -> dict:
        """The loss per unit (and its perplexity) on all of valid, then the task's metrics."""
        model = self.eval_model.eval()
        metrics = valid_loss(model, self.data.valid, batch_size=self.cfg.decode.batch_size, device=self.device,
                             precision=self.precision)  # fmt: skip
        cfg = self.cfg  # validation decodes without decode.lm: the language model is for the finished model
        if cfg.decode.lm:
            cfg = dataclasses.replace(cfg, decode=dataclasses.replace(cfg.decode, lm=""))
        metrics.update(self.task.validate(model, self.data, cfg, device=str(self.device)))
        self.model.train()
        if self.ema is not None:
            model.eval()
        return metrics

    def _step_plan(self, indices: list) -> tuple[list | None, int, bool, bool]:
        """Before an update: whether a budget stops the run now and whether the snapshot is due;
        under torchrun also the update's batches and their units (`Group.plan_update`)."""
        t, p = self.cfg.train, self.progress
        stop = bool(self.state.budget_spent(self.cfg.train))
        snapshot = bool(t.snapshot_minutes) and not p.snapshot_taken and p.train_seconds >= 60 * t.snapshot_minutes
        return self.group.plan_update(self.data.train, indices, stop=stop, snapshot=snapshot, device=self.device)

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
        higher = self.task.higher_is_better(self.valid_metric)
        if end_of_epoch:
            result.stopped_because = self.state.end_of_epoch(score, higher=higher, patience=t.patience) or (
                result.stopped_because
            )
        new_best = better(score, p.best_saved, higher=higher)
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
        self.run.flush_log()
        if self.on_validate is not None:
            self.on_validate(record)

    def _snapshot(self, result: FitResult) -> None:
        """What a run stopped now by train.max_minutes would return, kept as best_at_<N>min/.

        It validates as a budget stop does (mid-epoch validations never move the schedule), so the
        rest of the run is unchanged."""
        self.progress.snapshot_taken = True
        self._validate_and_save(result, end_of_epoch=False)
        if self.group.main:
            self.run.snapshot(self.cfg.train.snapshot_minutes)

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
        d = self.data
        self._log({"event": "start", "step": p.step, "params": count_parameters(self.model),
                   "train_pairs": len(d.train), "skipped_pairs": d.train.skipped, "valid_pairs": len(d.valid),
                   "skipped_valid_pairs": d.valid.skipped, "resolved": self.resolved(),
                   "config": cfg.to_dict()})  # fmt: skip
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
                    result.stopped_because = self.state.budget_spent(self.cfg.train) or "rank 0 stopped on its budget"
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
                    for key, value in self.step_logs.items():  # LossOutput.logs, summed over the batches
                        p.window_logs[key] = p.window_logs.get(key, 0.0) + value
                elif p.nonfinite_run >= t.max_nonfinite:
                    saved = self.run.saved_step
                    raise AttnseqError(
                        f"step {p.step}: the loss or its gradient was inf / nan in {p.nonfinite_run} updates in "
                        f"a row (train.max_nonfinite = {t.max_nonfinite}; {p.nonfinite} skipped in all); "
                        "lower train.lr, or use train.precision fp32; "
                        + (f"{self.out / 'last'} holds step {saved}" if saved is not None else "nothing was saved")
                    )
                if self._line is not None:
                    self._line.update(loss, units)
                if t.log_every and p.step % t.log_every == 0:
                    elapsed, n = time.perf_counter() - window_start, max(p.window_units, 1)
                    self._log({"event": "train", "step": p.step, "epoch": p.epoch + 1, "loss": p.window_loss / n,
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "tok_s": p.window_units / max(elapsed, 1e-9), "skipped": p.nonfinite,
                               **{f"loss_{k}": v / n for k, v in p.window_logs.items()}})  # fmt: skip
                    p.window_loss, p.window_units, window_start = 0.0, 0, time.perf_counter()
                    p.window_logs = {}
                if t.save_every and p.step % t.save_every == 0:
                    self._save("last", with_state=True)
            p.train_seconds += time.perf_counter() - clock
            if p.batch_in_epoch >= len(updates):
                p.epoch += 1
                p.batch_in_epoch = 0
                self._validate_and_save(result, end_of_epoch=True)
                result.stopped_because = result.stopped_because or self.state.budget_spent(self.cfg.train)
            elif p.validated_step != p.step:  # a budget stopped the run in mid-epoch
                self._validate_and_save(result, end_of_epoch=False)
            window_start = time.perf_counter()
        result.best = p.best_saved
        tok_s = p.tgt_tokens / max(p.train_seconds, 1e-9)
        self._log({"event": "end", "step": p.step, "reason": result.stopped_because, "best": p.best_saved,
                   "train_minutes": p.train_seconds / 60, "tok_s": tok_s})  # fmt: skip
        self.run.flush_log()
        return result
