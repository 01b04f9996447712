"""A classification recipe over several seeds: the attention-pooling classifier, the mean-pooling
ablation and the TF-IDF + logistic regression baseline on the same held-out split (per domain too).

    .venv/bin/python bench/classify_seeds.py configs/sentiment.yaml --seeds 1,2,3,4,5
    .venv/bin/python bench/classify_seeds.py configs/chatbot_topic.yaml --seeds 1,2,3 --poolings attention

Writes OUT/<pooling>-seed<N>/ (normal run directories) and OUT/summary.json; prints a table of
means (and each seed's figure) and the training minutes of each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import attnseq
from attnseq.config import load_config
from attnseq.fileio import atomic_write_text
from attnseq.tasks.classify import held_out_report
from attnseq.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--poolings", default="attention,mean")
    parser.add_argument("--out", default="runs/classify_seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    attnseq.tune_process()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out) / Path(args.config).stem
    rows: dict[str, list[dict]] = {}
    baseline = None
    for pooling in args.poolings.split(","):
        for seed in seeds:
            cfg = load_config(args.config, [*args.overrides, f"model.pooling={pooling}", f"train.seed={seed}"])
            run = out / f"{pooling}-seed{seed}"
            if not (run / "best").is_dir():
                Trainer(cfg, run, progress_bar=False).fit()
            report = held_out_report(attnseq.load(run), cfg)
            baseline = report.pop("baseline")
            end = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
            report["train_minutes"] = end["train_minutes"]
            report["valid_best"] = end["best"]  # best/'s validation score (train.valid_metric): what tuning may look at
            rows.setdefault(pooling, []).append(report)
            print(f"{pooling} seed {seed}: accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f} "
                  f"(valid {cfg.train.valid_metric} {report['valid_best']:.4f}, {report['train_minutes']:.2f} min)",
                  flush=True)  # fmt: skip
    domains = sorted(baseline.get("domains", {}))

    def line(name: str, reports: list[dict]) -> str:
        def mean(get) -> float:
            return statistics.mean(get(r) for r in reports)

        cells = [f"{mean(lambda r: r['accuracy']):.4f}", f"{mean(lambda r: r['macro_f1']):.4f}"]
        cells += [f"{mean(lambda r, d=d: r['domains'][d]['accuracy']):.4f}" for d in domains]
        valid = f"{mean(lambda r: r['valid_best']):.4f}" if "valid_best" in reports[0] else ""
        return f"| {name} | " + " | ".join(cells) + f" | {valid} |"

    print(f"\nmeans over seeds {args.seeds} (test split, {baseline['n']} texts; valid: best/'s validation score)")
    print("| model | accuracy | macro-F1 | " + "".join(f"{d} acc | " for d in domains) + "valid |")
    print("|---|" + "---:|" * (3 + len(domains)))
    for pooling, reports in rows.items():
        print(line(f"{pooling} pooling", reports))
    print(line(f"TF-IDF + logistic regression (C={baseline['C']:g})", [baseline]))
    atomic_write_text(out / "summary.json", json.dumps({"rows": rows, "baseline": baseline}, indent=1) + "\n")


if __name__ == "__main__":
    main()
