"""Pictures: attention heatmaps and training curves (matplotlib, Agg backend, PNG files).

Text is set in DejaVu Sans with NanumGothic (shipped by the koreanize-matplotlib package, whose
font files are registered here without importing it) as the fallback, so Hangul tokens are drawn
rather than boxes; matplotlib's settings are changed only while a picture is drawn.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attnseq.errors import AttnseqError  # noqa: E402
from attnseq.fileio import atomic_write_bytes  # noqa: E402


@functools.cache
def font_families() -> list[str]:
    """The font families pictures use: DejaVu Sans, then every CJK family found (first use only)."""
    from matplotlib import font_manager

    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec and spec.origin:
        fonts = Path(spec.origin).parent / "fonts"
        for ttf in sorted(fonts.glob("NanumGothic*.ttf")):
            font_manager.fontManager.addfont(str(ttf))
    known = {f.name for f in font_manager.fontManager.ttflist}
    fallbacks = ["NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum", "Baekmuk Gulim"]
    return ["DejaVu Sans", *(f for f in fallbacks if f in known)]


def _fonts(draw):
    """Draw with `font_families()` (Hangul as well as Latin) without changing matplotlib's settings."""

    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        with plt.rc_context({"font.family": font_families()}):
            return draw(*args, **kwargs)

    return wrapped


PICTURES = ("png", "jpg", "jpeg", "pdf", "svg")  # the formats a picture is written in, by its file name


