"""What training carries from step to step besides the weights: the optimizer (Adam, or AdamW with
train.weight_decay), the LR schedule (reduce on plateau), the weight average (train.ema_decay) and
the `Progress`; and the trainer_state.pt record of them that --resume restores exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from attnseq import runtime
from attnseq.checkpoint import build_checked, load_weights
from attnseq.distributed import Group
from attnseq.errors import AttnseqError
from attnseq.metrics import perplexity
from attnseq.runtime import autocast
from attnseq.schema import TrainConfig


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
    window_logs: dict = dataclasses.field(default_factory=dict)  # ... and the parts of the loss (LossOutput.logs)
    log_bytes: int = 0  # the length of metrics.jsonl when this state was saved (--resume cuts it back to it)
    nonfinite: int = 0  # updates skipped because the loss or gradient was inf / nan
    nonfinite_run: int = 0  # ... of them in a row, up to now
    validated_step: int = -1  # the step of the last validation (a run stopped by a budget validates once)


class TrainState:
    """The optimizer, schedule, weight average and progress of a model's training."""

    def __init__(self, model: nn.Module, t: TrainConfig, *, higher: bool, world: int) -> None:
        """Args:
        model: the model trained (its parameters are the optimizer's).
        t: the train section.
        higher: whether a higher validation score is better (the schedule's mode).
        world: the processes training together.
        """
        if t.weight_decay:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True)
        else:
            self.optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max" if higher else "min", factor=t.lr_factor, patience=t.lr_patience,
            min_lr=t.min_lr,
        )  # fmt: skip
        self.ema = None
        if t.ema_decay:
            self.ema = AveragedModel(model, multi_avg_fn=bias_corrected_ema(t.ema_decay)).eval()
        self.progress = Progress(world=world)

    def step(self, train_model: nn.Module, model: nn.Module, batches: list, units: int, *, group: Group,
             device: torch.device, precision: str, clip: float) -> tuple[float, dict[str, float]]:  # fmt: skip
        """One update on this rank's `batches` of it, whose units (LossOutput.units) over all ranks
        are `units`: the gradient of the summed loss / units, as one process would take it from all
        the update's batches, clipped to norm `clip` (0: not), then Adam and the weight average.
        Returns that loss (nan where it or the gradient was not finite: the update is then skipped
        and counted) and the parts of the loss (`LossOutput.logs`) summed over all ranks' batches."""
        world = group.world
        self.optimizer.zero_grad(set_to_none=True)
        # DistributedDataParallel averages gradients over the ranks, so each rank divides by
        # units / world; the last batch's backward runs the all-reduce
        scale = units / world if world > 1 else units
        total, logs = 0.0, {}
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or world == 1 else train_model.no_sync()
            with sync:
                with autocast(device, precision):
                    out = train_model(batch.to(device))
                loss = out.loss_sum / scale
                loss.backward()
            total += loss.item()
            for key, value in out.logs.items():
                logs[key] = logs.get(key, 0.0) + value
        if world > 1:
            summed = group.sum([total, *logs.values()], device)
            total, logs = summed[0] / world, dict(zip(logs, summed[1:]))
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip) if clip > 0 else None
        if not math.isfinite(total) or (norm is not None and not torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.nonfinite += 1
            self.progress.nonfinite_run += 1
            return math.nan, logs
        self.progress.nonfinite_run = 0
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(model)
        return total, logs

    def budget_spent(self, t: TrainConfig) -> str:
        """Why training must stop now ("" if it may go on); checked before every step."""
        p = self.progress
        if p.epoch >= t.max_epochs:
            return f"train.max_epochs = {t.max_epochs} done"
        if t.max_steps and p.step >= t.max_steps:
            return f"train.max_steps = {t.max_steps} reached"
        if t.max_minutes and p.train_seconds >= 60 * t.max_minutes:
            return f"train.max_minutes = {t.max_minutes:g} reached"
        return ""

    def end_of_epoch(self, score: float, *, higher: bool, patience: int) -> str:
        """An end-of-epoch validation `score` moves the LR schedule and early stopping (mid-epoch ones
        never do, so a run stopped in mid-epoch and resumed follows an uninterrupted run's path).
        Returns why training stops early ("" if it goes on)."""
        p = self.progress
        improved = better(score, p.best, higher=higher)
        p.best = score if improved else p.best
        self.scheduler.step(score)
        p.bad_validations = 0 if improved else p.bad_validations + 1
        if patience and p.bad_validations >= patience:
            p.early_stopped = True
            return f"no improvement in {patience} validations (train.patience)"
        return ""

    def state_dict(self, group: Group, device: torch.device) -> dict:
        """What --resume needs beside the weights (under torchrun: every rank's RNG state too;
        every rank must call it)."""
        rngs = group.gather(rng_state(device))
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            **rngs[0],
        }
        if group.active:
            state["rank_rng"] = rngs
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def restore(self, state: dict, t: TrainConfig, *, rank: int | None, device: torch.device, where: Path) -> None:
        """Continue from a `state_dict` read from `where` (`rank`: this process's place under
        torchrun, else None); the LR continues where it was, the schedule's settings follow the
        config `t`.

        Raises:
            AttnseqError: a state that does not fit this model and trainer.
        """
        try:
            self._restore(state, t, rank=rank, device=device)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise AttnseqError(
                f"{where}: does not fit this model and trainer "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                "the run cannot resume, start a new one"
            ) from None

    def _restore(self, state: dict, t: TrainConfig, *, rank: int | None, device: torch.device) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.factor, self.scheduler.patience = t.lr_factor, t.lr_patience
        self.scheduler.min_lrs = [t.min_lr] * len(self.optimizer.param_groups)
        rng = state["rank_rng"][rank] if rank is not None else state
        torch.set_rng_state(rng["torch_rng"])
        if "cuda_rng" in rng and device.type == "cuda":
            cuda_rng = rng["cuda_rng"]  # one generator's state (older checkpoints: a list, one per GPU)
            torch.cuda.set_rng_state(cuda_rng[0] if isinstance(cuda_rng, list) else cuda_rng, device)
        self.progress = Progress(**state["progress"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])


