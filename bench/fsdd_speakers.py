"""FSDD with an unseen speaker: for each of the six speakers, train the digit-string recipe without
that speaker and test on that speaker's 500 clips (as digit strings, and one by one).

    .venv/bin/python bench/fsdd_speakers.py                      # every speaker, the recipe's budget
    .venv/bin/python bench/fsdd_speakers.py --speakers theo,lucas --set train.max_minutes=6

Writes OUT/<speaker>/ (normal run directories, each with test_report.json) and OUT/summary.json,
and prints a table: WER, exact strings and isolated-clip accuracy per held-out speaker.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import attnseq
from attnseq.audio.corpus import fsdd_rows
from attnseq.config import load_config
from attnseq.fileio import atomic_write_text
from attnseq.tasks.speech import Transcriber, held_out_report
from attnseq.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/fsdd_digits.yaml")
    parser.add_argument("--speakers", default="", help="comma-separated (default: every speaker)")
    parser.add_argument("--out", default="runs/fsdd_speakers")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    attnseq.tune_process()
    base = load_config(args.config, args.overrides)
    speakers = args.speakers.split(",") if args.speakers else sorted({r["speaker"] for r in fsdd_rows(base.data)[1]})
    rows = {}
    for speaker in speakers:
        cfg = load_config(args.config, [*args.overrides, f"data.held_out_speaker={speaker}"])
        run = Path(args.out) / speaker
        start = time.perf_counter()
        Trainer(cfg, run, progress_bar=False).fit()
        minutes = (time.perf_counter() - start) / 60
        report = held_out_report(Transcriber.from_pretrained(run))
        atomic_write_text(run / "test_report.json", json.dumps(report, indent=1) + "\n")
        rows[speaker] = {**report, "minutes": minutes}
        print(f"{speaker:<10} WER {100 * report['wer']:5.2f}%  exact {100 * report['exact']:5.1f}%  "
              f"isolated {100 * report['isolated']['accuracy']:5.1f}%  ({minutes:.1f} min)", flush=True)  # fmt: skip
    atomic_write_text(Path(args.out) / "summary.json", json.dumps(rows, indent=1) + "\n")
    print("\n| held-out speaker | strings: WER | strings exactly right | isolated clips: accuracy |")
    print("|---|---|---|---|")
    for speaker, r in rows.items():
        print(
            f"| {speaker} | {100 * r['wer']:.2f}% | {100 * r['exact']:.1f}% | {100 * r['isolated']['accuracy']:.1f}% |"
        )


if __name__ == "__main__":
    main()
