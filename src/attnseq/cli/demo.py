"""`attnseq demo` and `attnseq dates`: the built-in dates corpus, trained on and reported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from attnseq.cli.common import train_and_report
from attnseq.errors import AttnseqError

DEMO_MARKER = ".attnseq-demo"  # marks a run directory that `attnseq demo` may replace
DEMO_SENTENCES = ("the 3rd of March 2021", "Mar 3, '21", "Wednesday, 3 March 2021", "03.03.2021")


def cmd_dates(args) -> int:
    from attnseq.tasks.dates import write_corpus

    for split, path in write_corpus(args.out, seed=args.seed).items():
        print(f"{split}: {path}")
    return 0


def cmd_demo(args) -> int:
    from attnseq.config import load_config
    from attnseq.metrics import exact_match
    from attnseq.plotting import plot_attention, plot_training
    from attnseq.readers import read_tsv
    from attnseq.tasks.dates import corpus_paths, write_corpus
    from attnseq.tasks.translation import Translator
    from attnseq.trainer import Trainer

    paths = corpus_paths(args.data_dir)
    overrides = [f"data.{split}={path}" for split, path in paths.items()]
    cfg = load_config(args.config, overrides + args.overrides)
    out = Path(args.out)
    marker = out / DEMO_MARKER
    if out.exists() and not marker.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AttnseqError(f"{out}: exists and is not a demo run; choose another --out (nothing was changed)")
    write_corpus(args.data_dir)
    trainer = _replacing_demo_run(out, lambda: Trainer(cfg, out))
    print(f"dates corpus in {args.data_dir} (train / valid / test dates never overlap)")
    (out / DEMO_MARKER).write_text("a run written by `attnseq demo`, which replaces it on its next run\n")
    train_and_report(trainer)

    translator = Translator.from_pretrained(out / "best")
    test = read_tsv(cfg.data.test)
    results = translator.translate([s for s, _ in test])
    hyps, refs = [tr.text for tr in results], [translator.normalize_reference(ref) for _, ref in test]
    plot_training(out / "metrics.jsonl", out / "training.png")
    if translator.model.has_attention:
        for k, tr in enumerate(results[:3], start=1):
            title = f"{tr.source} -> {tr.text}"
            plot_attention(tr.attention, tr.src_tokens, tr.tokens, out / f"attention_{k}.png", title=title)
        print(f"attention heatmaps: {out}/attention_1.png .. attention_3.png; curves: {out}/training.png")
    else:
        print(
            f"no attention heatmaps: model.decoder = {cfg.model.decoder} has no attention; curves: {out}/training.png"
        )
    wrong = [(tr.source, hyp, ref) for tr, hyp, ref in zip(results, hyps, refs) if hyp != ref]
    for src, hyp, ref in wrong[:5]:
        print(f"  miss: {src!r} -> {hyp} (expected {ref})")
    for tr in translator.translate(list(DEMO_SENTENCES)):
        print(f"  {tr.source!r:>28} -> {tr.text}")
    print(f"held-out exact match: {exact_match(hyps, refs):.1f}%")
    return 0


def _replacing_demo_run(out: Path, make_trainer):
    """Set the previous demo run aside, build the trainer (which checks everything), and only then
    delete the old run; if building fails, put the old run back."""
    aside = out.with_name(out.name + ".previous")
    if (out / DEMO_MARKER).exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(out, aside)
    try:
        trainer = make_trainer()
    except BaseException:
        if aside.exists():
            shutil.rmtree(out, ignore_errors=True)
            os.replace(aside, out)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return trainer
