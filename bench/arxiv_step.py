"""Where a training step of the arXiv-titles recipe goes: the recipe's model (configs/arxiv_titles.yaml)
on batches of its shape (64 abstracts of data.src_truncate pieces, titles of 16 pieces, its
vocabulary size), with the score, coverage and copying switched one at a time. For each variant:
the median time of the encoder alone (forward and backward), of the whole loss (forward and
backward) and of the optimizer, under the recipe's training precision (`precision: auto`).

    python bench/arxiv_step.py [--threads 1] [--reps 5]

Run it on an idle machine; prefix ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 for the AVX2-only
figures. Synthetic ids: the time of a step depends on the shapes, not on the words."""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from attnseq.config import load_config
from attnseq.fast.accelerate import accelerate
from attnseq.models.seq2seq import build_model
from attnseq.modules.copy import copy_map
from attnseq.runtime import autocast, resolve_precision
from attnseq.vocab import SPECIALS, Vocab

ROOT = Path(__file__).resolve().parents[1]
BATCH, TITLE, VOCAB = 64, 16, 7952


def timed(fn, reps: int) -> float:
    fn()  # warm-up: first calls pack weights and pick kernels
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "configs" / "arxiv_titles.yaml")
    precision = resolve_precision(cfg.train.precision, stage="train")
    vocab = Vocab([*SPECIALS, *(f"w{i}" for i in range(VOCAB - len(SPECIALS)))])
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(len(SPECIALS), VOCAB, (BATCH, cfg.data.src_truncate), generator=gen)
    lengths = torch.full((BATCH,), cfg.data.src_truncate)
    tgt = torch.randint(len(SPECIALS), VOCAB, (BATCH, TITLE + 1), generator=gen)
    variants = {
        "recipe": cfg.model,
        f"coverage {'off' if cfg.model.coverage else 'on'}": replace(cfg.model, coverage=not cfg.model.coverage),
        "copy off": replace(cfg.model, copy=False),
        "general score, no coverage": replace(cfg.model, attention="general", coverage=False),
    }
    print(f"{torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s), training precision {precision}; "
          f"batch {BATCH} x {cfg.data.src_truncate} pieces -> {TITLE} title pieces, vocabulary {VOCAB}")  # fmt: skip
    print(f"{'variant':<28}{'coverage':>9}{'encoder':>10}{'loss f+b':>10}{'optimizer':>10}{'step':>9}  encoder share")
    for m in variants.values():  # a first pass warms the allocator and the kernels for all of them
        parts(m, src, lengths, tgt, vocab, lr=cfg.train.lr, precision=precision, reps=1)
    for name, m in variants.items():
        enc, full, opt = parts(m, src, lengths, tgt, vocab, lr=cfg.train.lr, precision=precision, reps=args.reps)
        step = full + opt
        print(f"{name:<28}{str(m.coverage):>9}{enc:>8.0f}ms{full:>8.0f}ms{opt:>8.0f}ms{step:>7.0f}ms  {enc / step:.0%}")


def parts(m, src, lengths, tgt, vocab, *, lr: float, precision: str, reps: int) -> tuple[float, float, float]:
    """Median ms of the encoder (forward and backward), the loss (forward and backward) and an
    optimizer update of the model `m` describes."""
    torch.manual_seed(0)
    model = accelerate(build_model(m, src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, copy_map=copy_map(vocab, vocab)))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    device = torch.device("cpu")

    def encoder():
        with autocast(device, precision):
            out = model.encode(src, lengths).outputs.float().sum()
        out.backward()
        model.zero_grad(set_to_none=True)

    def loss():
        with autocast(device, precision):
            value = model.loss(src, lengths, tgt[:, :-1], tgt[:, 1:], pad_id=0, label_smoothing=0.1)
        value.backward()

    def update():
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    return timed(encoder, reps), timed(loss, reps), timed(update, reps)


if __name__ == "__main__":
    main()
