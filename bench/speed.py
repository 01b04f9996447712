"""attnseq against OpenNMT-py 3.5.1 on the same RNN attention model, side by side in one run, on any CPU.

    make bench                       # = .venv/bin/python bench/speed.py
    .venv/bin/python bench/speed.py --reps 3 --steps 1500 --out runs/bench_speed
    .venv/bin/python bench/speed.py --part scaling   # the scaling tables only (a few minutes)

It starts by printing the machine: the CPU's model name, torch's version and thread count, the
load average (other work on the machine skews every timing), and what this device runs natively
(`attnseq.runtime.capabilities(device).summary()`: its instruction set, native bf16 or what is
missing for it, the dtypes oneDNN packs, the int8 engine); the final JSON has them under "machine".

The model (both toolkits): Multi30k En->De (the multi30k_en_de recipe's files), whitespace words
(a word seen at least twice), embeddings 256, a one-layer bidirectional LSTM encoder 2 x 128, a
one-layer LSTM decoder 256 with Luong attention and input feeding, dropout 0.3, batches of 64
sentences, Adam 0.001, gradient norm 1, label smoothing 0.1, every weight initialised uniform in
[-0.1, 0.1] (OpenNMT-py's default param_init; attnseq's model.param_init).

attnseq's fast path is what a user gets by default: train.precision auto and decode.precision
auto (`attnseq.runtime.resolve_precision`): bf16 training where this CPU runs bf16 natively
(AVX512-BF16 or AMX), else fp32; on a CPU int8 decoding (the output layer in int8, the rest of the
decoding copy in bf16 where native, else float32); and decode.shortlist auto, which for the
bench's word vocabulary on a CPU is a lexical shortlist of 10 target words per source word (the
row "auto, whole vocabulary" is the fast path without it, measured beside it). Its rows say what
auto ran as here, e.g. "attnseq auto: bf16 training, int8 decoding, shortlist 10", or "fp32
training, int8 decoding, shortlist 10" on an AVX2-only CPU, and the JSON says it too (fast_path,
fast_train_precision, fast_decode_precision, fast_shortlist). Its ratios
to OpenNMT-py and its BLEU difference from attnseq fp32 are the headline figures, on every CPU.
The rows that need bf16 (bf16 decoding, of the bf16- and of the fp32-trained models; the bf16
matmul peak) run only where bf16 is native; elsewhere one line says why they are left out (what
is missing for bf16) and their JSON keys are null. Where auto training runs in fp32, the fast
path's models are the fp32 ones (a seed trains the same model), and a decoder that auto
duplicates (e.g. fp32-trained, int8 decoding) is measured once, as the fast path.

It measures, each figure the median of --reps repetitions:
  * training target tokens/s over --measure steps after --warmup steps, with general and concat
    (OpenNMT-py "mlp") attention, attnseq in fp32 and auto, and the peak resident memory of the
    training process; the three take turns, in an order that rotates each round (with 3 rounds,
    each runs first, second and third once);
  * the FLOP/s of a training step, counted analytically from the model's shapes and the data's
    lengths (matrix products only; backward = 2 x forward), against this machine's matrix-multiply
    peak (2048 x 2048, measured in the same run);
  * test BLEU (sacreBLEU, cased) after --steps training steps with general attention, and decoding
    sentences/s on the 1000 test_2016_flickr sentences, greedy and beam 5, batch 64, each toolkit
    timing its own translation loop (model loading excluded). attnseq trains --seeds models per
    training precision (fp32, and auto's where it is not fp32): its BLEU is their mean (one
    training's BLEU moves by about a point with the seed; the fast path's difference from fp32
    comes with its standard error over the seeds), and each model is also decoded in the other
    precisions this device runs (an fp32 model in fp32, bf16 and int8; a bf16 model in auto and
    bf16), which isolates what the decoding precision costs.
    Decoding speed is measured in --reps rounds once every model is trained: each round runs
    OpenNMT-py and each attnseq decoder in turn, OpenNMT-py first in even rounds and last in odd
    ones (attnseq: a fresh process, one untimed pass that builds its decoding copy, then the timed
    pass; OpenNMT-py: a fresh process, its one pass), and a ratio is the median of the rounds'
    ratios, so drift over the run cancels;
  * scaling, attnseq's fast path alone (--part scaling: this alone, a few minutes):
    decoding sentences/s of one model (the fast path's seed-1 model when this run or an earlier
    one in --out trained it, else one trained --scaling-steps steps) on the first
    --scaling-sentences test sentences at decode batch 1, 16, 64 and 256, greedy and beam 5, in
    the fast path's decoding precision, each after an untimed batch and timed over whole passes
    until a second is timed (one pass where it takes that long), in one process; and training
    target tokens/s at decoder sizes (model.dec_hidden_size) 256, 512 and 1024, the bench's model
    otherwise, over --scaling-measure steps after --scaling-warmup, in the fast path's training
    precision, a fresh process per size, with each size's FLOPs per target token (counted as
    above): how the cost grows with the work. Two markdown tables; "scaling" in the JSON.
OpenNMT-py is installed into its own environment (--onmt-venv) with --no-deps, beside this torch,
or taken from --onmt-python (an interpreter that imports it already, e.g. on a machine without a
package index). It ends with tables and one JSON line (machine, fast_path, train_tok_s_ratio,
greedy_sent_s_ratio, beam5_sent_s_ratio, bleu_diff, fast_bleu_diff, fast_bleu_diff_se,
peak_fraction, scaling, ...). OpenNMT-py runs fp32, its only precision on a CPU.

On a GPU (--device cuda) both toolkits train and decode there; int8 decoding is left out (CPU
only), and auto decodes in fp32. --part training / decoding / scaling runs one part of the bench,
for machines that limit a command's time (scaling alone needs no OpenNMT-py); --reuse decodes the
models an earlier run trained in --out (BLEU and decoding speed again, without the training),
e.g. to time decoding once more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sacrebleu

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "multi30k_en_de.yaml"
EMB, ENC, DEC, BATCH, LR, DROPOUT, SMOOTHING, PARAM_INIT = 256, 256, 256, 64, 0.001, 0.3, 0.1, 0.1
ONMT_ATTENTION = {"general": "general", "concat": "mlp"}
SCALING_BATCHES, SCALING_BEAMS, SCALING_DEC = (1, 16, 64, 256), (1, 5), (256, 512, 1024)
MIN_SECONDS = 1.0  # scaling: a decoding cell is timed over whole passes until this many seconds


# ------------------------------------------------------------------------------------------ setup
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, env: dict | None = None, save_output: Path | None = None) -> tuple[str, float]:
    """Run a command; return its output and the peak resident memory of the process in MiB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if save_output:
        save_output.write_text(out, encoding="utf-8")
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{out[-3000:]}")
    return out, usage.ru_maxrss / 1024


