"""The `attnseq` command: train | translate | classify | transcribe | evaluate | ablate | plot | demo | dates."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import typing
from pathlib import Path

from attnseq.config import DecodePrecision
from attnseq.errors import AttnseqError
from attnseq.runtime import tune_process
from attnseq.serve.settings import Batching, Limits

DEMO_MARKER = ".attnseq-demo"  # marks a run directory that `attnseq demo` may replace


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what is true of the work it stopped."""


DEMO_SENTENCES = ("the 3rd of March 2021", "Mar 3, '21", "Wednesday, 3 March 2021", "03.03.2021")


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.attention=concat (repeatable)",
    )


# command-line options that set the decode section key of the same name (`_add_search`, --n-best)
DECODE_OPTIONS = ("beam_size", "length_penalty", "alpha", "batch_size", "precision", "n_best", "shortlist")


def _add_search(p: argparse.ArgumentParser) -> None:
    """Search options; each defaults to the model's config (its `decode` section)."""
    p.add_argument("--beam-size", type=int, help="beam width (1 = greedy; default: the model's decode.beam_size)")
    p.add_argument("--length-penalty", choices=["none", "avg", "gnmt"], help="how beam search ranks lengths")
    p.add_argument("--alpha", type=float, help="GNMT length penalty exponent")
    p.add_argument("--batch-size", type=int, help="sentences decoded together")
    p.add_argument(
        "--precision",
        choices=typing.get_args(DecodePrecision),
        help="auto: the fastest this device runs natively (default: the model's decode.precision); bf16: decode "
        "with a bfloat16 copy of the model; int8: a copy with an int8 output layer (CPU)",
    )
    p.add_argument(
        "--shortlist",
        type=_shortlist_size,
        metavar="K",
        help="compute the output layer only for the K target words per source word that co-occur with it most in "
        "training, plus the frequent ones (text models; faster, 0 = the whole vocabulary; auto: 10 for word "
        "vocabularies of 4,000 words or more on a CPU; default: the model's decode.shortlist)",
    )
    p.add_argument("--device", default="cpu")


