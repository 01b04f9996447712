"""Ablation: every decoder wiring x score function (and the no-attention baselines) trained from
one config under the same budget, then scored on the same held-out set.

    attnseq ablate CONFIG [--out DIR] [--set train.max_minutes=5] [--only luong-general,init]

Writes DIR/<variant>/ (a normal run directory each), DIR/ablation.json, DIR/ablation.md (a
Markdown table) and DIR/ablation.png (a chart). A variant whose run already ended is not trained
again, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from attnseq.config import Config, load_config
from attnseq.data import read_pairs
from attnseq.errors import AttnseqError
from attnseq.fileio import atomic_write_text, read_text_file

ATTENTIONS = ("dot", "scaled_dot", "general", "concat", "location")
VARIANTS: list[tuple[str, str | None]] = [("init", None), ("every-step", None)] + [
    (decoder, attention) for decoder in ("luong", "bahdanau") for attention in ATTENTIONS
]


def variant_name(decoder: str, attention: str | None) -> str:
    return decoder if attention is None else f"{decoder}-{attention}"


@dataclass
class Row:
    variant: str
    params: int = 0
    bleu: float = 0.0
    chrf: float = 0.0
    ppl: float = 0.0  # validation perplexity of the selected model
    train_tok_s: float = 0.0  # target tokens per second of training
    decode_sent_s: float = 0.0  # held-out sentences per second, with the config's search
    train_minutes: float = 0.0
    skipped: str = ""  # why the variant could not run with this config
    extra: dict = field(default_factory=dict)  # the task's other metrics (distinct-2, ROUGE, ...)

    def metric(self, name: str) -> float:
        return getattr(self, name) if name in ("bleu", "chrf") else self.extra.get(name, float("nan"))


# The held-out metrics of each text task's table and chart: (key, label)
METRIC_COLUMNS = {
    "translate": [("bleu", "BLEU"), ("chrf", "chrF")],
    "chat": [("bleu", "BLEU"), ("chrf", "chrF"), ("distinct_2", "distinct-2")],
    "headline": [("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L")],
}


def variant_overrides(cfg: Config, decoder: str, attention: str | None) -> list[str]:
    sets = [f"model.decoder={decoder}"]
    if attention is not None:
        sets.append(f"model.attention={attention}")
    if attention == "location":  # one score per source position: cover the longest source
        sets.append(f"model.max_src_len={max(cfg.model.max_src_len, cfg.data.max_src_len + 1)}")
    return sets


def _read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in read_text_file(path).splitlines() if line.strip()]


def score_held_out(predictor, task: str, held_out) -> dict:
    """The predictor's scores on `held_out` pairs with its config's search: translation's BLEU and
    chrF, or a chat / headline task's own metrics; with the decoding speed `sent_s`."""
    if task not in ("chat", "headline"):
        return predictor.score([s for s, _ in held_out], [r for _, r in held_out])
    from attnseq.tasks import get_task

    return get_task(task).decode_and_score(predictor, held_out)[1]


def run_variant(config: str | Path, overrides: list[str], out: Path, held_out) -> Row:
    """Train one variant (unless its run already ended) and score it on `held_out` pairs."""
    import attnseq
    from attnseq.train import Trainer, count_parameters

    cfg = load_config(config, overrides)
    name = variant_name(cfg.model.decoder, cfg.model.attention if cfg.model.decoder in ("luong", "bahdanau") else None)
    records = _read_metrics(out)
    if not any(r.get("event") == "end" for r in records):
        trainer = Trainer(cfg, out, resume=(out / "last" / "trainer_state.pt").is_file(), progress_bar=False)
        trainer.fit()
        records = _read_metrics(out)
    translator = attnseq.load(out / "best")
    scores = score_held_out(translator, cfg.task, held_out)
    valid = [r for r in records if r.get("event") == "valid"]
    best = [r for r in valid if r.get("improved")]
    end = [r for r in records if r.get("event") == "end"][-1]
    return Row(
        variant=name,
        params=count_parameters(translator.model),
        bleu=scores.get("bleu", 0.0),
        chrf=scores.get("chrf", 0.0),
        ppl=best[-1]["ppl"] if best else float("nan"),
        train_tok_s=end["tok_s"],
        decode_sent_s=scores["sent_s"],
        train_minutes=end["train_minutes"],
        extra={k: scores[k] for k, _ in METRIC_COLUMNS.get(cfg.task, []) if k not in ("bleu", "chrf")},
    )