def prepare_data(work: Path) -> Path:
    """The recipe's Multi30k files with whitespace runs made single spaces, as plain text, so
    both toolkits split exactly the same words."""
    from attnseq.config import load_config
    from attnseq.readers import read_pairs

    data = work / "data"
    if all((data / f"{name}.{lang}").is_file() for name in ("train", "val", "test") for lang in ("en", "de")):
        return data  # prepared before (or carried to a machine without ../shared)
    cfg = load_config(RECIPE)
    data.mkdir(parents=True, exist_ok=True)
    for name, spec in (("train", cfg.data.train), ("val", cfg.data.valid), ("test", cfg.data.test)):
        pairs = read_pairs(spec, cfg.data, key=f"data.{name}")
        for side, lang in ((0, "en"), (1, "de")):
            text = "".join(" ".join(p[side].split()) + "\n" for p in pairs)
            (data / f"{name}.{lang}").write_text(text, encoding="utf-8")
    return data


def onmt_env(venv: Path, python: str | None) -> list[str]:
    """The interpreter that runs OpenNMT-py 3.5.1: `python` when given (one that imports onmt
    already), else its own virtual environment, made once, on this machine's torch 2.13.0."""
    if python:
        run([python, "-c", "import onmt.bin.train, onmt.bin.translate"])
        return [python]
    stamp = venv / ".onmt-3.5.1"
    if not stamp.is_file():
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        run([sys.executable, "-m", "venv", str(venv)])
        run([*pip, "torch==2.13.0"])
        run([*pip, "--no-deps", "opennmt-py==3.5.1"])
        run([*pip, "-r", str(ROOT / "bench" / "onmt-requirements.txt")])
        run([str(venv / "bin" / "python"), "-c", "import onmt.bin.train, onmt.bin.translate"])
        stamp.touch()
    return [str(venv / "bin" / "python")]


def cpu_model_name() -> str:
    """The CPU's model name: /proc/cpuinfo's "model name" (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info(device: str) -> dict:
    """What the bench runs on: the CPU's model name, CPU count, torch's version and threads, the load
    average at the start, the GPU (--device cuda), and `attnseq.runtime.capabilities(device)` (its
    fields and summary line)."""
    import torch

    from attnseq.runtime import capabilities

    caps = capabilities(device)
    info = {
        "cpu": cpu_model_name(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 minutes: other work skews timings
        "capabilities": {**dataclasses.asdict(caps), "packed": list(caps.packed)},
        "capabilities_summary": caps.summary(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (timers read the host clock); nothing on a CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_peak(reps: int, device: str) -> dict:
    """GFLOP/s of a 2048 x 2048 product: `a @ b` (torch's default route: MKL in float32, oneDNN in
    bfloat16; cuBLAS on a GPU, float32 without TF32), and on a CPU the same product through oneDNN
    with the weight reordered once, as attnseq's decoding copies run their linear layers
    (`onednn_fp32`, `onednn_bf16`). The bf16 figures are None where this device has no native bf16
    (emulated, one product can take a minute) or oneDNN cannot pack a bf16 weight."""
    import torch

    from attnseq.fast.frozen import PackedLinear
    from attnseq.runtime import capabilities

    caps = capabilities(device)

    def rate(product, *args) -> float:
        for _ in range(3):
            product(*args)
        rates = []
        for _ in range(max(reps, 3)):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(10):
                product(*args)
            synchronize(device)
            rates.append(10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
        return statistics.median(rates)

    out: dict[str, float | None] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        runs = name == "fp32" or caps.bf16
        a, b = (torch.randn(2048, 2048, dtype=dtype, device=device) for _ in range(2))
        out[name] = rate(torch.matmul, a, b) if runs else None
        if device == "cpu":
            packs = runs and name in caps.packed
            linear = torch.nn.Linear(2048, 2048, bias=False).to(dtype)
            out[f"onednn_{name}"] = rate(PackedLinear(linear), a) if packs else None
    return out


def gflops_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def flops_per_target_token(data: Path, attention: str, vocab: int, dec: int = DEC) -> float:
    """Matrix-product FLOPs of one training step per target token: 3 x forward, where forward is
    the encoder per source token, the attention keys per source token, and per target token the
    decoder LSTM (input feeding), scores and context over the sentence's source, W_c and W_y
    (`dec`: the decoder's size, model.dec_hidden_size)."""
    src = [len(line.split()) for line in (data / "train.en").read_text(encoding="utf-8").splitlines()]
    tgt = [len(line.split()) + 1 for line in (data / "train.de").read_text(encoding="utf-8").splitlines()]
    n_tgt = sum(tgt)
    src_per_tgt = sum(src) / n_tgt
    attended = sum(s * t for s, t in zip(src, tgt)) / n_tgt  # source length each target token sees
    half = ENC // 2
    encoder = 2 * (2 * 4 * half * (EMB + half))  # two directions
    if attention == "general":
        keys, score = 2 * dec * ENC, 2 * dec * attended
    else:  # concat: W_c h once per source token; W_b s, then w_a over tanh(.) per target token
        keys, score = 2 * dec * ENC, 2 * dec * dec + 2 * dec * attended
    decoder = 2 * 4 * dec * (EMB + dec + dec) + score + 2 * ENC * attended + 2 * dec * (ENC + dec) + 2 * dec * vocab
    return 3 * (decoder + src_per_tgt * (encoder + keys))


# ------------------------------------------------------------------------------------- OpenNMT-py
def onmt_config(
    work: Path, data: Path, attention: str, steps: int, save: Path | None, device: str, *, report_every: int = 25
) -> Path:
    cfg = {
        "save_data": str(work / "onmt"), "overwrite": True,
        "src_vocab": str(work / "onmt" / "vocab.src"), "tgt_vocab": str(work / "onmt" / "vocab.tgt"),
        "src_words_min_frequency": 2, "tgt_words_min_frequency": 2,
        "data": {"corpus_1": {"path_src": str(data / "train.en"), "path_tgt": str(data / "train.de")},
                 "valid": {"path_src": str(data / "val.en"), "path_tgt": str(data / "val.de")}},
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM", "layers": 1,
        "word_vec_size": EMB, "hidden_size": DEC, "global_attention": ONMT_ATTENTION[attention],
        "input_feed": 1, "dropout": [DROPOUT], "optim": "adam", "learning_rate": LR, "max_grad_norm": 1,
        "param_init": PARAM_INIT,
        "label_smoothing": SMOOTHING, "batch_type": "sents", "batch_size": BATCH, "train_steps": steps,
        "valid_steps": 10**7, "report_every": report_every, "seed": 1234, "num_workers": 0,
        "save_model": str(save or work / "onmt" / "scratch"), "save_checkpoint_steps": steps if save else 10**7,
    }  # fmt: skip
    if device == "cuda":
        cfg.update(gpu_ranks=[0], world_size=1)
    path = work / f"onmt_{attention}_{steps}.yaml"
    path.write_text(json.dumps(cfg, indent=1), encoding="utf-8")  # JSON is YAML
    return path


ONMT_REPORT = re.compile(r"Step (\d+)/.*?(\d+)/\s*(\d+) tok/s")


def onmt_train(onmt: list[str], config: Path, warmup: int) -> tuple[float, float, str]:
    out, rss = run([*onmt, "-m", "onmt.bin.train", "-config", str(config)])
    rates = [float(m.group(3)) for m in ONMT_REPORT.finditer(out) if int(m.group(1)) > warmup]
    return statistics.median(rates), rss, out


def onmt_translate(onmt: list[str], model: Path, data: Path, beam: int, output: Path, device: str) -> float:
    """Sentences/s by OpenNMT-py's own timer (-report_time). Its "Total translation time" is
    printed to 0.1 s, so the time is taken as predicted words / "Tokens per second"."""
    out, _ = run([*onmt, "-m", "onmt.bin.translate", "-model", str(model), "-src", str(data / "test.en"),
                  "-output", str(output), "-beam_size", str(beam), "-batch_size", str(BATCH),
                  "-batch_type", "sents", "-gpu", "0" if device == "cuda" else "-1", "-report_time",
                  "-length_penalty", "wu", "-alpha", "0.6"],
                 env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})  # fmt: skip
    tok_s = float(re.search(r"Tokens per second: ([\d.]+)", out).group(1))
    words = sum(len(line.split()) for line in output.read_text(encoding="utf-8").splitlines())
    n = len(output.read_text(encoding="utf-8").splitlines())
    return n / (words / tok_s)


