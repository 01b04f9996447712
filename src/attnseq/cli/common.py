"""What the `attnseq` commands share: notices on stderr, reading input lines, loading a model with the
command line's search options, and training with a report of it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from attnseq.errors import AttnseqError


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what is true of the work it stopped."""


# Lines for stderr that say how a command runs; shown before its first output (`show_notices`),
# dropped when it fails, so a mistake is the one line of its error
NOTICES: list[str] = []


def show_notices() -> None:
    for line in NOTICES:
        print(line, file=sys.stderr, flush=True)
    NOTICES.clear()


def device_summary(device: str) -> str:
    from attnseq import runtime

    return runtime.capabilities(device).summary()


def read_sentences(path: str | None) -> list[str]:
    """Every line of --input `path` (or of stdin), read to the end."""
    from attnseq.cli.lines import batches

    return [line for batch in batches(path, 1 << 30) for line in batch]


def load_predictor(args, *, expect: type | None = None, what: str = ""):
    """The predictor of --model (of class `expect`, if given) with the command line's search options
    applied to its config and checked like the config itself; an option its task does not take is
    refused with one line. Returns (predictor, task)."""
    from attnseq.config import validate
    from attnseq.predict import attach_lm, load_with_task, set_decode

    predictor, task = load_with_task(args.model, device=args.device, expect=expect, what=what)
    set_decode(predictor, task, getattr(args, "overrides", None) or [], where=args.command)
    from attnseq.translate import SEARCH_KEYS

    # the command line's search options, named as the decode keys they set (`parser.add_search`, --n-best,
    # --ctc-weight); a task takes those in its `decode_options` and refuses the others
    flags = (*SEARCH_KEYS, "ctc_weight")
    given = {o: getattr(args, o) for o in flags if getattr(args, o, None) is not None}
    refused = [o for o in given if o not in task.decode_options
               and not (o == "precision" and given[o] in ("auto", task.predicts_in))]  # fmt: skip
    if refused:
        flags = ", ".join("--" + o.replace("_", "-") for o in refused)
        raise AttnseqError(f"{args.command}: {flags}: not for {task.no_search or f'a {task.name} model'}; "
                           "leave it out")  # fmt: skip
    dec = predictor.config.decode
    for option, value in given.items():
        if option in task.decode_options:
            setattr(dec, option, value)
    if "n_best" in task.decode_options and "n_best" not in given:
        dec.n_best = min(dec.n_best, dec.beam_size)
    validate(predictor.config, "command line", {f"decode.{k}": "command line" for k in vars(dec)})
    if "precision" in task.decode_options:
        precision = predictor.precision  # a precision this device cannot run stops here, before any input is read
        if dec.precision == "auto":
            NOTICES.append(f"attnseq: decoding in {precision} (auto on {device_summary(args.device)})")
    if "lm" in given and (predictor.lm is None or predictor.lm[0] != dec.lm):  # not loaded by --set decode.lm
        attach_lm(predictor)
    if task.shortlists:
        predictor.check_shortlist()  # so does a shortlist the model does not have
        if dec.shortlist == "auto" and predictor.shortlist_size:
            size = predictor.shortlist_size
            NOTICES.append(f"attnseq: decoding over a lexical shortlist of {size} target words per source word "
                           "(decode.shortlist auto; --shortlist 0 for the whole vocabulary)")  # fmt: skip
    return predictor, task


def held_out(run: Path) -> None:
    """After training: the best model's test report, where its task makes one after training and
    there is a test split, printed and kept in RUN/test_report.json."""
    from attnseq.fileio import atomic_write_text
    from attnseq.predict import load_with_task, task_of

    if not task_of(run).reports_after_training:
        return
    predictor, task = load_with_task(run)  # with the language model of decode.lm, where the config names one
    report = task.test_report(predictor)
    if report is None:
        return
    atomic_write_text(Path(run) / "test_report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print("held-out: " + "\n".join(task.report_lines(report, predictor.config)))


def train_and_report(trainer) -> None:
    """Train, printing the banner, the precision, each validation and how it stopped."""
    from attnseq.trainer import count_parameters

    data, task = trainer.data, trainer.task
    print(
        f"training {task.describe_model(trainer.cfg)}, {count_parameters(trainer.model):,} parameters, "
        f"{len(data.train):,} {task.examples}"
        + (f" ({data.train.skipped:,} skipped: too long or empty after tokenizing)" if data.train.skipped else "")
        + f", {data.assets.describe()} -> {trainer.out}",
        flush=True,
    )
    resolved = trainer.resolved()
    print(
        f"precision: training {resolved['train.precision']}, decoding {resolved['decode.precision']} "
        f"({resolved['device']})",
        flush=True,
    )
    trainer.on_validate = lambda r: print(
        f"epoch {r['epoch']:5.2f}  step {r['step']:>6}  valid loss {r['loss']:.4f}  "
        + task.summary(r)
        + f"  ({r['train_minutes']:.1f} min)"
        + ("  *" if r["improved"] else ""),
        flush=True,
    )
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        step, saved = trainer.progress.step, trainer.run.saved_step
        if trainer.run.discard_if_unsaved():
            what = f"before the first save: nothing was kept and {trainer.out} was removed"
        elif saved is None:
            what = "before the first save: nothing was saved"
        else:
            what = f"the last save is at step {saved}: continue from it with --resume"
        raise Interrupted(f"at step {step}; {what}") from None
    best = "none" if result.best is None else f"{result.best:.4g}"
    print(
        f"stopped: {result.stopped_because}; best valid {trainer.valid_metric} = {best} "
        f"(marked *); model in {trainer.out / 'best'}",
        flush=True,
    )
