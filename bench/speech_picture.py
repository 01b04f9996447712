"""The README's speech picture: a trained FSDD model's log-mel spectrogram and alignment of a test
digit string, chosen by a fixed rule (the first test string of at least 5 digits), and the test
strings it gets wrong.

    .venv/bin/python bench/speech_picture.py --model runs/fsdd --out docs/speech_fsdd.png
"""

from __future__ import annotations

import argparse

import soundfile

import attnseq
from attnseq.audio.corpus import read_split
from attnseq.plotting import plot_speech


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/fsdd")
    parser.add_argument("--out", default="docs/speech_fsdd.png")
    parser.add_argument("--wav", default="", help="also write the chosen string as this wav file")
    args = parser.parse_args()
    transcriber = attnseq.load(args.model)
    d = transcriber.config.data
    test = read_split(d, "test")
    chosen = next(u for u in test if len(u.text.split()) >= 5)
    p = transcriber.transcribe([chosen.wave], names=[chosen.name])[0]
    frames = transcriber.featurizer.raw(chosen.wave).numpy()
    plot_speech(frames, p.attention, p.output_tokens, args.out,
                seconds_per_frame=transcriber.featurizer.frontend.seconds_per_frame,
                seconds_per_position=transcriber.seconds_per_position,
                title=f"spoken: {chosen.text}   transcribed: {p.output}")  # fmt: skip
    print(f"{chosen.name}: reference {chosen.text!r}, transcribed {p.output!r}; wrote {args.out}")
    if args.wav:
        soundfile.write(args.wav, chosen.wave, d.sample_rate, subtype="PCM_16")
        print(f"wrote {args.wav}")
    found = transcriber.transcribe([u.wave for u in test], names=[u.name for u in test])
    wrong = [(u, f.output) for u, f in zip(test, found) if f.output != u.text]
    print(f"{len(wrong)} of {len(test)} test strings wrong" + (":" if wrong else ""))
    for u, out in wrong[:20]:
        print(f"  {u.text:<16} -> {out}")


if __name__ == "__main__":
    main()