# ---------------------------------------------------------------------------------------- attnseq
def attnseq_overrides(
    data: Path, attention: str, precision: str, device: str, *, decode_precision: str = "auto", dec: int = DEC
) -> list[str]:
    """The bench's model and training as config overrides; `precision` is train.precision."""
    return [
        f"data.train={data / 'train'}", f"data.valid={data / 'val'}", f"data.test={data / 'test'}",
        "data.src_suffix=.en", "data.tgt_suffix=.de", "data.src_tokenizer=word", "data.tgt_tokenizer=word",
        "data.min_freq=2", "data.max_src_len=100", "data.max_tgt_len=100",
        f"model.emb_size={EMB}", f"model.enc_hidden_size={ENC}", f"model.dec_hidden_size={dec}",
        "model.decoder=luong", f"model.attention={attention}", "model.input_feeding=true",
        "model.tie_embeddings=false", f"model.dropout={DROPOUT}", f"model.param_init={PARAM_INIT}",
        f"train.batch_size={BATCH}", f"train.lr={LR}", "train.clip=1.0", f"train.label_smoothing={SMOOTHING}",
        "train.ema_decay=0", "train.snapshot_minutes=0", "train.max_minutes=0", "train.max_epochs=1000",
        "train.lr_patience=1000", "train.patience=0", "train.valid_metric=loss", "train.valid_max_sentences=200",
        f"train.device={device}", f"train.precision={precision}", f"decode.precision={decode_precision}",
        f"decode.batch_size={BATCH}", "decode.length_penalty=gnmt", "decode.alpha=0.6",
    ]  # fmt: skip


