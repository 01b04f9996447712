"""Ablation: the variants a task names (`Task.ablation_variants`: e.g. every decoder wiring x score function
for text -> text tasks, every pooling for the classifier) trained from one config under the same
budget, then scored alike on the same held-out set.

    attnseq ablate CONFIG [--out DIR] [--set train.max_minutes=5] [--only luong-general,init]

Writes DIR/<variant>/ (a normal run directory each), DIR/ablation.json, DIR/ablation.md (a
Markdown table) and DIR/ablation.png (a chart). A variant whose run already ended is not trained
again, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from attnseq.config import load_config
from attnseq.contracts import Ablation, Column
from attnseq.errors import AttnseqError
from attnseq.fileio import atomic_write_text, read_text_file
from attnseq.tasks import get_task


@dataclass
class Row:
    variant: str
    params: int = 0
    scores: dict = field(default_factory=dict)  # the task's scores on the held-out set (Ablation.columns' keys)
    ppl: float = math.nan  # validation perplexity of the selected model, where the task reports one
    train_tok_s: float = 0.0  # units (target tokens, texts, ...) per second of training
    decode_sent_s: float = math.nan  # held-out inputs per second, with the config's search, where measured
    train_minutes: float = 0.0
    skipped: str = ""  # why the variant could not run with this config

    def metric(self, key: str) -> float:
        return self.scores.get(key, math.nan)


def _read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in read_text_file(path).splitlines() if line.strip()]


def run_variant(config: str | Path, overrides: list[str], out: Path, ablation: Ablation, name: str) -> Row:
    """Train one variant (unless its run already ended) and score its best model."""
    from attnseq.predict import load
    from attnseq.trainer import Trainer, count_parameters

    cfg = load_config(config, overrides)
    records = _read_metrics(out)
    if not any(r.get("event") == "end" for r in records):
        trainer = Trainer(cfg, out, resume=(out / "last" / "trainer_state.pt").is_file(), progress_bar=False)
        trainer.fit()
        records = _read_metrics(out)
    predictor = load(out / "best")
    scores = ablation.score(predictor)
    best = [r for r in records if r.get("event") == "valid" and r.get("improved")]
    end = [r for r in records if r.get("event") == "end"][-1]
    return Row(variant=name, params=count_parameters(predictor.model), scores=scores,
               ppl=best[-1].get("ppl", math.nan) if best else math.nan, train_tok_s=end["tok_s"],
               decode_sent_s=scores.get("sent_s", math.nan), train_minutes=end["train_minutes"])  # fmt: skip


def _cell(value: float, fmt: str) -> str:
    return "–" if math.isnan(value) else format(value, fmt)


def markdown_table(rows: list[Row], columns: list[Column], *, caption: str, unit: str = "tok") -> str:
    labels = [c.label for c in columns]
    lines = [caption, "",
             f"| variant | params | {' | '.join(labels)} | valid ppl | train {unit}/s | decode inputs/s | train min |",
             "|---|---:|" + "---:|" * len(labels) + "---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.variant} | skipped: {r.skipped} |" + " |" * (len(labels) + 4))
            continue
        metrics = " | ".join("–" if math.isnan(r.metric(c.key)) else c.show(r.metric(c.key)) for c in columns)
        lines.append(f"| {r.variant} | {r.params:,} | {metrics} | {_cell(r.ppl, '.2f')} | {r.train_tok_s:,.0f} "
                     f"| {_cell(r.decode_sent_s, ',.0f')} | {r.train_minutes:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def ablate(config: str | Path, out: str | Path, overrides: list[str], *, only: list[str] | None = None,
           log=print) -> list[Row]:  # fmt: skip
    """Run every variant of the config's task (or those named in `only`); write the table, the chart
    and the JSON."""
    from attnseq.plotting import plot_ablation

    base = load_config(config, overrides)
    task = get_task(base.task)
    unit, variants = task.unit, task.ablation_variants(base)
    if not variants:
        raise AttnseqError(f"{config}: task {base.task} has no ablation")
    names = [name for name, _ in variants]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise AttnseqError(f"--only: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    ablation = task.ablation(base, str(config))
    out = Path(out)
    rows = []
    for name, sets in variants:
        if only and name not in only:
            continue
        sets = [*overrides, *sets]
        try:
            load_config(config, sets)
        except AttnseqError as exc:  # e.g. dot attention with different encoder / decoder sizes
            rows.append(Row(variant=name, skipped=str(exc).split(": ", 1)[-1][:120]))
            log(f"{name}: skipped ({rows[-1].skipped})")
            continue
        log(f"{name}: training in {out / name}")
        row = run_variant(config, sets, out / name, ablation, name)
        rows.append(row)
        shown = "  ".join(f"{c.label} {c.show(row.metric(c.key))}" for c in ablation.columns)
        log(f"{name}: {shown}  ppl {row.ppl:.2f}  {row.train_tok_s:,.0f} {unit}/s  {row.decode_sent_s:,.0f} inputs/s")
    if ablation.baseline is not None:  # the task's baseline (no training) as the last row, scored on the same set
        rows.append(Row(variant=ablation.baseline_row, scores=ablation.baseline))
        log(f"baseline: {ablation.baseline['name']}")
    dec = base.decode
    search = "greedy" if dec.beam_size == 1 else f"beam {dec.beam_size}, {dec.length_penalty} length penalty"
    budget = ", ".join(f"{k} {v:g}" for k, v in (("train.max_minutes", base.train.max_minutes),
                                                  ("train.max_steps", base.train.max_steps)) if v)  # fmt: skip
    caption = (
        f"{' and '.join(c.label for c in ablation.columns)} on {ablation.held_out} (search where the task "
        f"has one: {search}); perplexity on validation; training and decoding speed measured during the runs."
    )
    table = markdown_table(rows, ablation.columns, caption=caption, unit=unit)
    if budget:
        table = f"Budget per variant: {budget}.\n\n" + table
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", table)
    records = [{k: v for k, v in vars(r).items() if k != "scores"} | r.scores for r in rows]  # the scores flat
    atomic_write_text(out / "ablation.json", json.dumps(records, indent=2, default=str) + "\n")
    ran = [r for r in rows if not r.skipped]
    panels = [*((c.label, [c.scale * r.metric(c.key) for r in ran]) for c in ablation.columns),
              (f"training {unit}/s", [r.train_tok_s for r in ran]),
              ("decoding inputs/s", [r.decode_sent_s for r in ran])]  # fmt: skip
    plot_ablation([r.variant for r in ran], panels, out / "ablation.png", title=f"{Path(config).name}, {budget}")
    return rows
