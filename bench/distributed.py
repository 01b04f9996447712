"""Training throughput: `torchrun --nproc-per-node P` against one process with P threads, side by
side in one run, on the same recipe and the same number of target tokens.

    .venv/bin/python bench/distributed.py                       # Multi30k En->De, P = 2, 3 rounds
    .venv/bin/python bench/distributed.py --config configs/dates.yaml --steps 200 --set data.train=...

Each round trains the config as shipped (its precision `auto`) twice, alternating: one process
with `train.num_threads = P` for --steps updates, then P processes (torchrun --standalone, one
thread each) for --steps / P updates, so both see the same batches' worth of tokens. The figure is
the run's `end` record of metrics.jsonl: target tokens trained over training time (validation,
data reading and start-up left out). Prints the machine first (other work on it skews timings),
then each round and the medians; --json writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from speed import machine_info  # noqa: E402


def train(out: Path, config: str, sets: list[str], *, procs: int, threads: int, steps: int) -> float:
    fixed = [f"train.max_steps={steps}", f"train.num_threads={threads}", "train.max_minutes=0",
             "train.valid_max_sentences=50", "train.save_every=0"]  # fmt: skip
    args = ["train", config, "--out", str(out), *[a for s in [*sets, *fixed] for a in ("--set", s)]]
    if procs == 1:
        cmd = [sys.executable, "-m", "attnseq", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               "-m", "attnseq", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    end = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert end["event"] == "end", end
    return end["tok_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/multi30k_en_de.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="SECTION.KEY=VALUE, for both")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=120, help="updates of the one process (P processes run steps / P)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    print(json.dumps(machine_info("cpu")))
    rows: dict[str, list[float]] = {"one": [], "ddp": []}
    work = Path(tempfile.mkdtemp(prefix="attnseq-bench-ddp-"))
    try:
        for r in range(a.rounds):
            one = train(work / f"one{r}", a.config, a.sets, procs=1, threads=a.procs, steps=a.steps)
            ddp = train(work / f"ddp{r}", a.config, a.sets, procs=a.procs, threads=1, steps=a.steps // a.procs)
            rows["one"].append(one)
            rows["ddp"].append(ddp)
            print(f"round {r + 1}: 1 process x {a.procs} threads {one:,.0f} tok/s | torchrun {a.procs} processes "
                  f"x 1 thread {ddp:,.0f} tok/s | ratio {ddp / one:.2f}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, ddp = statistics.median(rows["one"]), statistics.median(rows["ddp"])
    print(f"median of {a.rounds}: 1 process x {a.procs} threads {one:,.0f} tok/s, torchrun {a.procs} processes "
          f"{ddp:,.0f} tok/s, ratio {ddp / one:.2f}")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps({"machine": machine_info("cpu"), "config": a.config, "rows": rows,
                                      "median_one": one, "median_ddp": ddp}, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