def child_throughput(args) -> None:
    """(child process) attnseq training tokens/s over `measure` steps after `warmup` steps, with
    train.precision --precision (the precision it ran as: "precision") and decoder size --dec."""
    from attnseq.config import load_config
    from attnseq.runtime import keep_freed_memory
    from attnseq.trainer import Trainer

    keep_freed_memory()  # as the attnseq command does
    overrides = attnseq_overrides(Path(args.data), args.attention, args.precision, args.device, dec=args.dec)
    cfg = load_config(RECIPE, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(cfg, Path(scratch) / "run", progress_bar=False)
        data = trainer.data.train
        batches = [data.collate(i) for i in data.batch_indices(BATCH, seed=1)[: args.warmup + args.measure]]
        for batch in batches[: args.warmup]:
            trainer.train_step([batch], batch.units)
        synchronize(args.device)
        start = time.perf_counter()
        for batch in batches[args.warmup :]:
            trainer.train_step([batch], batch.units)
        synchronize(args.device)
        seconds = time.perf_counter() - start
    tokens = sum(b.n_tgt_tokens for b in batches[args.warmup :])
    print(
        json.dumps(
            {"tok_s": tokens / seconds, "vocab": len(trainer.data.assets.tgt_vocab), "precision": trainer.precision}
        )
    )


def decoder_spec(spec: str) -> tuple[str, int | str]:
    """A decoder of --precisions: a decode.precision, with "+shortlistK" for decode.shortlist K.
    Without one, "auto" (the fast path) takes decode.shortlist auto, any other precision the whole
    vocabulary (0)."""
    precision, _, shortlist = spec.partition("+shortlist")
    if not shortlist:
        return precision, "auto" if precision == "auto" else 0
    return precision, shortlist if shortlist == "auto" else int(shortlist)


def child_decode(args) -> None:
    """(child process) decode the test set with a trained attnseq model in each of --precisions
    (decode.precision values) and each of --beams: --untimed passes, then one timed pass (its BLEU
    and sentences/s). Per precision: what it ran as here ("resolved") and the beams' results."""
    from attnseq.readers import read_parallel
    from attnseq.runtime import keep_freed_memory
    from attnseq.tasks.translation import Translator

    keep_freed_memory()  # as the attnseq command does
    translator = Translator.from_pretrained(args.model, device=args.device)
    pairs = read_parallel(Path(args.data) / "test.en", Path(args.data) / "test.de")
    src, ref = [s for s, _ in pairs], [r for _, r in pairs]
    results: dict[str, dict] = {}
    for spec in args.precisions.split(","):
        translator.config.decode.precision, translator.config.decode.shortlist = decoder_spec(spec)
        results[spec] = {"resolved": translator.precision, "shortlist": translator.shortlist_size, "beams": {}}
        for beam in map(int, args.beams.split(",")):
            for _ in range(args.untimed + 1):
                _, scores = translator.evaluate(src, ref, beam_size=beam, batch_size=BATCH)
            results[spec]["beams"][str(beam)] = {"sent_s": scores["sent_s"], "bleu": scores["bleu"]}
    print(json.dumps(results))


def child_scaling(args) -> None:
    """(child process) sentences/s of a trained model on the first --sentences test sentences at
    each decode batch size of --batches and each beam of --beams, in decode.precision --precisions:
    for each, one untimed call on the first batch, then timed passes over all of them until
    MIN_SECONDS are timed (one pass where it takes that long); with the mean number of tokens each
    translation wrote (a barely trained model runs long)."""
    from attnseq.runtime import keep_freed_memory
    from attnseq.tasks.translation import Translator

    keep_freed_memory()  # as the attnseq command does
    translator = Translator.from_pretrained(args.model, device=args.device)
    translator.config.decode.precision, translator.config.decode.shortlist = decoder_spec(args.precisions)
    lines = (Path(args.data) / "test.en").read_text(encoding="utf-8").splitlines()
    src = lines[: args.sentences]
    result: dict = {"precision": translator.precision, "shortlist": translator.shortlist_size, "sentences": len(src),
                    "sent_s": {}, "tokens": {}}  # fmt: skip
    for beam in map(int, args.beams.split(",")):
        name = "greedy" if beam == 1 else f"beam{beam}"
        for batch in map(int, args.batches.split(",")):
            translator.translate(src[: max(batch, 8)], beam_size=beam, batch_size=batch)  # untimed
            passes, seconds = 0, 0.0
            while seconds < MIN_SECONDS:  # a fast cell is timed over more passes: less noise
                synchronize(args.device)
                start = time.perf_counter()
                out = translator.translate(src, beam_size=beam, batch_size=batch)
                synchronize(args.device)
                passes, seconds = passes + 1, seconds + time.perf_counter() - start
            result["sent_s"].setdefault(name, {})[str(batch)] = passes * len(src) / seconds
            result["tokens"].setdefault(name, {})[str(batch)] = statistics.mean(len(t.tokens) for t in out)
    print(json.dumps(result))


def child(args_list: list[str]) -> dict:
    out, rss = run([sys.executable, __file__, *args_list])
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mib"] = rss
    return result


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_speed"), help="work directory")
    parser.add_argument("--onmt-venv", default=str(ROOT / ".venv-onmt"), help="OpenNMT-py's environment")
    parser.add_argument(
        "--onmt-python", help="an interpreter that imports OpenNMT-py 3.5.1 already (instead of --onmt-venv)"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both toolkits train and decode")
    parser.add_argument(
        "--part",
        choices=["all", "training", "decoding", "scaling"],
        default="all",
        help="training: throughput and FLOP/s only; decoding: BLEU and decoding speed only; scaling: the "
        "scaling tables only (attnseq alone)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (median)")
    parser.add_argument("--warmup", type=int, default=25, help="training steps before the timed ones")
    parser.add_argument("--measure", type=int, default=150, help="timed training steps per repetition")
    parser.add_argument("--steps", type=int, default=1500, help="training steps before BLEU and decoding")
    parser.add_argument("--seeds", type=int, default=8, help="attnseq trainings per precision (BLEU: their mean)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="decoding: take the models trained by an earlier run in --out (same --steps) instead of training anew "
        "(scaling: its model too, where it trained one)",
    )
    parser.add_argument(
        "--scaling-steps",
        type=int,
        default=300,
        help="scaling: training steps of the model it decodes when --out holds no fast-path model",
    )
    parser.add_argument(
        "--scaling-sentences", type=int, default=500, help="scaling: test sentences decoded at each batch size"
    )
    parser.add_argument("--scaling-warmup", type=int, default=10, help="scaling: training steps before the timed ones")
    parser.add_argument("--scaling-measure", type=int, default=40, help="scaling: timed training steps at each size")
    parser.add_argument("--child", choices=["throughput", "decode", "scaling"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="general", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--dec", type=int, default=DEC, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--precisions", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--beams", default="1,5", help=argparse.SUPPRESS)
    parser.add_argument("--batches", default=",".join(map(str, SCALING_BATCHES)), help=argparse.SUPPRESS)
    parser.add_argument("--sentences", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--untimed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return {"throughput": child_throughput, "decode": child_decode, "scaling": child_scaling}[args.child](args)

    from attnseq.runtime import resolve_precision

    device = args.device
    machine = machine_info(device)
    caps = machine["capabilities"]
    # the fast path: what train.precision and decode.precision `auto` run as on this device
    fast = {stage: resolve_precision("auto", stage=stage, device=device) for stage in ("train", "decode")}
    fast_path = f"{fast['train']} training, {fast['decode']} decoding"
    gpu = f"{machine['gpu']}; " if device == "cuda" else ""
    print(f"\nmachine: {gpu}{machine['cpu']}, {machine['cpus']} CPUs, torch {machine['torch']}, "
          f"{machine['threads']} threads; load average {machine['load_average'][0]:.2f} (1 minute)",
          flush=True)  # fmt: skip
    print(f"capabilities: {machine['capabilities_summary']}")
    print(f"attnseq fast path (train.precision, decode.precision and decode.shortlist auto) here: {fast_path}")
    if not caps["bf16"]:
        print(f"left out, no native bf16 here ({caps['bf16_missing']}): the rows that need bf16 (bf16 decoding, "
              "the bf16 matmul peak); their JSON keys are null", flush=True)  # fmt: skip

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(work)
    summary: dict = {
        "device": device, "reps": args.reps, "machine": machine, "fast_path": fast_path,
        "fast_train_precision": fast["train"], "fast_decode_precision": fast["decode"],
    }  # fmt: skip
    onmt: list[str] = []
    peak: dict = {}
    if args.part != "scaling":
        onmt = onmt_env(Path(args.onmt_venv), args.onmt_python)
        run([*onmt, "-m", "onmt.bin.build_vocab", "-config", str(onmt_config(work, data, "general", 1, None, device)),
             "-n_sample", "-1"])  # fmt: skip
        peak = matmul_peak(args.reps, device)
        summary["matmul_gflops"] = peak
        line = f"matmul 2048^2 peak on {device}: fp32 {gflops_text(peak['fp32'])} GFLOP/s, "
        line += f"bf16 {gflops_text(peak['bf16'])}"
        if device == "cpu":
            line += (f"; oneDNN with a packed weight fp32 {gflops_text(peak['onednn_fp32'])}, "
                     f"bf16 {gflops_text(peak['onednn_bf16'])}")  # fmt: skip
        print(line, flush=True)
    if args.part in ("all", "training"):
        summary.update(measure_training(args, work, data, onmt, peak, fast))
    if args.part in ("all", "decoding"):
        summary.update(measure_decoding(args, work, data, onmt, fast))
    if args.part in ("all", "scaling"):
        summary["scaling"] = measure_scaling(args, work, data, fast)
    print("reproduce: " + shlex.join([sys.executable, *sys.argv]))
    print(json.dumps(summary))


def rotated(items: tuple, k: int) -> tuple:
    """items rotated left by k: the order of round k."""
    k %= len(items)
    return items[k:] + items[:k]


def measure_training(args, work: Path, data: Path, onmt: list[str], peak: dict, fast: dict) -> dict:
    """Training target tokens/s of both toolkits (attnseq with train.precision fp32 and auto), each
    repetition a fresh process, in turn; prints the table and returns the figures.

    The order within a round rotates from one round to the next (OpenNMT-py, fp32, auto; then fp32,
    auto, OpenNMT-py; ...), so that with 3 rounds each takes each place once: a machine whose speed
    drifts within a round favours no one."""
    device = args.device
    common = ["--data", str(data), "--reps", str(args.reps), "--device", device]
    train: dict[tuple[str, str], list[dict]] = {}

    def run(who: str, attention: str) -> None:
        if who == "onmt":
            # OpenNMT-py reports tok/s per window of report_every steps: windows that end on the warm-up
            cfg = onmt_config(work, data, attention, args.warmup + args.measure, None, device,
                              report_every=math.gcd(args.warmup, args.measure, 25))  # fmt: skip
            tok_s, rss, _ = onmt_train(onmt, cfg, args.warmup)
            log(f"OpenNMT-py {attention}: {tok_s:,.0f} target tok/s")
            train.setdefault(("onmt", attention), []).append({"tok_s": tok_s, "rss_mib": rss, "precision": "fp32"})
            return
        r = child([*common, "--child", "throughput", "--attention", attention, "--precision", who,
                   "--warmup", str(args.warmup), "--measure", str(args.measure)])  # fmt: skip
        train.setdefault((who, attention), []).append(r)
        log(f"attnseq {who} ({r['precision']}) {attention}: {r['tok_s']:,.0f} target tok/s")
        if who == "auto" and r["precision"] != fast["train"]:
            log(f"warning: train.precision auto ran as {r['precision']}, not {fast['train']}")

    for rep in range(args.reps):
        for attention in ONMT_ATTENTION:
            for who in rotated(("onmt", "fp32", "auto"), rep):
                run(who, attention)
    vocab = train[("fp32", "general")][0]["vocab"]
    med = {
        k: {"tok_s": statistics.median(r["tok_s"] for r in v), "rss_mib": statistics.median(r["rss_mib"] for r in v),
            "precision": v[0]["precision"]}
        for k, v in train.items()
    }  # fmt: skip
    flops = {att: flops_per_target_token(data, att, vocab) for att in ONMT_ATTENTION}
    labels = (("onmt", "OpenNMT-py 3.5.1 fp32"), ("fp32", "attnseq fp32"),
              ("auto", f"attnseq auto: {fast['train']} training (fast path)"))  # fmt: skip
    rows = []
    for att in ONMT_ATTENTION:
        for who, label in labels:
            m = med[(who, att)]
            gflops = m["tok_s"] * flops[att] / 1e9
            rows.append((att, label, m["tok_s"], gflops, gflops / peak["fp32"], m["rss_mib"]))
    print(
        f"\ntraining (median of {args.reps}; {args.measure} steps after {args.warmup}; target vocabulary {vocab}; "
        f"{flops['general'] / 1e6:.1f} / {flops['concat'] / 1e6:.1f} MFLOP per target token general / concat)"
    )
    print("| attention | toolkit | target tok/s | GFLOP/s | of fp32 peak | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for att, label, tok_s, gflops, frac, rss in rows:
        print(f"| {att} | {label} | {tok_s:,.0f} | {gflops:.0f} | {frac:.1%} | {rss:,.0f} |")
    summary = {
        "train_tok_s_ratio": med[("auto", "general")]["tok_s"] / med[("onmt", "general")]["tok_s"],
        "train_tok_s_ratio_concat": med[("auto", "concat")]["tok_s"] / med[("onmt", "concat")]["tok_s"],
        "train_tok_s_ratio_fp32": med[("fp32", "general")]["tok_s"] / med[("onmt", "general")]["tok_s"],
        "train_tok_s_ratio_fp32_concat": med[("fp32", "concat")]["tok_s"] / med[("onmt", "concat")]["tok_s"],
        "peak_fraction": rows[1][4],
        "peak_fraction_onmt": rows[0][4],
        "train": {f"{w}_{a}": v for (w, a), v in med.items()},
    }
    line = (
        f"training, attnseq / OpenNMT-py: fast path ({fast['train']} training) "
        "{train_tok_s_ratio:.2f}x general, {train_tok_s_ratio_concat:.2f}x concat; fp32 "
        "{train_tok_s_ratio_fp32:.2f}x, {train_tok_s_ratio_fp32_concat:.2f}x; fp32 step at "
        "{peak_fraction:.1%} of the fp32 matmul peak (OpenNMT-py {peak_fraction_onmt:.1%})"
    )
    if peak.get("onednn_fp32"):  # a CPU: the same against oneDNN's packed product
        summary["peak_fraction_onednn"] = rows[1][4] * peak["fp32"] / peak["onednn_fp32"]
        summary["peak_fraction_onednn_onmt"] = rows[0][4] * peak["fp32"] / peak["onednn_fp32"]
        line += "; {peak_fraction_onednn:.0%} / {peak_fraction_onednn_onmt:.0%} of oneDNN's"
    print(line.format(**summary), flush=True)
    return summary


# The attnseq decoders of the BLEU and decoding table besides the fast path ("auto"), in the table's order
# (the fast path decodes with decode.precision and decode.shortlist auto; every other decoder over
# the whole vocabulary: "auto_full" is the fast path without its shortlist)
DECODER_LABELS = {
    "fp32": "attnseq fp32",
    "auto": "attnseq auto (fast path)",
    "auto_full": "attnseq auto, whole vocabulary (decode.shortlist 0)",
    "bf16": "attnseq bf16 (trained and decoded)",
    "fp32_as_bf16": "attnseq fp32-trained, bf16 decoding",
    "fp32_as_int8": "attnseq fp32-trained, int8 decoding",
}


def measure_decoding(args, work: Path, data: Path, onmt: list[str], fast: dict) -> dict:
    """BLEU and decoding speed of both toolkits after the same --steps training steps (general
    attention); prints the table and returns the figures."""
    from attnseq.runtime import capabilities

    device = args.device
    caps = capabilities(device)
    onmt_model = work / "onmt" / "model"
    onmt_ckpt = Path(f"{onmt_model}_step_{args.steps}.pt")
    if not (args.reuse and onmt_ckpt.exists()):
        log(f"training OpenNMT-py for {args.steps} steps")
        _, _, out = onmt_train(onmt, onmt_config(work, data, "general", args.steps, onmt_model, device), 0)
        (work / "onmt_train.log").write_text(out, encoding="utf-8")
    refs = (data / "test.de").read_text(encoding="utf-8").splitlines()

    # attnseq: --seeds trainings per training precision, keyed by what it runs as here: fp32, and
    # the fast path's (train.precision auto; where it runs as fp32, the fp32 models are its models:
    # a seed trains the same model). The decoders: (key, the models, decode.precision, label). The
    # fast path decodes with decode.precision auto; each fp32 model is also decoded in bf16 and
    # int8 where they run, and a bf16 model in bf16: what the decoding precision alone costs, on
    # the same weights. A decoder that another one already is here (the same models, the same
    # precision once auto is resolved) is measured once, under the first one's key (`same_as`).
    # BLEU is the mean over the seeds.
    def fast_label(shortlist: int) -> str:
        listed = f", shortlist {shortlist}" if shortlist else ""
        return f"attnseq auto: {fast['train']} training, {fast['decode']} decoding{listed} (fast path)"

    labels = {**DECODER_LABELS, "auto": fast_label(0)}
    trained_with = {"fp32": "fp32"}  # what each set of models is trained as: its train.precision
    trained_with.setdefault(fast["train"], "auto")
    candidates = [("auto", fast["train"], "auto"), ("fp32", "fp32", "fp32"),
                  ("auto_full", fast["train"], "auto+shortlist0")]  # fmt: skip
    left_out: dict[str, str] = {}
    if caps.bf16:
        trained_with.setdefault("bf16", "bf16")
        candidates += [("bf16", "bf16", "bf16"), ("fp32_as_bf16", "fp32", "bf16")]
    else:
        left_out.update(bf16=caps.bf16_missing, fp32_as_bf16=caps.bf16_missing)
    if caps.int8_engine:
        candidates.append(("fp32_as_int8", "fp32", "int8"))
    else:
        left_out["fp32_as_int8"] = "a GPU has no int8 decoding" if device == "cuda" else "no quantized engine runs here"
    decoders: list[tuple[str, str, str]] = []
    same_as: dict[str, str] = {}
    seen: dict[tuple[str, str, int], str] = {}
    for key, trained, precision in candidates:
        base, shortlist = decoder_spec(precision)
        ident = (trained, fast["decode"] if base == "auto" else base, shortlist)
        if ident in seen:
            same_as[key] = seen[ident]
        else:
            seen[ident] = key
            decoders.append((key, trained, precision))
    precisions = {t: [p for _, trained, p in decoders if trained == t] for t in trained_with}
    trained_with = {t: c for t, c in trained_with.items() if precisions[t]}

    def real(key: str) -> str:
        return same_as.get(key, key)

    def decode_child(trained: str, model: Path, untimed: int) -> list[tuple[str, int, dict]]:
        """(decoder key, beam, its result) for each decoder of these models."""
        result = child(["--data", str(data), "--device", device, "--child", "decode", "--model", str(model),
                        "--precisions", ",".join(precisions[trained]), "--untimed", str(untimed)])  # fmt: skip
        out = []
        for key, t, precision in decoders:
            if t == trained:
                res = result[precision]
                shortlist_of[key] = res["shortlist"]
                base = decoder_spec(precision)[0]
                expected = fast["decode"] if base == "auto" else base
                if res["resolved"] != expected:
                    log(f"warning: decode.precision {precision} ran as {res['resolved']}, not {expected}")
                out += [(key, int(beam), by_beam) for beam, by_beam in res["beams"].items()]
        return out

    shortlist_of: dict[str, int] = {}  # each decoder's decode.shortlist, as it ran (auto resolved)
    seed_bleu: dict[str, list[float]] = {}
    first_model: dict[str, Path] = {}
    for trained, train_precision in trained_with.items():
        for i in range(args.seeds):
            run_dir = work / f"attnseq_{trained}" if i == 0 else work / f"attnseq_{trained}_seed{i}"
            if not (args.reuse and (run_dir / "last").exists()):
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                log(f"training attnseq {trained} (train.precision {train_precision}) for {args.steps} steps "
                    f"(seed {i + 1} of {args.seeds})")  # fmt: skip
                overrides = attnseq_overrides(data, "general", train_precision, device) + [
                    f"train.max_steps={args.steps}", f"train.seed={1234 + i}"
                ]  # fmt: skip
                run([sys.executable, "-m", "attnseq", "train", str(RECIPE), "--out", str(run_dir),
                     *[a for o in overrides for a in ("--set", o)]],
                    save_output=run_dir.with_name(run_dir.name + "_train.log"))  # fmt: skip
            first_model.setdefault(trained, run_dir / "last")
            for key, beam, res in decode_child(trained, run_dir / "last", 0):
                seed_bleu.setdefault(f"{key}_beam{beam}", []).append(res["bleu"])
                log(f"attnseq {key} beam {beam}: BLEU {res['bleu']:.2f}")

    # Speed, in --reps rounds side by side: each round decodes with OpenNMT-py and with every attnseq
    # model and precision in turn (each seed-1 model once, in a fresh process: one untimed pass,
    # which builds its decoding copy, then the timed one), OpenNMT-py first in even rounds and last
    # in odd ones, so that the machine's drift over the run and within a round moves both toolkits
    # alike. A ratio is the median of the rounds' ratios.
    rounds: dict[tuple[str, int], list[float]] = {}
    onmt_bleu = {}

    def onmt_round() -> None:
        for beam in (1, 5):
            output = work / f"onmt_beam{beam}.txt"
            rounds.setdefault(("onmt", beam), []).append(onmt_translate(onmt, onmt_ckpt, data, beam, output, device))
            hyps = output.read_text(encoding="utf-8").splitlines()
            onmt_bleu[beam] = sacrebleu.corpus_bleu(hyps, [refs]).score

    def attnseq_round() -> None:
        for trained, model in first_model.items():
            for key, beam, res in decode_child(trained, model, 1):
                rounds.setdefault((key, beam), []).append(res["sent_s"])

    for r in range(args.reps):
        for part in rotated((onmt_round, attnseq_round), r):
            part()
        log(f"round {r + 1} of {args.reps}: " + ", ".join(
            f"{who} beam {beam} {v[-1]:,.0f}" for (who, beam), v in rounds.items()) + " sentences/s")  # fmt: skip
    precision_of = {key: (t, decoder_spec(p)[0].replace("auto", fast["decode"])) for key, t, p in decoders}
    labels["auto"] = fast_label(shortlist_of.get("auto", 0))  # auto's shortlist, as the children resolved it
    decode: dict[tuple[str, int], dict] = {}
    for (who, beam), rates in rounds.items():
        bleu = onmt_bleu[beam] if who == "onmt" else statistics.mean(seed_bleu[f"{who}_beam{beam}"])
        trained, decoded = precision_of.get(who, ("fp32", "fp32"))
        decode[(who, beam)] = {"sent_s": statistics.median(rates), "bleu": bleu, "rounds": rates, "trained": trained,
                               "decoded": decoded, "shortlist": shortlist_of.get(who, 0)}  # fmt: skip

    print(
        f"\nafter {args.steps} training steps, general attention; test_2016_flickr, batch {BATCH} "
        f"(median of {args.reps})"
    )
    print("| toolkit | BLEU greedy | BLEU beam 5 | greedy sent/s | beam 5 sent/s |")
    print("|---|---:|---:|---:|---:|")
    for who in ("onmt", *DECODER_LABELS):
        if (who, 1) in decode:
            g, b = decode[(who, 1)], decode[(who, 5)]
            label = "OpenNMT-py 3.5.1 fp32" if who == "onmt" else labels[who]
            print(f"| {label} | {g['bleu']:.2f} | {b['bleu']:.2f} | {g['sent_s']:,.0f} | {b['sent_s']:,.0f} |")
    for key, other in same_as.items():
        print(f"{labels[key]}: here the same models and decoding precision as \"{labels[other]}\" (measured once, "
              "in that row)")  # fmt: skip
    for reason in dict.fromkeys(left_out.values()):
        keys = [k for k, v in left_out.items() if v == reason]
        print(f"left out: {', '.join(labels[k] for k in keys)}: {reason}")
    print(
        f"attnseq BLEU: mean of {args.seeds} trainings (seeds 1234...); decoding speed: the first one's model; "
        f"ratios below: the median of the {args.reps} rounds' ratios"
    )
    for key, values in seed_bleu.items():
        print(f"  {key}: " + ", ".join(f"{v:.2f}" for v in values))

    def available(key: str) -> bool:
        return (real(key), 5) in decode

    def from_fp32(key: str) -> tuple[float | None, float | None]:
        """The beam-5 BLEU difference from the fp32 models, seed by seed: its mean, and that mean's
        standard error (the spread of the seeds' differences / sqrt(seeds)); None where left out."""
        if not available(key):
            return None, None
        diffs = [a - b for a, b in zip(seed_bleu[f"{real(key)}_beam5"], seed_bleu[f"{real('fp32')}_beam5"],
                                       strict=True)]  # fmt: skip
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        return statistics.mean(diffs), se

    def ratio(who: str, beam: int) -> float | None:  # the median of the rounds' ratios; None where left out
        if not available(who):
            return None
        pairs = zip(decode[(real(who), beam)]["rounds"], decode[("onmt", beam)]["rounds"], strict=True)
        return statistics.median(a / b for a, b in pairs)

    fast_diff, fast_se = from_fp32("auto")
    summary = {
        "greedy_sent_s_ratio": ratio("auto", 1),
        "beam5_sent_s_ratio": ratio("auto", 5),
        "greedy_sent_s_ratio_bf16": ratio("bf16", 1),
        "beam5_sent_s_ratio_bf16": ratio("bf16", 5),
        "greedy_sent_s_ratio_fp32": ratio("fp32", 1),
        "beam5_sent_s_ratio_fp32": ratio("fp32", 5),
        "greedy_sent_s_ratio_int8": ratio("fp32_as_int8", 1),
        "beam5_sent_s_ratio_int8": ratio("fp32_as_int8", 5),
        "bleu_diff": decode[(real("auto"), 5)]["bleu"] - decode[("onmt", 5)]["bleu"],
        "bleu_diff_fp32": decode[(real("fp32"), 5)]["bleu"] - decode[("onmt", 5)]["bleu"],
        "fast_bleu_diff": fast_diff,
        "fast_bleu_diff_se": fast_se,
        "bf16_bleu_diff": from_fp32("bf16")[0],
        "bf16_decode_bleu_diff": from_fp32("fp32_as_bf16")[0],
        "int8_decode_bleu_diff": from_fp32("fp32_as_int8")[0],
        "fast_shortlist": shortlist_of.get("auto", 0),
        "greedy_sent_s_ratio_full": ratio("auto_full", 1),
        "beam5_sent_s_ratio_full": ratio("auto_full", 5),
        "full_bleu_diff": from_fp32("auto_full")[0],
        "seed_bleu": seed_bleu,
        "decode": {f"{w}_beam{b}": v for (w, b), v in decode.items()},
        "same_as": same_as,
        "left_out": left_out,
        "steps": args.steps,
        "seeds": args.seeds,
    }
    s = summary

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    line = (
        f"decoding, attnseq fast path ({fast['train']} training, {fast['decode']} decoding, shortlist "
        f"{s['fast_shortlist']}) / OpenNMT-py: "
        f"greedy {times(s['greedy_sent_s_ratio'])}, beam 5 {times(s['beam5_sent_s_ratio'])} (fp32 "
        f"{times(s['greedy_sent_s_ratio_fp32'])}, {times(s['beam5_sent_s_ratio_fp32'])}"
    )
    if available("bf16"):
        line += f"; bf16 decoding {times(s['greedy_sent_s_ratio_bf16'])}, {times(s['beam5_sent_s_ratio_bf16'])}"
    line += (
        f"); BLEU diff {s['bleu_diff']:+.2f}; fast path - fp32 {s['fast_bleu_diff']:+.2f} (standard error "
        f"{s['fast_bleu_diff_se']:.2f})"
    )
    if available("bf16"):
        line += f", bf16 - fp32 {s['bf16_bleu_diff']:+.2f} (bf16 decoding alone {s['bf16_decode_bleu_diff']:+.2f})"
    if available("fp32_as_int8"):
        line += (
            f"; the fp32 model in int8: {s['int8_decode_bleu_diff']:+.2f} BLEU, greedy "
            f"{times(s['greedy_sent_s_ratio_int8'])}, beam 5 {times(s['beam5_sent_s_ratio_int8'])}"
        )
    if s["fast_shortlist"]:
        line += (
            f"; the fast path without its shortlist ({s['fast_shortlist']} words per source word): greedy "
            f"{times(s['greedy_sent_s_ratio_full'])}, beam 5 {times(s['beam5_sent_s_ratio_full'])}, BLEU - fp32 "
            f"{s['full_bleu_diff']:+.2f}"
        )
    print(line, flush=True)
    return summary


def measure_scaling(args, work: Path, data: Path, fast: dict) -> dict:
    """How attnseq's fast path scales with work: decoding sentences/s at each batch size of
    SCALING_BATCHES, greedy and beam 5, and training target tokens/s at each decoder size of
    SCALING_DEC (one pass each, a fresh process per size). Prints the two tables and returns the
    figures."""
    device = args.device
    model = work / f"attnseq_{fast['train']}" / "last"  # the decoding part's fast-path model, seed 1
    if model.exists():
        log(f"scaling: decoding {model}, the fast path's first model")
    else:
        run_dir = work / "scaling_model"
        model = run_dir / "last"
        if not (args.reuse and model.exists()):
            if run_dir.exists():
                shutil.rmtree(run_dir)
            log(f"scaling: training attnseq (train.precision auto) for {args.scaling_steps} steps")
            overrides = attnseq_overrides(data, "general", "auto", device) + [
                f"train.max_steps={args.scaling_steps}", "train.seed=1234"
            ]  # fmt: skip
            run([sys.executable, "-m", "attnseq", "train", str(RECIPE), "--out", str(run_dir),
                 *[a for o in overrides for a in ("--set", o)]],
                save_output=run_dir.with_name(run_dir.name + "_train.log"))  # fmt: skip
    log(f"scaling: decoding at batch {', '.join(map(str, SCALING_BATCHES))}")
    dec = child(["--data", str(data), "--device", device, "--child", "scaling", "--model", str(model),
                 "--precisions", "auto", "--beams", ",".join(map(str, SCALING_BEAMS)),
                 "--batches", ",".join(map(str, SCALING_BATCHES)),
                 "--sentences", str(args.scaling_sentences)])  # fmt: skip
    train: dict[str, dict] = {}
    for size in SCALING_DEC:
        r = child(["--data", str(data), "--device", device, "--child", "throughput", "--precision", "auto",
                   "--dec", str(size), "--warmup", str(args.scaling_warmup),
                   "--measure", str(args.scaling_measure)])  # fmt: skip
        flops = flops_per_target_token(data, "general", r["vocab"], size)
        train[str(size)] = {"tok_s": r["tok_s"], "mflop_per_token": flops / 1e6, "gflops": r["tok_s"] * flops / 1e9,
                            "rss_mib": r["rss_mib"], "precision": r["precision"]}  # fmt: skip
        log(f"scaling: dec_hidden_size {size}: {r['tok_s']:,.0f} target tok/s ({r['precision']})")

    names = ["greedy" if beam == 1 else f"beam{beam}" for beam in SCALING_BEAMS]
    heads = ["greedy" if beam == 1 else f"beam {beam}" for beam in SCALING_BEAMS]
    tokens = {n: statistics.mean(dec["tokens"][n].values()) for n in names}
    print(
        f"\nscaling, decoding: attnseq fast path ({dec['precision']} decoding), {dec['sentences']} test_2016_flickr "
        f"sentences, at least {MIN_SECONDS:g} s each; model {model} (translations average "
        + ", ".join(f"{tokens[n]:.1f} tokens {h}" for n, h in zip(names, heads))
        + ")"
    )
    print("| decode batch | " + " | ".join(f"{h} sent/s" for h in heads) + " | "
          + " | ".join(f"{h} x of batch 1" for h in heads) + " |")  # fmt: skip
    print("|---:|" + "---:|" * (2 * len(names)))
    first = str(SCALING_BATCHES[0])
    for batch in map(str, SCALING_BATCHES):
        rates = [dec["sent_s"][n][batch] for n in names]
        gains = [dec["sent_s"][n][batch] / dec["sent_s"][n][first] for n in names]
        print(f"| {batch} | " + " | ".join(f"{v:,.0f}" for v in rates) + " | "
              + " | ".join(f"{v:.1f}x" for v in gains) + " |")  # fmt: skip
    base = train[str(SCALING_DEC[0])]
    print(
        f"\nscaling, training: attnseq fast path ({base['precision']} training), general attention, batch {BATCH}, "
        f"{args.scaling_measure} timed steps after {args.scaling_warmup} at each decoder size, one pass each"
    )
    print(f"| dec_hidden_size | target tok/s | MFLOP per target token | GFLOP/s | work x of {SCALING_DEC[0]} | "
          f"time per token x of {SCALING_DEC[0]} |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for size, t in train.items():
        work_x, time_x = t["mflop_per_token"] / base["mflop_per_token"], base["tok_s"] / t["tok_s"]
        print(f"| {size} | {t['tok_s']:,.0f} | {t['mflop_per_token']:.1f} | {t['gflops']:.0f} | {work_x:.2f}x | "
              f"{time_x:.2f}x |", flush=True)  # fmt: skip
    return {
        "decode_precision": dec["precision"], "train_precision": base["precision"], "model": str(model),
        "sentences": dec["sentences"], "decode_sent_s": dec["sent_s"], "tokens_per_translation": dec["tokens"],
        "train": train, "warmup": args.scaling_warmup, "measure": args.scaling_measure,
    }  # fmt: skip


if __name__ == "__main__":
    main()