def better(score: float, than: float | None, *, higher: bool) -> bool:
    """Whether a validation `score` beats `than` (None: nothing to beat)."""
    return than is None or (score > than if higher else score < than)


def resolve_precisions(cfg, task, device: torch.device) -> tuple[str, str]:
    """What train.precision and decode.precision run as on `device` (`runtime.resolve_precision`); a
    task that predicts in one precision only (`Task.predicts_in`) takes that for decoding.

    Raises:
        AttnseqError: a precision this device cannot run natively, or one the task does not predict in.
    """
    train = runtime.resolve_precision(cfg.train.precision, stage="train", device=str(device), where="train.precision")
    fixed = task.predicts_in
    if fixed is not None and cfg.decode.precision not in ("auto", fixed):
        raise AttnseqError(f"decode.precision = {cfg.decode.precision}: a {cfg.task} model predicts in {fixed} "
                           "only; leave decode.precision at auto")  # fmt: skip
    decode = fixed or runtime.resolve_precision(cfg.decode.precision, stage="decode", device=str(device),
                                                where="decode.precision")  # fmt: skip
    return train, decode


def rng_state(device: torch.device) -> dict:
    """This process's random state: torch's, and the GPU's on a CUDA device."""
    rng = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda_rng"] = torch.cuda.get_rng_state(device)
    return rng


def training_model(task, cfg, assets, *, device: torch.device, group: Group, weights: Path | None):
    """The model to train (built through the task, checked to fit, with `weights` loaded where
    given), on `device` in training mode, and the module that trains it: under torchrun a
    DistributedDataParallel wrapper (which starts every rank from rank 0's weights), else the
    model itself."""
    model = build_checked(task, cfg, assets, device=device, training=True, where="training")
    if weights is not None:
        load_weights(model, weights)
    model.to(device).train()
    if not group.active:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


@torch.inference_mode()
def valid_loss(model: nn.Module, valid, *, batch_size: int, device: torch.device, precision: str) -> dict:
    """The loss per unit (`LossOutput.units`) of `model` on all of `valid`, and its perplexity."""
    total, units = 0.0, 0
    for index in valid.batch_indices(batch_size):
        with autocast(device, precision):
            out = model(valid.collate(index).to(device))
        total += float(out.loss_sum)
        units += out.units
    loss = total / max(units, 1)
    return {"loss": loss, "ppl": perplexity(loss)}