def _shortlist_size(text: str):
    """--shortlist: a whole number or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def _load_translator(args, cls=None):
    """A Translator (or another `Seq2SeqPredictor` class `cls`) from --model with the command line's
    search options applied to its config (checked like the config itself)."""
    from attnseq.config import validate
    from attnseq.translate import Translator

    translator = (cls or Translator).from_pretrained(args.model, device=args.device)
    dec = translator.config.decode
    for option in DECODE_OPTIONS:
        value = getattr(args, option, None)
        if value is not None:
            setattr(dec, option, value)
    if getattr(args, "ctc_weight", None) is not None:
        if not hasattr(dec, "ctc_weight"):
            raise AttnseqError(f"--ctc-weight: {args.model} is a {translator.config.task} model; joint CTC "
                               "decoding is for speech models trained with model.ctc_weight > 0")  # fmt: skip
        dec.ctc_weight = args.ctc_weight
    if getattr(args, "n_best", None) is None:
        dec.n_best = min(dec.n_best, dec.beam_size)
    validate(translator.config, "command line", {f"decode.{k}": "command line" for k in vars(dec)})
    precision = translator.precision  # a precision this device cannot run stops here, before any input is read
    if isinstance(translator, Translator):
        translator.check_shortlist()  # so does a shortlist the model does not have
    if dec.precision == "auto":
        _NOTICES.append(f"attnseq: decoding in {precision} (auto on {_device_summary(args.device)})")
    if isinstance(translator, Translator) and dec.shortlist == "auto" and translator.shortlist_size:
        _NOTICES.append(f"attnseq: decoding over a lexical shortlist of {translator.shortlist_size} target words "
                        "per source word (decode.shortlist auto; --shortlist 0 for the whole vocabulary)")  # fmt: skip
    return translator


# Lines for stderr that say how a command runs; shown before its first output (`_show_notices`),
# dropped when it fails, so a mistake is the one line of its error
_NOTICES: list[str] = []


def _show_notices() -> None:
    for line in _NOTICES:
        print(line, file=sys.stderr, flush=True)
    _NOTICES.clear()


def _device_summary(device: str) -> str:
    from attnseq import runtime

    return runtime.capabilities(device).summary()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnseq", description="Sequence-to-sequence models with attention.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", required=True, help="run directory (best/, last/, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    _add_set(p)

    p = sub.add_parser("translate", help="translate lines from stdin or --input to stdout")
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--input", help="file with one sentence per line, plain or .gz (default: stdin)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: text, score, tokens, the attention matrix and the n-best list",
    )
    _add_search(p)
    p.add_argument("--n-best", type=int, help="hypotheses per sentence (plain output: 'LINE ||| TEXT ||| SCORE')")

    p = sub.add_parser("classify", help="classify lines from stdin or --input: LABEL<TAB>PROBABILITY per line")
    p.add_argument("--model", required=True, help="model directory or training run directory of a classifier")
    p.add_argument("--input", help="file with one text per line, plain or .gz (default: stdin)")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line: label, class probabilities, tokens, weights"
    )
    p.add_argument("--explain", action="store_true", help="also show each token with its pooling weight")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="--explain: shade tokens by weight (auto: on a terminal)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="texts classified together")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("transcribe", help="transcribe audio files with a speech model: FILE<TAB>TEXT per file")
    p.add_argument("--model", required=True, help="model directory or training run directory of a speech model")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ...; resampled to the model's rate)")
    p.add_argument(
        "--json", action="store_true", help="one JSON object per file: text, tokens, scores, attention over time"
    )
    _add_search(p)
    p.add_argument("--n-best", type=int, help="hypotheses per file (in --json's alternatives)")
    p.add_argument("--ctc-weight", type=float,
                   help="speech models with a CTC layer: joint CTC / attention decoding weight in [0, 1] "
                        "(default: the model's decode.ctc_weight)")  # fmt: skip

    p = sub.add_parser("chat", help="talk to a chatbot model at a prompt (piped stdin: one reply per line)")
    p.add_argument("--model", required=True, help="model directory or training run directory of a chatbot")
    p.add_argument("--input", help="questions, one per line, instead of the prompt (like piped stdin)")
    p.add_argument("--show-attention", action="store_true",
                   help="under each reply, the question word each reply word attended to most")  # fmt: skip
    p.add_argument("--json", action="store_true", help="batch mode: one JSON object per reply")
    p.add_argument("--sample", action="store_true", help="draw replies from the model instead of beam search")
    p.add_argument("--temperature", type=float, default=1.0, help="--sample: below 1 surer, above 1 wilder")
    p.add_argument("--top-k", type=int, default=0, help="--sample: among the k most probable tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="--sample: within the top tokens of this probability")
    p.add_argument("--seed", type=int, help="--sample: repeatable draws")
    _add_search(p)

    p = sub.add_parser("evaluate", help="score a model on its config's test split, a TSV file or --src / --ref files")
    p.add_argument("--model", required=True)
    p.add_argument("--data", help="TSV file (source TAB reference; speech: a manifest with file and text columns)")
    p.add_argument("--src", help="source file, one sentence per line (plain or .gz)")
    p.add_argument("--ref", help="reference file, line-aligned with --src")
    p.add_argument("--json", action="store_true", help="print one JSON line (keys bleu, chrf, bleu_lc_tok, ...)")
    p.add_argument("--output", help="also write the translations to this file, one per line")
    _add_search(p)
    p.add_argument("--ctc-weight", type=float,
                   help="speech models with a CTC layer: joint CTC / attention decoding weight in [0, 1] "
                        "(default: the model's decode.ctc_weight)")  # fmt: skip

    p = sub.add_parser(
        "ablate", help="train every decoder wiring x attention (and the baselines) under one budget; table + chart"
    )
    p.add_argument("config", help="YAML config; its budget (train.max_minutes / max_steps) applies to every variant")
    p.add_argument("--out", default="runs/ablation", help="directory for the runs, ablation.md/.png/.json")
    p.add_argument("--only", help="comma-separated variants, e.g. luong-general,bahdanau-concat,init")
    _add_set(p)

    p = sub.add_parser("plot", help="write an attention heatmap (PNG) of one sentence (speech: of one audio file)")
    p.add_argument("--model", required=True)
    p.add_argument("sentence", help="the sentence; for a speech model the audio file")
    p.add_argument("--out", default="attention.png", help="PNG path (default: attention.png)")

    p = sub.add_parser("demo", help="generate the dates corpus, train on it, report held-out accuracy")
    p.add_argument("config", nargs="?", default="configs/dates.yaml")
    p.add_argument("--out", default="runs/demo", help="run directory (replaced on every demo run)")
    p.add_argument("--data-dir", default="data/dates", help="where the generated corpus is written")
    _add_set(p)

    p = sub.add_parser("data", help="list the public data sets the recipes use, or fetch one (checksums verified)")
    p.add_argument("action", choices=["list", "get"])
    p.add_argument("name", nargs="?", help="data set to fetch (see `attnseq data list`)")
    p.add_argument("--dir", help="data directory (default: $ATTNSEQ_DATA, else ./data); the set goes to DIR/NAME")
    p.add_argument("--mirror", default="", help="fetch each file from MIRROR/<its official file name> instead")

    p = sub.add_parser("serve", help="serve models over HTTP (JSON API with micro-batching, attention page at /)")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="model or run directory to serve, as NAME=DIR or DIR (repeatable; the first is the default)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per model (default: the machine's cores shared out among the models)",
    )
    p.add_argument("--no-batching", action="store_true", help="decode each request on its own")
    p.add_argument(
        "--max-batch",
        type=int,
        default=Batching.max_batch,
        help="most inputs decoded as one batch (default %(default)s)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=Batching.max_wait_ms,
        help="how long a request waits for others to batch with (default %(default)s; no wait when none is coming)",
    )
    p.add_argument("--max-chars", type=int, default=Limits.max_chars, help="characters per input (default %(default)s)")
    p.add_argument("--max-inputs", type=int, default=Limits.max_inputs, help="inputs per request (default %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes,
                   help="request body size in bytes (default %(default)s)")  # fmt: skip
    p.add_argument("--max-queue", type=int, default=Limits.max_queue,
                   help="inputs waiting per model before 429 (default %(default)s)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=Limits.timeout_s,
                   help="seconds a request may take, queueing included (default %(default)s)")  # fmt: skip
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")

    p = sub.add_parser("dates", help="write the date-normalization corpus (train/valid/test TSV)")
    p.add_argument("--out", default="data/dates")
    p.add_argument("--seed", type=int, default=0)
    return parser


def cmd_train(args) -> int:
    from attnseq.config import load_config
    from attnseq.distributed import Group
    from attnseq.train import Trainer

    cfg = load_config(args.config, args.overrides)
    group = Group.from_env(cfg.train.device)  # torchrun's processes train together; alone, a group of one
    finished = False
    try:
        out = _fit(Trainer(cfg, args.out, resume=args.resume, group=group))
        finished = True
    finally:
        group.close(together=finished)  # the trainer let go of its DDP wrapper when fit ended
    if not group.main:
        return 0  # rank 0 reports
    if cfg.task == "classify":
        _classifier_held_out(out)
    if cfg.task == "speech":
        _speech_held_out(out)
    if cfg.task in ("chat", "headline"):
        _records_held_out(out)
    return 0


def _fit(trainer) -> Path:
    """Train (rank 0 prints as it goes) and return the run directory; the trainer ends with the call,
    so the group can close after it."""
    if trainer.group.main:
        _train_and_report(trainer)
    else:
        trainer.fit()
    return trainer.out


def _speech_held_out(run: Path) -> None:
    """After training a speech model: its test-split figures, printed and kept in RUN/test_report.json."""
    from attnseq.fileio import atomic_write_text
    from attnseq.tasks.speech import Transcriber, held_out_report

    transcriber = Transcriber.from_pretrained(run)
    d = transcriber.config.data
    if d.corpus == "tsv" and not d.test:
        return
    report = held_out_report(transcriber)
    atomic_write_text(Path(run) / "test_report.json", json.dumps(report, indent=1) + "\n")
    print("held-out: " + "\n".join(_speech_lines(report)))


def _classifier_held_out(run: Path) -> None:
    """After training a classifier: its test-split figures beside the TF-IDF + logistic regression
    baseline fitted on the same split, printed and kept in RUN/test_report.json."""
    import attnseq
    from attnseq.fileio import atomic_write_text
    from attnseq.tasks.classify import held_out_report

    classifier = attnseq.load(run)
    if not classifier.config.data.test and not (classifier.config.data.files and classifier.config.data.split[2] > 0):
        return
    report = held_out_report(classifier, classifier.config)
    atomic_write_text(Path(run) / "test_report.json", json.dumps(report, indent=1) + "\n")
    for line in _classifier_lines(report, classifier.config):
        print(line)


def _classifier_lines(report: dict, cfg) -> list[str]:
    from attnseq.tasks.classify import ClassifyTask

    model = ClassifyTask().describe_model(cfg)
    base = report["baseline"]
    if "skipped" in base:
        return [f"held-out: {model}, {report['n']} texts: accuracy "
                f"{100 * report['accuracy']:.1f}%, macro-F1 {100 * report['macro_f1']:.1f}",
                f"TF-IDF baseline skipped: {base['skipped']}"]  # fmt: skip

    def row(name: str, r: dict, b: dict) -> str:
        return (f"  {name:<10} {r['n']:>6}  {100 * r['accuracy']:6.1f}%  {100 * r['macro_f1']:6.1f}   "
                f"{100 * b['accuracy']:6.1f}%  {100 * b['macro_f1']:6.1f}")  # fmt: skip

    lines = [f"held-out: {model} | TF-IDF + logistic regression (C={base['C']:g}, "
             f"{base['features']}, same split)",
             f"  {'':<10} {'texts':>6}  {'acc':>7}  {'mF1':>6}   {'acc':>7}  {'mF1':>6}",
             row("all", report, base)]  # fmt: skip
    for domain, r in report.get("domains", {}).items():
        lines.append(row(domain, r, base["domains"][domain]))
    return lines


def _train_and_report(trainer) -> None:
    from attnseq.train import count_parameters

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
        step, saved = trainer.progress.step, trainer.saved_step
        if trainer.discard_if_unsaved():
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


def _read_sentences(path: str | None) -> list[str]:
    from attnseq.data import decode_lines, read_lines

    if path is None:  # the same checks as a file's lines: bytes that are not UTF-8 name their line
        stdin = getattr(sys.stdin, "buffer", None)  # a text stream put in its place (tests) has none
        return [line for _, line in decode_lines(stdin or (t.encode() for t in sys.stdin), "stdin")]
    return [line for _, line in read_lines(path)]


def cmd_translate(args) -> int:
    translator = _load_translator(args)
    n_best = translator.config.decode.n_best
    translations = translator.translate(_read_sentences(args.input))
    _show_notices()
    for line, tr in enumerate(translations, start=1):
        if args.json:
            print(json.dumps(tr.to_dict(), ensure_ascii=False))
        elif n_best > 1:
            for hyp in tr.n_best:
                print(f"{line} ||| {hyp.text} ||| {hyp.rank_score:.4f}")
        else:
            print(tr.text)
    return 0


def cmd_evaluate(args) -> int:
    from attnseq.checkpoint import model_task

    task = model_task(args.model)
    if task == "classify":
        return _evaluate_classifier(args)
    if task == "speech":
        return _evaluate_speech(args)
    if task in ("chat", "headline"):
        return _evaluate_records(args)
    from attnseq.data import read_parallel, read_tsv
    from attnseq.fileio import atomic_write_text

    if args.data and not (args.src or args.ref):
        pairs = read_tsv(args.data)
    elif args.src and args.ref and not args.data:
        pairs = read_parallel(args.src, args.ref)
    else:
        raise AttnseqError("evaluate: give either --data FILE.tsv or both --src FILE and --ref FILE")
    translator = _load_translator(args)
    hyps, scores = translator.evaluate([s for s, _ in pairs], [r for _, r in pairs])
    seconds = scores["seconds"]
    dec = translator.config.decode
    scores["beam_size"] = dec.beam_size
    scores["precision"] = translator.precision
    scores["shortlist"] = translator.shortlist_size  # target words per source word; 0: the whole vocabulary
    if args.output:
        atomic_write_text(Path(args.output), "".join(h + "\n" for h in hyps))
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"BLEU {scores['bleu']:.2f}  ({scores['bleu_signature']})")
        print(f"chrF {scores['chrf']:.2f}  ({scores['chrf_signature']})")
        print(f"BLEU lowercased, tokenized {scores['bleu_lc_tok']:.2f}  ({scores['bleu_lc_tok_signature']})")
        print(
            f"exact match {scores['exact_match']:.1f}%  sentences {scores['sentences']}  beam {dec.beam_size}  "
            f"{scores['precision']}  "
            f"{seconds:.1f} s ({scores['sent_s']:.0f} sentences/s)"
        )
    return 0


def _evaluate_classifier(args) -> int:
    from attnseq.contracts import check_count
    from attnseq.tasks.classify import Classifier, held_out_report, read_labelled

    if args.src or args.ref:
        raise AttnseqError(
            "evaluate: a classifier is scored on --data FILE (TEXT<TAB>LABEL) or its config's test split"
        )
    # a classifier takes --batch-size and the precision it predicts in; every other search option is refused
    ignored = [o for o in (*DECODE_OPTIONS, "ctc_weight") if o not in ("batch_size", "precision")
               and getattr(args, o, None) is not None]  # fmt: skip
    if args.precision not in (None, "auto", Classifier.precision):
        ignored.append("precision")
    if ignored:
        flags = ", ".join("--" + o.replace("_", "-") for o in ignored)
        raise AttnseqError(f"evaluate: {flags}: not for a classifier, which reads each text in one float32 "
                           "forward pass (no search); leave it out")  # fmt: skip
    classifier = Classifier.from_pretrained(args.model, device=args.device)
    if args.batch_size is not None:
        classifier.config.decode.batch_size = check_count("--batch-size", args.batch_size)
    examples = read_labelled(args.data, classifier.config.data) if args.data else None
    predicted: list[str] = []
    report = held_out_report(classifier, classifier.config, examples=examples, predicted=predicted)
    report["precision"] = classifier.precision
    if args.output:
        from attnseq.fileio import atomic_write_text

        atomic_write_text(Path(args.output), "".join(label + "\n" for label in predicted))
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(_classifier_lines(report, classifier.config)))
    return 0


def _evaluate_records(args) -> int:
    """task chat / headline: the test split (or --data, a file in the config's format) beside the
    task's baseline."""
    from attnseq.data import read_records
    from attnseq.fileio import atomic_write_text
    from attnseq.tasks import get_task

    if args.src or args.ref:
        raise AttnseqError("evaluate: this model is scored on its config's test split or --data FILE (its format)")
    predictor = _load_translator(args)
    task = get_task(predictor.config.task)
    pairs = None
    if args.data:
        pairs = [(r.src, r.tgt) for r in read_records(args.data, predictor.config.data)[0]]
    outputs: list[str] = []
    report = task.held_out_report(predictor, pairs=pairs, outputs=outputs)
    if args.output:
        atomic_write_text(Path(args.output), "".join(o + "\n" for o in outputs))
    print(json.dumps(report, ensure_ascii=False) if args.json else "\n".join(_records_lines(report, task.name)))
    return 0


def _records_lines(report: dict, task: str) -> list[str]:
    """A chat / headline report as a small table: the model and its baseline."""
    base = report["baseline"]
    if task == "chat":
        keys = (("bleu", "BLEU"), ("chrf", "chrF"), ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"))
    else:
        keys = (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"))
    lines = [f"{report['n']} test pairs; beam {report['beam_size']}, {report['precision']}",
             f"  {'':<10}" + "".join(f"{label:>12}" for _, label in keys)]  # fmt: skip
    for name, r in (("model", report), ("baseline", base)):
        lines.append(f"  {name:<10}" + "".join(f"{r[k]:>12.{3 if 'distinct' in k else 2}f}" for k, _ in keys))
    lines.append(f"  baseline: {base['name']}")
    if "bleu_signature" in report:
        lines.append(f"  BLEU: {report['bleu_signature']}; chrF: {report['chrf_signature']}")
    else:
        lines.append(f"  ROUGE: {report['rouge_settings']}")
    for ex in report["examples"]:
        lines += [f"  > {ex['input']}", f"    reference: {ex['reference']}", f"    model:     {ex['output']}",
                  f"    baseline:  {ex['baseline']}"]  # fmt: skip
    return lines


def _records_held_out(run: Path) -> None:
    """After training a chat / headline model: its test-split figures beside the baseline, printed
    and kept in RUN/test_report.json."""
    import attnseq
    from attnseq.fileio import atomic_write_text
    from attnseq.tasks import get_task

    predictor = attnseq.load(run)
    task = get_task(predictor.config.task)
    if not task.pairs(predictor.config, "test"):
        return
    report = task.held_out_report(predictor)
    atomic_write_text(Path(run) / "test_report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print("held-out: " + "\n".join(_records_lines(report, task.name)))


def _evaluate_speech(args) -> int:
    from attnseq.tasks.speech import Transcriber, held_out_report, tsv_corpus

    if args.src or args.ref:
        raise AttnseqError("evaluate: a speech model is scored on its config's test split or --data MANIFEST")
    transcriber = _load_translator(args, Transcriber)
    utterances = None
    if args.data:
        import dataclasses

        d = dataclasses.replace(transcriber.config.data, test=args.data, audio_dir="")
        utterances = tsv_corpus(d, "test")
    found: list = []
    report = held_out_report(transcriber, utterances=utterances, predictions=found)
    report["beam_size"] = transcriber.config.decode.beam_size
    report["precision"] = transcriber.precision
    if args.output:
        from attnseq.fileio import atomic_write_text

        atomic_write_text(Path(args.output), "".join(f"{p.input}\t{p.output}\n" for p in found))
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(_speech_lines(report)))
    return 0


def _speech_lines(report: dict) -> list[str]:
    lines = [
        f"WER {100 * report['wer']:.2f}% ({report['errors']} errors in {report['words']} words)  "
        f"CER {100 * report['cer']:.2f}%  exact {100 * report['exact']:.1f}% of {report['n']} recordings"
    ]
    if "isolated" in report:
        iso = report["isolated"]
        lines.append(f"isolated test clips: accuracy {100 * iso['accuracy']:.1f}% of {iso['n']} "
                     f"(speakers: {report['speaker']})")  # fmt: skip
    return lines


def cmd_chat(args) -> int:
    from attnseq import chat
    from attnseq.tasks.chatbot import Chatbot

    bot = _load_translator(args, Chatbot)
    _show_notices()
    if args.input is None and sys.stdin.isatty():
        return chat.interactive(bot, args)
    chat.batch(bot, args, _read_sentences(args.input))
    return 0


def cmd_transcribe(args) -> int:
    from attnseq.tasks.speech import Transcriber

    transcriber = _load_translator(args, Transcriber)
    for p in transcriber.transcribe(args.audio):
        print(json.dumps(p.to_dict(), ensure_ascii=False) if args.json else f"{p.input}\t{p.output}")
    return 0


def cmd_classify(args) -> int:
    from attnseq.tasks.classify import Classifier

    classifier = Classifier.from_pretrained(args.model, device=args.device)
    texts = _read_sentences(args.input)
    colour = args.explain and (args.color == "always" or (args.color == "auto" and sys.stdout.isatty()))
    for p in classifier.predict(texts, batch_size=args.batch_size):
        if not p.input_tokens and not args.json:
            print()  # an empty line in, an empty line out: output stays line-aligned
        elif args.json:
            record = p.to_dict()
            record["probabilities"] = {a.output: round(a.score, 6) for a in p.alternatives}
            record.pop("alternatives", None)
            print(json.dumps(record, ensure_ascii=False))
        elif args.explain:
            print(f"{p.output}\t{p.score:.4f}\t{_explain(p, colour=colour)}")
        else:
            print(f"{p.output}\t{p.score:.4f}")
    return 0


def _explain(p, *, colour: bool) -> str:
    """The tokens with their pooling weights: on a terminal each token's background is shaded by
    its weight (relative to the text's largest), else `token(0.12)`."""
    if p.attention is None:
        return " ".join(p.input_tokens) + "  (this pooling has no weights)"
    weights = p.attention[0]
    if not colour:
        return " ".join(f"{t}({w:.2f})" for t, w in zip(p.input_tokens, weights))
    top = max(float(weights.max()), 1e-9)
    shades = (236, 238, 240, 94, 130, 166, 202, 208, 214, 220)  # grey (little weight) -> amber (most)
    cells = []
    for t, w in zip(p.input_tokens, weights):
        shade = shades[min(int(w / top * len(shades)), len(shades) - 1)]
        cells.append(f"\x1b[48;5;{shade}m\x1b[38;5;231m{t}\x1b[0m")
    return " ".join(cells)


def cmd_ablate(args) -> int:
    from attnseq.ablate import ablate, ablate_classifier
    from attnseq.config import load_config

    only = [v.strip() for v in args.only.split(",") if v.strip()] if args.only else None
    run = ablate_classifier if load_config(args.config, args.overrides).task == "classify" else ablate
    run(args.config, args.out, args.overrides, only=only, log=lambda m: print(m, flush=True))
    out = Path(args.out)
    print((out / "ablation.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.png'}, {out / 'ablation.json'}")
    return 0


def cmd_plot(args) -> int:
    from attnseq.checkpoint import model_task
    from attnseq.plotting import plot_attention, plot_pooling
    from attnseq.translate import Translator

    if model_task(args.model) == "classify":
        from attnseq.tasks.classify import Classifier

        classifier = Classifier.from_pretrained(args.model)
        p = classifier.predict([args.sentence])[0]
        if p.attention is None:
            raise AttnseqError(
                f"{args.model}: model.pooling = {classifier.config.model.pooling} has no weights to plot; "
                "train with model.pooling: attention (or mean)"
            )
        path = plot_pooling(p.attention, p.input_tokens, args.out, title=f"{p.output} ({p.score:.2f}): {args.sentence}")
        print(f"{p.output}\t{p.score:.4f}\nwrote {path}")
        return 0

    if model_task(args.model) == "speech":
        from attnseq.audio import read_wav
        from attnseq.plotting import plot_speech
        from attnseq.tasks.speech import Transcriber

        transcriber = Transcriber.from_pretrained(args.model)
        wave = read_wav(args.sentence, transcriber.config.data.sample_rate)  # read once: transcribed and drawn
        p = transcriber.transcribe([wave], names=[args.sentence])[0]
        frames = transcriber.featurizer.raw(wave)
        path = plot_speech(frames.numpy(), p.attention, p.output_tokens, args.out,
                           seconds_per_frame=transcriber.featurizer.frontend.seconds_per_frame,
                           seconds_per_position=transcriber.seconds_per_position,
                           title=f"{Path(args.sentence).name} -> {p.output}")  # fmt: skip
        print(f"{p.output}\nwrote {path}")
        return 0
    translator = Translator.from_pretrained(args.model)
    if not translator.model.has_attention:
        raise AttnseqError(
            f"{args.model}: model.decoder = {translator.config.model.decoder} has no attention to plot; "
            "train a luong or bahdanau model"
        )
    tr = translator.translate([args.sentence])[0]
    path = plot_attention(tr.attention, tr.src_tokens, tr.tokens, args.out, title=f"{tr.source} -> {tr.text}")
    print(f"{tr.text}\nwrote {path}")
    return 0


def cmd_data(args) -> int:
    from attnseq import datasets

    if args.action == "list":
        for d in datasets.DATASETS.values():
            try:
                where = str(datasets.resolve(f"{datasets.PREFIX}{d.name}"))
            except AttnseqError:
                where = "not here: attnseq data get " + d.name
            print(f"{d.name:<14} {d.title}\n{'':<14} {d.home} ({d.licence}); {where}")
        return 0
    if not args.name:
        raise AttnseqError(f"data get: name a data set ({', '.join(datasets.DATASETS)})")
    datasets.get(args.name, out=Path(args.dir) if args.dir else None, mirror=args.mirror,
                 log=lambda m: print(m, flush=True))  # fmt: skip
    return 0


def cmd_serve(args) -> int:
    from attnseq.serve import load_models, run

    for flag in ("port", "threads", "max_batch", "max_chars", "max_inputs", "max_body_bytes", "max_queue"):
        low = 0 if flag in ("port", "threads") else 1
        if getattr(args, flag) < low:
            raise AttnseqError(f"--{flag.replace('_', '-')} must be at least {low}")
    if args.max_wait_ms < 0 or args.timeout <= 0:
        raise AttnseqError("--max-wait-ms must be at least 0 and --timeout more than 0")
    limits = Limits(max_chars=args.max_chars, max_inputs=args.max_inputs, max_body_bytes=args.max_body_bytes,
                    timeout_s=args.timeout, max_queue=args.max_queue)  # fmt: skip
    batching = Batching(enabled=not args.no_batching, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    models = load_models(args.model, device=args.device, threads=args.threads)
    for name, served in models.items():
        print(f"attnseq serve: model {name!r} ({served.task}) from {served.directory}", file=sys.stderr)
    run(models, host=args.host, port=args.port, access_log=not args.no_access_log, limits=limits, batching=batching)
    return 0


def cmd_dates(args) -> int:
    from attnseq.tasks.dates import write_corpus

    for split, path in write_corpus(args.out, seed=args.seed).items():
        print(f"{split}: {path}")
    return 0


def cmd_demo(args) -> int:
    from attnseq.config import load_config
    from attnseq.data import read_tsv
    from attnseq.metrics import exact_match
    from attnseq.plotting import plot_attention, plot_training
    from attnseq.tasks.dates import corpus_paths, write_corpus
    from attnseq.train import Trainer
    from attnseq.translate import Translator

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
    _train_and_report(trainer)

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


COMMANDS = {
    "train": cmd_train,
    "translate": cmd_translate,
    "classify": cmd_classify,
    "transcribe": cmd_transcribe,
    "chat": cmd_chat,
    "evaluate": cmd_evaluate,
    "ablate": cmd_ablate,
    "serve": cmd_serve,
    "plot": cmd_plot,
    "demo": cmd_demo,
    "dates": cmd_dates,
    "data": cmd_data,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_process()  # the process-wide settings, in one place (attnseq.runtime)
    try:
        code = COMMANDS[args.command](args)
        _show_notices()
        return code
    except AttnseqError as exc:
        _NOTICES.clear()
        print(f"attnseq: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `attnseq translate ... | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as exc:  # the file system refused: permissions, a directory where a file goes, disk full
        name = exc.filename2 or exc.filename  # os.replace(tmp, target) names the target second
        where = f"{name}: " if name else ""
        print(f"attnseq: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            f"attnseq: interrupted {exc}" if isinstance(exc, Interrupted) else "attnseq: interrupted", file=sys.stderr
        )
        return 130
