"""Load test of `attnseq serve` from loopback: requests/s, p50 / p99 latency and errors at 1, 8 and
32 concurrent clients, for a fixed duration each, with micro-batching on and off, in one run;
beside them, the latency of calling the predictor directly (same process kind, same inputs).

    python bench/serve.py                                   # the dates demo model (trained first if missing)
    python bench/serve.py --model runs/en_de --inputs data:multi30k/test_2016_flickr.en.gz

Each client (a keep-alive connection of wrk, Debian's HTTP load generator, in its own process)
sends one input per request and waits for the answer before the next: a closed loop. The server
runs as `attnseq serve` in its own process, the direct calls in this one, one at a time.
Writes the table to stdout and, with --json, every figure to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from speed import cpu_model_name, machine_info  # bench/speed.py: what the bench runs on

ROOT = Path(__file__).resolve().parents[1]


def read_inputs(path: str | None) -> list[str]:
    from attnseq.readers import read_lines

    if path is None:  # the demo: its held-out dates
        path = str(ROOT / "data" / "dates" / "test.tsv")
    lines = [line.split("\t")[0] for _, line in read_lines(path)]
    return [line for line in lines if line.strip()][:500]  # the direct calls and wrk cycle through the same


def ensure_demo_model(model: str | None) -> Path:
    if model:
        return Path(model)
    run = ROOT / "runs" / "demo"
    if not (run / "best").is_dir():
        print("bench/serve.py: training the demo model first (attnseq demo)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "attnseq", "demo", "--out", str(run)], cwd=ROOT, check=True)
    return run


def direct_latency(model_dir: Path, inputs: list[str], search: dict, seconds: float) -> dict:
    """predict([one input]) in this process, one call at a time, as the server's worker calls it."""
    import attnseq

    attnseq.tune_process()  # what `attnseq serve` applies too
    predictor = attnseq.load(model_dir)
    for text in inputs[:5]:
        predictor.predict([text], **search)
    times, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        predictor.predict([inputs[i % len(inputs)]], **search)
        times.append(time.perf_counter() - start)
        i += 1
    ms = 1000 * np.array(times)
    return {"calls": len(times), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, *, batching: bool, max_wait_ms: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "attnseq", "serve", "--model", str(model_dir), "--port", str(port),
           "--no-access-log", "--max-wait-ms", str(max_wait_ms), "--max-queue", "100000"]  # fmt: skip
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.2)


WRK_SCRIPT = """
local bodies = {BODIES}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", "/v1/predict", {["Content-Type"] = "application/json"}, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_script(inputs: list[str], search: dict, path: Path) -> Path:
    """A wrk script sending one input per request, cycling through `inputs`."""
    bodies = [json.dumps({"inputs": [text], "search": search}, ensure_ascii=True) for text in inputs]
    path.write_text(WRK_SCRIPT.replace("{BODIES}", "{" + ", ".join(f"[==[{b}]==]" for b in bodies) + "}"))
    return path


def load(url: str, script: Path, clients: int, seconds: float, warmup: float) -> dict:
    """`clients` closed-loop connections (wrk: one thread, keep-alive) for `seconds`, after `warmup`."""
    base = ["wrk", "-t1", f"-c{clients}", "--timeout", "60s", "-s", str(script), url]
    if warmup > 0:
        subprocess.run([*base[:1], f"-d{warmup:g}s", *base[1:]], capture_output=True, check=True)
    before = batch_stats(url)
    out = subprocess.run([*base[:1], f"-d{seconds:g}s", *base[1:]], capture_output=True, text=True, check=True).stdout
    after = batch_stats(url)
    batches = after["batches"] - before["batches"]
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    r = json.loads(line[len("WRK_JSON ") :])
    return {
        "clients": clients,
        "requests": r["requests"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["errors"],
        "mean_batch": (after["inputs"] - before["inputs"]) / batches if batches else 0.0,
    }


def batch_stats(url: str) -> dict:
    """The server's batch counters, summed over its models."""
    stats = httpx.get(f"{url}/health", timeout=30).json()["batches"].values()
    return {key: sum(s[key] for s in stats) for key in ("batches", "inputs")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model or run directory (default: runs/demo, trained if missing)")
    ap.add_argument("--inputs", help="one input per line (TSV: the first column; data:NAME/FILE works)")
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels (default 1,8,32)")
    ap.add_argument("--duration", type=float, default=10.0, help="timed seconds per level (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each level (default 2)")
    ap.add_argument("--beam-size", type=int, help="search.beam_size of every request (default: the model's)")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms (default 5)")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args(argv)

    model_dir = ensure_demo_model(args.model)
    inputs = read_inputs(args.inputs)
    search = {"beam_size": args.beam_size, "n_best": 1} if args.beam_size else {}
    levels = [int(c) for c in args.clients.split(",")]
    print(f"bench/serve.py: {model_dir}, {len(inputs)} inputs, search {search or 'as the model config'}; "
          f"{cpu_model_name()}, {os.cpu_count()} CPUs", file=sys.stderr)  # fmt: skip

    if shutil.which("wrk") is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "debian-package.sh"), "wrk", "wrk"], check=False)
        if shutil.which("wrk") is None:
            sys.exit("bench/serve.py: needs wrk (Debian package wrk) as its load generator")
    script = wrk_script(inputs, search, Path(tempfile.mkdtemp(prefix="attnseq-bench-")) / "requests.lua")
    direct = direct_latency(model_dir, inputs, search, seconds=max(args.duration, 5.0))
    runs = {}
    for batching in (True, False):
        port = free_port()
        proc = start_server(model_dir, port, batching=batching, max_wait_ms=args.max_wait_ms)
        try:
            runs["on" if batching else "off"] = [
                load(f"http://127.0.0.1:{port}", script, c, args.duration, args.warmup) for c in levels
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    command = " ".join(["python bench/serve.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\n`{command}` on {cpu_model_name()} ({os.cpu_count()} CPUs), {args.duration:g} s per row\n")
    print("| batching | clients | requests/s | p50 ms | p99 ms | errors | inputs per batch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in ("on", "off"):
        for r in runs[mode]:
            cells = [mode, r["clients"], f"{r['rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", r["errors"],
                     f"{r['mean_batch']:.1f}"]  # fmt: skip
            print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"| predictor called directly | 1 | {1000 / direct['p50_ms']:.1f} | {direct['p50_ms']:.1f} | "
          f"{direct['p99_ms']:.1f} | - | 1 |")  # fmt: skip
    on, off = {r["clients"]: r for r in runs["on"]}, {r["clients"]: r for r in runs["off"]}
    top = max(levels)
    summary = {
        f"throughput_on_over_off_at_{top}": on[top]["rps"] / off[top]["rps"],
        "p50_at_1_over_direct": on[min(levels)]["p50_ms"] / direct["p50_ms"] if 1 in on else None,
        "errors": sum(r["errors"] for mode in ("on", "off") for r in runs[mode]),
    }
    print(f"\nmicro-batching at {top} clients: {summary[f'throughput_on_over_off_at_{top}']:.2f}x the requests/s of "
          f"batching off; p50 at 1 client / direct call: {summary['p50_at_1_over_direct']:.3f}; "
          f"errors: {summary['errors']}")  # fmt: skip
    if args.json:
        record = {"machine": machine_info("cpu"), "model": str(model_dir), "search": search,
                  "duration_s": args.duration, "direct": direct, **runs, "summary": summary}  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
