"""The line a terminal shows while training runs (`Trainer.fit`)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from attnseq.trainer import Trainer


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
