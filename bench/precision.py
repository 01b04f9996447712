"""Training speed of a recipe in fp32 and in bf16, side by side in one process: what `precision:
auto` weighs (docs/performance.md, "bf16 pays for large products only").

    .venv/bin/python bench/precision.py configs/fsdd_digits.yaml [KEY=VALUE ...]

Builds a trainer per precision on the recipe (overrides as `--set` takes them), takes its first
--warmup + --measure training batches, runs --warmup steps of each, then --blocks blocks of
--measure steps, the two precisions in turn, and prints steps/s (median of the blocks) and the
ratio. bf16 needs a CPU that runs it natively; elsewhere it says what is missing and exits 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE, as --set takes them")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--measure", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    from attnseq.config import load_config
    from attnseq.runtime import capabilities, keep_freed_memory
    from attnseq.trainer import Trainer

    caps = capabilities("cpu")
    if not caps.bf16:
        print(f"bench/precision.py: bf16 does not run natively here ({caps.bf16_missing}); nothing to compare",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    keep_freed_memory()  # as the attnseq command does
    if args.threads:
        torch.set_num_threads(args.threads)
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as scratch:
        runs = {}
        for precision in rates:
            cfg = load_config(args.config, [f"train.precision={precision}", *args.overrides])
            trainer = Trainer(cfg, Path(scratch) / precision, progress_bar=False)
            data = trainer.data.train
            indices = data.batch_indices(cfg.train.batch_size, seed=1)[: args.warmup + args.measure]
            runs[precision] = (trainer, [data.collate(i) for i in indices])
        for trainer, batches in runs.values():
            for batch in batches[: args.warmup]:
                trainer.train_step([batch], batch.units)
        for _ in range(args.blocks):
            for precision, (trainer, batches) in runs.items():
                start = time.perf_counter()
                for batch in batches[args.warmup :]:
                    trainer.train_step([batch], batch.units)
                rates[precision].append((len(batches) - args.warmup) / (time.perf_counter() - start))
        parameters = sum(p.numel() for p in runs["fp32"][0].model.parameters())
        for trainer, _ in runs.values():
            trainer.close()
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    print(f"{Path(args.config).stem}: {parameters / 1e6:.2f} M parameters, {torch.get_num_threads()} threads; "
          f"steps/s fp32 {fp32:.2f}, bf16 {bf16:.2f}: bf16 / fp32 {bf16 / fp32:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
