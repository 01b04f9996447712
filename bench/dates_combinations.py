"""Every decoder wiring x attention kind on the dates demo, under the same step budget.

    .venv/bin/python bench/dates_combinations.py [--steps 400] [--out runs/combinations]

Prints a Markdown table of held-out (test split) exact match, with parameters and training time.
The step budget (not a time budget) makes the comparison independent of machine load.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from attnseq.config import load_config
from attnseq.readers import read_tsv
from attnseq.tasks.dates import write_corpus
from attnseq.tasks.translation import Translator
from attnseq.trainer import Trainer, count_parameters

COMBINATIONS = [("init", "-"), ("every-step", "-")] + [
    (decoder, attention)
    for decoder in ("luong", "bahdanau")
    for attention in ("dot", "scaled_dot", "general", "concat", "location")
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dates.yaml")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", default="runs/combinations")
    parser.add_argument("--data-dir", default="data/dates")
    args = parser.parse_args()
    paths = write_corpus(args.data_dir)
    test = read_tsv(paths["test"])
    rows = []
    for decoder, attention in COMBINATIONS:
        out = Path(args.out) / f"{decoder}-{attention}"
        shutil.rmtree(out, ignore_errors=True)
        overrides = [
            f"data.train={paths['train']}",
            f"data.valid={paths['valid']}",
            f"data.test={paths['test']}",
            f"model.decoder={decoder}",
            f"train.max_steps={args.steps}",
            "train.max_minutes=0",
            "train.patience=0",
            "train.max_epochs=100",
        ]
        if attention != "-":
            overrides.append(f"model.attention={attention}")
        trainer = Trainer(load_config(args.config, overrides), out, progress_bar=False)
        start = time.perf_counter()
        trainer.fit()
        minutes = (time.perf_counter() - start) / 60
        scores = Translator.from_pretrained(out / "best").score([s for s, _ in test], [r for _, r in test])
        exact = scores["exact_match"]
        rows.append((decoder, attention, count_parameters(trainer.model), minutes, exact))
        print(f"{decoder:>10} {attention:>10}  exact {exact:5.1f}%  {minutes:.2f} min", flush=True)
    print(
        f"\n| decoder | attention | parameters | train min ({args.steps} steps, incl. validation) "
        "| held-out exact match |\n|---|---|---:|---:|---:|"
    )
    for decoder, attention, params, minutes, exact in rows:
        print(f"| {decoder} | {attention} | {params:,} | {minutes:.2f} | {exact:.1f}% |")


if __name__ == "__main__":
    main()