def _save(fig, path: Path) -> Path:
    """Write the figure in the format its file name ends with (.png, .jpg, .pdf, .svg; PNG otherwise)."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in PICTURES:
        plt.close(fig)
        raise AttnseqError(f"{path}: name a picture file ending in {', '.join('.' + k for k in PICTURES)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=kind, dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


@_fonts
def plot_pooling(weights: np.ndarray, tokens: list[str], path: str | Path, *, title: str = "") -> Path:
    """The 1 x S weights of attention pooling (SPEC 5.2) over a text's tokens, each cell labelled
    with its weight; the colour scale runs to the largest weight of the text."""
    weights = np.asarray(weights, dtype=float).reshape(1, -1)
    cols = weights.shape[1]
    fig, ax = plt.subplots(figsize=(max(3.0, 0.55 * cols + 1.5), 1.9))
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-9), aspect="auto")
    ax.set_xticks(range(cols), labels=[t.replace("\u2581", "\u2423") for t in tokens[:cols]], rotation=60, ha="right")
    ax.set_yticks([])
    for j, w in enumerate(weights[0]):
        ax.text(j, 0, f"{w:.2f}", ha="center", va="center", fontsize=7,
                color="black" if w > 0.6 * weights.max() else "white")  # fmt: skip
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return _save(fig, Path(path))


@_fonts
def plot_attention(
    weights: np.ndarray, src_tokens: list[str], tgt_tokens: list[str], path: str | Path, *, title: str = "",
    copied: list[float] | None = None,
) -> Path:  # fmt: skip
    """Heatmap of alpha (rows: output tokens, columns: source tokens). weights (T, S). With `copied`
    (a model that copies: per output token, the share of its probability copying gave), a bar per
    row beside the heatmap shows that share, and the tokens mostly copied are labelled in orange."""
    weights = np.asarray(weights, dtype=float)
    rows, cols = weights.shape
    size = (max(3.0, 0.32 * cols + 1.5) + (1.2 if copied is not None else 0.0), max(2.5, 0.32 * rows + 1.2))
    if copied is None:
        fig, ax = plt.subplots(figsize=size)
    else:
        fig, (ax, bars) = plt.subplots(1, 2, figsize=size, sharey=True,
                                       gridspec_kw={"width_ratios": [max(cols, 1), 3.5], "wspace": 0.05})  # fmt: skip
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), labels=[t.replace("\u2581", "\u2423") for t in src_tokens[:cols]], rotation=90)
    ax.set_yticks(range(rows), labels=[t.replace("\u2581", "\u2423") for t in tgt_tokens[:rows]])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    if copied is not None:
        shares = np.asarray(copied[:rows], dtype=float)
        bars.barh(range(len(shares)), shares, color="#e8870e", height=0.7)
        bars.set(xlim=(0, 1), xticks=[0, 0.5, 1], xlabel="copied")
        bars.tick_params(axis="y", left=False)
        for label, share in zip(ax.get_yticklabels(), shares):
            if share >= 0.5:
                label.set_color("#c05c00")
    fig.colorbar(im, ax=ax if copied is None else [ax, bars], fraction=0.046, pad=0.04)
    return _save(fig, path)


@_fonts
def plot_speech(
    frames: np.ndarray, weights: np.ndarray | None, tokens: list[str], path: str | Path, *,
    seconds_per_frame: float, seconds_per_position: float, title: str = "",
) -> Path:  # fmt: skip
    """A recording's log-mel spectrogram (frames, mels) above the alignment of the output tokens to
    time: row t is token t's attention over the listener positions, each position drawn over the
    span of frames it covers, so both panels share the time axis (seconds)."""
    frames = np.asarray(frames, dtype=float)
    seconds = frames.shape[0] * seconds_per_frame
    rows = 0 if weights is None else weights.shape[0]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(max(5.0, 2.2 * seconds + 2), 2.4 + 0.3 * rows + 1),
                                      gridspec_kw={"height_ratios": [2.4, max(1.0, 0.3 * rows)]})  # fmt: skip
    top.imshow(frames.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, frames.shape[1]))
    top.set_ylabel("mel band")
    if title:
        top.set_title(title, fontsize=9)
    if weights is not None and rows:
        weights = np.asarray(weights, dtype=float)
        extent = (0, weights.shape[1] * seconds_per_position, rows - 0.5, -0.5)
        bottom.imshow(
            weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest"
        )
        bottom.set_yticks(range(rows), labels=tokens[:rows])
        bottom.set_xlim(0, seconds)
    bottom.set_ylabel("output")
    bottom.set_xlabel("time (s)")
    return _save(fig, Path(path))


# keys of a validation record that are not scores of the model
_NOT_SCORES = {"event", "step", "epoch", "lr", "best", "improved", "train_minutes", "loss", "ppl"}


@_fonts
def plot_training(metrics_jsonl: str | Path, path: str | Path, *, metric: str | None = None) -> Path:
    """Training loss and validation scores from a run's metrics.jsonl; the right panel shows
    `metric`, by default the one the run selects models by (or, where that is the loss, the first
    score its validation records)."""
    train, valid = [], []
    for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("event") == "start" and metric is None:
            metric = rec["config"]["train"]["valid_metric"] if rec["config"]["train"]["valid_metric"] != "loss" else ""
        elif rec.get("event") == "train":
            train.append((rec["step"], rec["loss"]))
        elif rec.get("event") == "valid":
            if not metric:  # the task's default: the first score validation records
                metric = next(k for k, v in rec.items() if k not in _NOT_SCORES and isinstance(v, (int, float)))
            valid.append((rec["step"], rec["loss"], rec[metric]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if train:
        ax1.plot(*zip(*train), label="train")
    if valid:
        steps, vloss, em = zip(*valid)
        ax1.plot(steps, vloss, "o-", label="valid")
        ax2.plot(steps, em, "o-", color="tab:green")
    ax1.set(xlabel="step", ylabel="loss per unit", yscale="log")
    ax1.legend()
    label, top = {"bleu": ("valid BLEU (greedy)", None), "exact_match": ("valid exact match (%)", 100),
                  "accuracy": ("valid accuracy", 1), "macro_f1": ("valid macro-F1", 1),
                  "wer": ("valid WER", None), "cer": ("valid CER", None),
                  "exact": ("valid exact", 1)}[metric]  # fmt: skip
    ax2.set(xlabel="step", ylabel=label, ylim=(0, top))
    return _save(fig, path)


@_fonts
def plot_ablation(
    names: list[str], panels: list[tuple[str, list[float]]], path: str | Path, *, title: str = ""
) -> Path:
    """Bar charts of an ablation: one panel (title, a value per variant) per figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.38 * len(names) + 1.6), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(names))
    palette = {"luong": "#1f77b4", "bahdanau": "#ff7f0e", "attention": "#1f77b4"}  # no attention: grey
    colors = [palette.get(n.split("-")[0], "#999999") for n in names]
    for ax, (label, values) in zip(axes, panels):
        ax.barh(y, values, color=colors)
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {v:.3f}" if v < 1 else f" {v:,.1f}" if v < 100 else f" {v:,.0f}", va="center", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.margins(x=0.25)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
