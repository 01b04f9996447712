"""Train a Multi30k recipe for a fixed wall-clock budget and report test BLEU, greedy and beam 5.

    .venv/bin/python bench/multi30k_budget.py configs/multi30k_en_de.yaml --minutes 45 --out runs/bench_en_de
    .venv/bin/python bench/multi30k_budget.py configs/multi30k_en_de.yaml --model runs/en_de   # score only

The budget is training time (train.max_minutes; validation excluded). Prints a table, the command
that reproduces it, and one JSON line with the figures. With --snapshot, also scores the
best_at_<N>min/ model the run kept (train.snapshot_minutes).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from attnseq.config import load_config
from attnseq.readers import read_pairs
from attnseq.runtime import keep_freed_memory
from attnseq.tasks.translation import Translator
from attnseq.trainer import Trainer, count_parameters


def score(model_dir: Path, pairs, beam_size: int) -> dict:
    translator = Translator.from_pretrained(model_dir)
    _, scores = translator.evaluate([s for s, _ in pairs], [r for _, r in pairs], beam_size=beam_size)
    return {"bleu": scores["bleu"], "chrf": scores["chrf"], "bleu_lc_tok": scores["bleu_lc_tok"],
            "sent_s": scores["sent_s"], "params": count_parameters(translator.model),
            "signature": scores["bleu_signature"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--minutes", type=float, help="training budget (default: the recipe's train.max_minutes)")
    parser.add_argument("--out", default="runs/bench", help="run directory for the training")
    parser.add_argument("--model", help="score this existing run directory instead of training")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    keep_freed_memory()  # as the attnseq command does
    overrides = [*args.overrides] + ([f"train.max_minutes={args.minutes:g}"] if args.minutes else [])
    cfg = load_config(args.config, overrides)
    run = Path(args.model or args.out)
    wall = None
    if not args.model:
        start = time.perf_counter()
        Trainer(cfg, run, progress_bar=False).fit()
        wall = (time.perf_counter() - start) / 60
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ends = [r for r in records if r["event"] == "end"]
    end = ends[-1] if ends else {"reason": "stopped by hand; --resume continues it"}
    if "tok_s" not in end:  # a run stopped by hand, or from before the end record carried these
        train = sorted(r["tok_s"] for r in records if r["event"] == "train")
        end["tok_s"] = train[len(train) // 2]
        end["train_minutes"] = [r for r in records if r["event"] == "valid"][-1]["train_minutes"]
    test = read_pairs(cfg.data.test, cfg.data, key="data.test")
    models = [("best", run / "best")] + sorted(
        (p.name, p) for p in run.glob("best_at_*min") if (p / "model.safetensors").is_file()
    )
    rows = []
    for name, directory in models:
        for beam in (1, 5):
            rows.append({"model": name, "beam": beam, **score(directory, test, beam)})
    print(f"{args.config}: {end['train_minutes']:.1f} min of training ({end['reason']}), "
          f"{end['tok_s']:,.0f} target tok/s" + (f", {wall:.1f} min wall" if wall else ""))  # fmt: skip
    print(f"test {cfg.data.test}{cfg.data.src_suffix} -> {cfg.data.tgt_suffix}, {len(test)} sentences")
    print("| model | search | BLEU | chrF | BLEU lc tok | sentences/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        search = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        print(f"| {r['model']} | {search} | {r['bleu']:.2f} | {r['chrf']:.2f} | {r['bleu_lc_tok']:.2f} "
              f"| {r['sent_s']:.0f} |")  # fmt: skip
    print(f"sacreBLEU {rows[0]['signature']}; {rows[0]['params']:,} parameters")
    print("reproduce: " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(json.dumps({"config": args.config, "train_minutes": end["train_minutes"], "tok_s": end["tok_s"],
                      "results": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
