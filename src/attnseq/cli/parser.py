"""The `attnseq` command's parser: its commands and their options (the commands are in `commands`)."""

from __future__ import annotations

import argparse
import typing

from attnseq.schema import DecodePrecision
from attnseq.serve.settings import Batching, Limits


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.attention=concat (repeatable)",
    )


def add_decode_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="decode.KEY=VALUE",
        help="override a decode setting of the model's config, e.g. --set decode.max_src_tokens=2048 (repeatable)",
    )


def add_search(p: argparse.ArgumentParser) -> None:
    """Search options; each defaults to the model's config (its `decode` section), and --set decode.KEY=VALUE."""
    add_decode_set(p)
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
    p.add_argument(
        "--lm",
        metavar="DIR",
        help="a language model (task: lm) fused into beam search (default: the model's decode.lm)",
    )
    p.add_argument(
        "--lm-weight",
        type=float,
        metavar="W",
        help="--lm: its weight beside the model's scores (default: the model's decode.lm_weight)",
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


def build_parser() -> argparse.ArgumentParser:
    from attnseq import __version__

    parser = argparse.ArgumentParser(prog="attnseq", description="Sequence-to-sequence models with attention.")
    parser.add_argument("-V", "--version", action="version", version=f"attnseq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--out", required=True, help="run directory (best/, last/, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    add_set(p)

    p = sub.add_parser("translate", help="translate lines from stdin or --input to stdout")
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--input", help="file with one sentence per line, plain or .gz (default: stdin)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per line: output, score, input_tokens / output_tokens, attention, alternatives",
    )
    add_search(p)
    p.add_argument("--n-best", type=int, help="hypotheses per sentence (plain output: 'LINE ||| TEXT ||| SCORE')")

    p = sub.add_parser("classify", help="classify lines from stdin or --input: LABEL<TAB>PROBABILITY per line")
    p.add_argument("--model", required=True, help="model directory or training run directory of a classifier")
    p.add_argument("--input", help="file with one text per line, plain or .gz (default: stdin)")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: output (the label), score, probabilities, input_tokens, attention",
    )
    p.add_argument("--explain", action="store_true", help="also show each token with its pooling weight")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="--explain: shade tokens by weight (auto: on a terminal)")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="texts classified together")
    add_decode_set(p)
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("transcribe", help="transcribe audio files with a speech model: FILE<TAB>TEXT per file")
    p.add_argument("--model", required=True, help="model directory or training run directory of a speech model")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ...; resampled to the model's rate)")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per file: output, score, output_tokens, attention (over input_tokens), alternatives",
    )
    add_search(p)
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
    add_search(p)

    p = sub.add_parser("evaluate", help="score a model on its config's test split, a TSV file or --src / --ref files")
    p.add_argument("--model", required=True)
    p.add_argument("--data", help="TSV file (source TAB reference; speech: a manifest with file and text columns)")
    p.add_argument("--src", help="source file, one sentence per line (plain or .gz)")
    p.add_argument("--ref", help="reference file, line-aligned with --src")
    p.add_argument("--json", action="store_true", help="print one JSON line (keys bleu, chrf, bleu_lc_tok, ...)")
    p.add_argument("--output", help="also write the translations to this file, one per line")
    add_search(p)
    p.add_argument("--ctc-weight", type=float,
                   help="speech models with a CTC layer: joint CTC / attention decoding weight in [0, 1] "
                        "(default: the model's decode.ctc_weight)")  # fmt: skip

    p = sub.add_parser(
        "ablate", help="train every decoder wiring x attention (and the baselines) under one budget; table + chart"
    )
    p.add_argument("config", help="YAML config; its budget (train.max_minutes / max_steps) applies to every variant")
    p.add_argument("--out", default="runs/ablation", help="directory for the runs, ablation.md/.png/.json")
    p.add_argument("--only", help="comma-separated variants, e.g. luong-general,bahdanau-concat,init")
    add_set(p)

    p = sub.add_parser("plot", help="write an attention heatmap (PNG) of one sentence (speech: of one audio file)")
    p.add_argument("--model", required=True)
    p.add_argument("sentence", help="the sentence; for a speech model the audio file")
    p.add_argument("--out", default="attention.png", help="PNG path (default: attention.png)")
    add_decode_set(p)

    p = sub.add_parser("demo", help="generate the dates corpus, train on it, report held-out accuracy")
    p.add_argument("config", nargs="?", default="configs/dates.yaml")
    p.add_argument("--out", default="runs/demo", help="run directory (replaced on every demo run)")
    p.add_argument("--data-dir", default="data/dates", help="where the generated corpus is written")
    add_set(p)

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
    add_decode_set(p)
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
