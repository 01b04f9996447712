"""Pictures and examples for docs/classification.md from a trained classifier: the pooling weights
of the first test sentence of each domain (a fixed rule), and the tokens the model looks at most
for each class on the test split.

    .venv/bin/python bench/classify_pictures.py runs/sentiment --out docs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attnseq
from attnseq.plotting import plot_pooling
from attnseq.tasks.classify import split_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--name", default="pooling_sentiment")
    args = parser.parse_args()
    clf = attnseq.load(args.model)
    test = split_examples(clf.config.data)["test"]
    firsts = {}
    for ex in test:
        firsts.setdefault(ex.domain, ex)
    for k, (domain, ex) in enumerate(sorted(firsts.items())):
        p = clf.predict([ex.text])[0]
        name = args.name if k == 0 else f"{args.name}_{domain}"
        path = plot_pooling(p.attention, p.input_tokens, Path(args.out) / f"{name}.png",
                            title=f"{domain}: predicted {p.output} ({p.score:.2f}), label {ex.label}")  # fmt: skip
        top = sorted(zip(p.attention[0], p.input_tokens), reverse=True)[:3]
        print(
            f"{path}: {ex.text!r} -> {p.output} ({p.score:.3f}), gold {ex.label}; most weight: "
            + ", ".join(f"{t} {w:.2f}" for w, t in top)
        )
    report = clf.evaluate(test)
    for label, tokens in report["most_attended"].items():
        print(f"class {label}: " + ", ".join(f"{t} ({n})" for t, n in tokens))


if __name__ == "__main__":
    main()