def markdown_table(rows: list[Row], *, held_out: str, search: str, task: str = "translate") -> str:
    columns = METRIC_COLUMNS.get(task, METRIC_COLUMNS["translate"])
    labels = [label for _, label in columns]
    lines = [
        f"{' and '.join(labels)} on {held_out} ({search}); perplexity on validation; training and decoding "
        "speed measured during the runs.",
        "",
        f"| variant | params | {' | '.join(labels)} | valid ppl | train tok/s | decode sent/s | train min |",
        "|---|---:|" + "---:|" * len(labels) + "---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.variant} | skipped: {r.skipped} |" + " |" * (len(labels) + 4))
        else:
            metrics = " | ".join(f"{r.metric(k):.{3 if 'distinct' in k else 2}f}" for k, _ in columns)
            lines.append(
                f"| {r.variant} | {r.params:,} | {metrics} | {r.ppl:.2f} | {r.train_tok_s:,.0f} "
                f"| {r.decode_sent_s:,.0f} | {r.train_minutes:.1f} |"
            )
    return "\n".join(lines) + "\n"


def ablate(config: str | Path, out: str | Path, overrides: list[str], *, only: list[str] | None = None,
           log=print) -> list[Row]:  # fmt: skip
    """Run every variant (or those named in `only`); write the table, the chart and the JSON."""
    from attnseq.plotting import plot_ablation

    names = [variant_name(*v) for v in VARIANTS]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise AttnseqError(f"--only: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    out = Path(out)
    base = load_config(config, overrides)
    d = base.data
    records = base.task in ("chat", "headline")
    if records:  # the seeded split of the config's files (or its ready-made test / valid files)
        from attnseq.tasks import get_task

        task = get_task(base.task)
        held_out = task.pairs(base, "test")
        split = "test" if held_out else "valid"
        held_out, held_name = held_out or task.pairs(base, "valid"), task.source(base, split)
    else:
        key = "data.test" if d.test else "data.valid"
        held_out = read_pairs(d.test or d.valid, d, key=key)
        held_name = (d.test or d.valid) + (d.src_suffix and f"{d.src_suffix} -> {d.tgt_suffix}")
    if not held_out:
        raise AttnseqError(f"{config}: no held-out pairs to score the variants on; give data.test or data.valid")
    columns = METRIC_COLUMNS.get(base.task, METRIC_COLUMNS["translate"])
    rows = []
    for decoder, attention in VARIANTS:
        name = variant_name(decoder, attention)
        if only and name not in only:
            continue
        sets = [*overrides, *variant_overrides(base, decoder, attention)]
        try:
            load_config(config, sets)
        except AttnseqError as exc:  # e.g. dot attention with different encoder / decoder sizes
            rows.append(Row(variant=name, skipped=str(exc).split(": ", 1)[-1][:120]))
            log(f"{name}: skipped ({rows[-1].skipped})")
            continue
        log(f"{name}: training in {out / name}")
        row = run_variant(config, sets, out / name, held_out)
        rows.append(row)
        shown = "  ".join(f"{label} {row.metric(k):.2f}" for k, label in columns)
        log(f"{name}: {shown}  ppl {row.ppl:.2f}  {row.train_tok_s:,.0f} tok/s  {row.decode_sent_s:,.0f} sent/s")
    dec = base.decode
    search = "greedy" if dec.beam_size == 1 else f"beam {dec.beam_size}, {dec.length_penalty} length penalty"
    budget = ", ".join(
        f"{k} {v:g}"
        for k, v in (("train.max_minutes", base.train.max_minutes), ("train.max_steps", base.train.max_steps))
        if v  # fmt: skip
    )
    if records:  # the task's baseline (no training) as the last row, scored on the same pairs
        base_scores = task.baseline(base, held_out)
        rows.append(Row(variant="baseline", bleu=base_scores.get("bleu", 0.0), chrf=base_scores.get("chrf", 0.0),
                        ppl=float("nan"), extra={k: base_scores[k] for k, _ in METRIC_COLUMNS[base.task]
                                                 if k not in ("bleu", "chrf")}))  # fmt: skip
        log(f"baseline: {base_scores['name']}")
    table = markdown_table(rows, held_out=held_name, search=search, task=base.task)
    if budget:
        table = f"Budget per variant: {budget}.\n\n" + table
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", table)
    atomic_write_text(out / "ablation.json", json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    ran = [r for r in rows if not r.skipped]
    panels = [*((label, [r.metric(k) for r in ran]) for k, label in columns),
              ("training target tokens/s", [r.train_tok_s for r in ran]),
              ("decoding sentences/s", [r.decode_sent_s for r in ran])]  # fmt: skip
    plot_ablation([r.variant for r in ran], panels, out / "ablation.png", title=f"{Path(config).name}, {budget}")
    return rows


POOLINGS = ("attention", "mean", "max", "last")


def ablate_classifier(config: str | Path, out: str | Path, overrides: list[str], *, only: list[str] | None = None,
                      log=print) -> list[dict]:  # fmt: skip
    """task: classify. Every pooling (SPEC 5.2's attention, mean, max, last) trained from one
    config, scored on its test split beside the TF-IDF + logistic regression baseline of the
    same split; writes ablation.md / .json / .png like the translation ablation."""
    from attnseq.checkpoint import load
    from attnseq.plotting import plot_ablation
    from attnseq.tasks.classify import held_out_report
    from attnseq.train import Trainer, count_parameters

    unknown = sorted(set(only or []) - set(POOLINGS))
    if unknown:
        raise AttnseqError(f"--only: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(POOLINGS)}")
    out = Path(out)
    rows, baseline = [], None
    for pooling in POOLINGS:
        if only and pooling not in only:
            continue
        cfg = load_config(config, [*overrides, f"model.pooling={pooling}"])
        run = out / pooling
        if not any(r.get("event") == "end" for r in _read_metrics(run)):
            log(f"{pooling}: training in {run}")
            Trainer(cfg, run, resume=(run / "last" / "trainer_state.pt").is_file(), progress_bar=False).fit()
        classifier = load(run)
        report = held_out_report(classifier, cfg)
        baseline = report.pop("baseline")
        end = [r for r in _read_metrics(run) if r.get("event") == "end"][-1]
        rows.append({"variant": pooling, "params": count_parameters(classifier.model), **report,
                     "train_minutes": end["train_minutes"]})  # fmt: skip
        log(f"{pooling}: accuracy {100 * report['accuracy']:.1f}%  macro-F1 {100 * report['macro_f1']:.1f}")
    if baseline is not None:
        rows.append({"variant": "tfidf-logreg", "params": 0, **baseline, "train_minutes": 0.0})
    domains = sorted({d for r in rows for d in r.get("domains", {})})
    head = "| variant | params | accuracy | macro-F1 | " + "".join(f"{d} acc | " for d in domains) + "train min |"
    lines = [f"Held-out test split of {Path(config).name} (the seeded split of its data section).", "", head,
             "|---|" + "---:|" * (4 + len(domains))]  # fmt: skip
    for r in rows:
        cells = [f"{100 * r['domains'][d]['accuracy']:.1f}%" for d in domains]
        lines.append(f"| {r['variant']} | {r['params']:,} | {100 * r['accuracy']:.1f}% | {100 * r['macro_f1']:.1f} | "
                     + "".join(c + " | " for c in cells) + f"{r['train_minutes']:.1f} |")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    panels = [("accuracy %", [100 * r["accuracy"] for r in rows]), ("macro-F1", [100 * r["macro_f1"] for r in rows])]
    plot_ablation([r["variant"] for r in rows], panels, out / "ablation.png", title=Path(config).name)
    return rows
