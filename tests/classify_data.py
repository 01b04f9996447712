"""Synthetic labelled texts for the classifier tests: filler words around one sentiment word that
decides the label, and a tiny classify config over them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from attnseq.config import load_config

POSITIVE = "good great fine lovely excellent superb".split()
NEGATIVE = "bad awful poor terrible horrible dull".split()
FILLER = "the a food phone film was is and it service screen staff very quite so really this that".split()


def write_synthetic(path: Path, n: int, *, seed: int) -> Path:
    """TEXT<TAB>LABEL lines: filler words around one sentiment word that decides the label."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        lines.append(f"{' '.join(words)}\t{'pos' if label else 'neg'}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    return {name: write_synthetic(d / f"{name}.tsv", n, seed=i) for i, (name, n) in
            enumerate((("train", 600), ("valid", 100), ("test", 200)))}  # fmt: skip


def tiny_classify_config(synthetic, *overrides: str):
    return load_config(
        None,
        [
            "task=classify", f"data.train={synthetic['train']}", f"data.valid={synthetic['valid']}",
            f"data.test={synthetic['test']}", "model.emb_size=16", "model.hidden_size=16", "model.units=8",
            "train.batch_size=16", "train.max_epochs=4", "train.lr=0.01", "train.log_every=10", *overrides,
        ],
    )  # fmt: skip
