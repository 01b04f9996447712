"""Draw docs/architecture.png: the package's layers (tests/test_imports.py::LAYERS, which the tests
hold the imports to) with the modules of each, and the walk of a training batch and of a request.

    .venv/bin/python scripts/architecture_picture.py [--out docs/architecture.png]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.test_imports import LAYERS, MODULES, layer_of  # noqa: E402

# Each walk: (layer index, what happens there), from where it starts
BATCH = [
    (6, "attnseq train: config.load_config -> Trainer (trainer.py, run_dir.py)"),
    (5, "task.data(cfg) -> datasets; dataset.collate(index) -> batch"),
    (2, "model.forward(batch) -> LossOutput(loss_sum, units, logs)"),
    (3, "fast.accelerate's fused loop and loss, where the model has them"),
    (1, "the decoder's equations (reference)"),
    (6, "loss_sum / units: backward, step; validate: task.validate; save: checkpoint"),
]
REQUEST = [
    (6, "POST /v1/predict (serve) or attnseq translate: predict.load(dir)"),
    (4, "checkpoint: config.json -> its task; weights -> model"),
    (5, "task.predictor(...).predict(inputs)"),
    (4, "Seq2SeqPredictor: decoding copy, batched search"),
    (3, "decoding: greedy / beam / sampling -> hypotheses per input"),
    (0, "contracts.Prediction -> JSON"),
]


def layer_lines() -> dict[int, str]:
    """Each layer's modules as the tree shows them: `trainer.py`, or `tasks/ (chatbot classify ...)`."""
    groups: dict[int, dict[str, list[str]]] = {}
    for module in sorted(MODULES):
        if module == "attnseq":
            continue
        parts = module.removeprefix("attnseq.").split(".")
        folder = MODULES[module].name == "__init__.py" or len(parts) > 1
        top = parts[0] + ("/" if folder else ".py")
        members = groups.setdefault(layer_of(module), {}).setdefault(top, [])
        if len(parts) > 1:
            members.append(parts[1])
    return {layer: "  ".join(f"{top} ({' '.join(m)})" if m else top for top, m in tops.items())
            for layer, tops in groups.items()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "docs" / "architecture.png"))
    out = Path(parser.parse_args().out)
    lines = layer_lines()
    n = len(LAYERS)
    fig, ax = plt.subplots(figsize=(13, 9.5))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, n + 0.45)
    ax.axis("off")
    colours = plt.cm.Blues([0.12 + 0.09 * i for i in range(n)])
    for i, (title, _) in enumerate(LAYERS):
        ax.add_patch(FancyBboxPatch((0.1, i + 0.06), 12.8, 0.88, boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor=colours[i], edgecolor="#3b5b8c", linewidth=0.8))  # fmt: skip
        ax.text(0.25, i + 0.8, title, fontsize=10.5, fontweight="bold", va="top", color="#10243f")
        wrapped = textwrap.fill(lines.get(i, ""), width=80)
        ax.text(0.25, i + 0.6, wrapped, fontsize=7.2, va="top", family="monospace", color="#1c2f4a")
    for walk, x, colour, label in ((BATCH, 7.7, "#b3421f", "a training batch"),
                                   (REQUEST, 10.3, "#23683a", "a request")):  # fmt: skip
        ax.text(x, n + 0.12, label, fontsize=10, fontweight="bold", color=colour, va="bottom")
        points, seen = [], {}
        for k, (layer, what) in enumerate(walk):
            j = seen[layer] = seen.get(layer, -1) + 1  # a second step in the same layer sits below the first
            y = layer + 0.72 - 0.42 * j
            points.append((x, y))
            ax.text(x + 0.22, y, textwrap.fill(f"{k + 1}. {what}", 34), fontsize=6.8, va="center", color=colour)
            ax.plot(*points[-1], "o", color=colour, markersize=4)
        for a, b in zip(points, points[1:]):
            ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=9, color=colour, linewidth=1.1,
                                         connectionstyle="arc3,rad=0.25"))  # fmt: skip
    ax.set_title("attnseq: each layer imports only from its own layer or below (tests/test_imports.py)",
                 fontsize=11.5)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
