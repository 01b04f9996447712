"""The speed bench's attnseq children (bench/speed.py --child ...) on a few sentences: `make bench`
runs them for an hour, so an interface they call that changed must fail here, not there."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from tests.conftest import ROOT

BENCH = ROOT / "bench" / "speed.py"


def bench_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_bench_children_train_and_decode(tmp_path):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    for name, n in (("train", 160), ("val", 20), ("test", 12)):
        src = [" ".join(rng.choices(words, k=rng.randint(3, 8))) for _ in range(n)]
        (tmp_path / f"{name}.en").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (tmp_path / f"{name}.de").write_text("".join(s.upper() + "\n" for s in src), encoding="utf-8")
    common = ["--data", str(tmp_path), "--device", "cpu"]

    fast = bench_child(*common, "--child", "throughput", "--precision", "auto", "--warmup", "1", "--measure", "2")
    assert fast["tok_s"] > 0 and fast["precision"] in ("fp32", "bf16")

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import speed
    finally:
        sys.path.remove(str(ROOT / "bench"))
    run = tmp_path / "run"
    overrides = speed.attnseq_overrides(tmp_path, "general", "auto", "cpu") + ["train.max_steps=3"]
    cmd = [sys.executable, "-m", "attnseq", "train", str(speed.RECIPE), "--out", str(run)]
    proc = subprocess.run(
        [*cmd, *[a for o in overrides for a in ("--set", o)]], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    # the fast path decodes with decode.shortlist auto, every other decoder over the whole vocabulary
    assert speed.decoder_spec("auto") == ("auto", "auto") and speed.decoder_spec("fp32") == ("fp32", 0)
    assert speed.decoder_spec("auto+shortlist0") == ("auto", 0) and speed.decoder_spec("int8+shortlist10") == (
        "int8",
        10,
    )
    decoded = bench_child(*common, "--child", "decode", "--model", str(run / "last"), "--precisions", "auto,fp32")
    assert set(decoded["auto"]["beams"]) == {"1", "5"}
    assert all(r["sent_s"] > 0 for r in decoded["auto"]["beams"].values())
    assert decoded["auto"]["shortlist"] == decoded["fp32"]["shortlist"] == 0  # 30 words: auto lists none
    scaled = bench_child(*common, "--child", "scaling", "--model", str(run / "last"), "--precisions", "auto",
                         "--batches", "1,4", "--sentences", "4")  # fmt: skip
    assert set(scaled["sent_s"]) == {"greedy", "beam5"} and set(scaled["sent_s"]["greedy"]) == {"1", "4"}


def test_the_bench_rotates_the_order_of_each_round():
    sys.path.insert(0, str(BENCH.parent))
    try:
        import speed
    finally:
        sys.path.remove(str(BENCH.parent))
    rounds = [speed.rotated(("onmt", "fp32", "auto"), r) for r in range(3)]
    assert rounds == [("onmt", "fp32", "auto"), ("fp32", "auto", "onmt"), ("auto", "onmt", "fp32")]
    assert all(sorted(place) == ["auto", "fp32", "onmt"] for place in zip(*rounds))  # each place once each
    assert speed.rotated((1, 2), 3) == (2, 1)
