"""attnseq against OpenNMT-py 3.5.1 on the same RNN attention model, side by side in one run.

    make bench                       # = .venv/bin/python bench/speed.py
    .venv/bin/python bench/speed.py --reps 3 --steps 1500 --out runs/bench_speed

The model (both toolkits): Multi30k En->De (the multi30k_en_de recipe's files), whitespace words
(a word seen at least twice), embeddings 256, a one-layer bidirectional LSTM encoder 2 x 128, a
one-layer LSTM decoder 256 with Luong attention and input feeding, dropout 0.3, batches of 64
sentences, Adam 0.001, gradient norm 1, label smoothing 0.1, every weight initialised uniform in
[-0.1, 0.1] (OpenNMT-py's default param_init; attnseq's model.param_init).

It measures, each figure the median of --reps repetitions:
  * training target tokens/s over --measure steps after --warmup steps, with general and concat
    (OpenNMT-py "mlp") attention, and the peak resident memory of the training process;
  * the FLOP/s of a training step, counted analytically from the model's shapes and the data's
    lengths (matrix products only; backward = 2 x forward), against this machine's matrix-multiply
    peak (2048 x 2048, measured in the same run);
  * test BLEU (sacreBLEU, cased) after --steps training steps with general attention, and decoding
    sentences/s on the 1000 test_2016_flickr sentences, greedy and beam 5, batch 64, each toolkit
    timing its own translation loop (model loading excluded). attnseq trains --seeds models per
    precision: its BLEU is their mean (one training's BLEU moves by about a point with the seed;
    the fast path's difference from fp32 comes with its standard error over the seeds), and each
    model is also decoded in the lower precisions (decode.precision: a bf16 model in bf16 and
    int8, an fp32 model in fp32, bf16 and int8), which isolates what the decoding precision costs.
    Decoding speed is measured in --reps rounds once every model is trained: each round runs
    OpenNMT-py, then each attnseq decoder, in turn (attnseq: a fresh process, one untimed pass
    that builds its decoding copy, then the timed pass; OpenNMT-py: a fresh process, its one
    pass), and a ratio is the median of the rounds' ratios, so drift over the run cancels.
OpenNMT-py is installed into its own environment (--onmt-venv) with --no-deps, beside this torch,
or taken from --onmt-python (an interpreter that imports it already, e.g. on a machine without a
package index). It ends with a table and one JSON line (train_tok_s_ratio, greedy_sent_s_ratio,
beam5_sent_s_ratio, bleu_diff, fast_bleu_diff, peak_fraction, ...). attnseq's fast path is bf16
training (train.precision) and, on a CPU, int8 decoding (decode.precision: the bf16 decoding copy
with an int8 output layer); its ratios and BLEU are the headline figures, and bf16 decoding has
its own (_bf16 keys). OpenNMT-py runs fp32, its only precision on a CPU.

On a GPU (--device cuda) both toolkits train and decode there; int8 decoding is left out (CPU
only). --part training / decoding runs half of the bench, for machines that limit a command's time;
--reuse decodes the models an earlier run trained in --out (BLEU and decoding speed again, without
the training), e.g. to time decoding once more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import sacrebleu

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "configs" / "multi30k_en_de.yaml"
EMB, ENC, DEC, BATCH, LR, DROPOUT, SMOOTHING, PARAM_INIT = 256, 256, 256, 64, 0.001, 0.3, 0.1, 0.1
ONMT_ATTENTION = {"general": "general", "concat": "mlp"}


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
    from attnseq.data import read_pairs

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


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (timers read the host clock); nothing on a CPU."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_peak(reps: int, device: str) -> dict:
    """GFLOP/s of a 2048 x 2048 product: `a @ b` (torch's default route: MKL in float32, oneDNN in
    bfloat16; cuBLAS on a GPU, float32 without TF32), and on a CPU the same product through oneDNN
    with the weight reordered once, as attnseq's decoding copies run their linear layers
    (`onednn_fp32`, `onednn_bf16`)."""
    import torch

    from attnseq.modules.frozen import PackedLinear

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

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = (torch.randn(2048, 2048, dtype=dtype, device=device) for _ in range(2))
        out[name] = rate(torch.matmul, a, b)
        if device == "cpu":
            out[f"onednn_{name}"] = rate(PackedLinear(torch.nn.Linear(2048, 2048, bias=False).to(dtype)), a)
    return out


def flops_per_target_token(data: Path, attention: str, vocab: int) -> float:
    """Matrix-product FLOPs of one training step per target token: 3 x forward, where forward is
    the encoder per source token, the attention keys per source token, and per target token the
    decoder LSTM (input feeding), scores and context over the sentence's source, W_c and W_y."""
    src = [len(line.split()) for line in (data / "train.en").read_text(encoding="utf-8").splitlines()]
    tgt = [len(line.split()) + 1 for line in (data / "train.de").read_text(encoding="utf-8").splitlines()]
    n_tgt = sum(tgt)
    src_per_tgt = sum(src) / n_tgt
    attended = sum(s * t for s, t in zip(src, tgt)) / n_tgt  # source length each target token sees
    half = ENC // 2
    encoder = 2 * (2 * 4 * half * (EMB + half))  # two directions
    if attention == "general":
        keys, score = 2 * DEC * ENC, 2 * DEC * attended
    else:  # concat: W_c h once per source token; W_b s, then w_a over tanh(.) per target token
        keys, score = 2 * DEC * ENC, 2 * DEC * DEC + 2 * DEC * attended
    decoder = 2 * 4 * DEC * (EMB + DEC + DEC) + score + 2 * ENC * attended + 2 * DEC * (ENC + DEC) + 2 * DEC * vocab
    return 3 * (decoder + src_per_tgt * (encoder + keys))


# ------------------------------------------------------------------------------------- OpenNMT-py
def onmt_config(work: Path, data: Path, attention: str, steps: int, save: Path | None, device: str) -> Path:
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
        "valid_steps": 10**7, "report_every": 25, "seed": 1234, "num_workers": 0,
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
def attnseq_overrides(data: Path, attention: str, precision: str, device: str) -> list[str]:
    return [
        f"data.train={data / 'train'}", f"data.valid={data / 'val'}", f"data.test={data / 'test'}",
        "data.src_suffix=.en", "data.tgt_suffix=.de", "data.src_tokenizer=word", "data.tgt_tokenizer=word",
        "data.min_freq=2", "data.max_src_len=100", "data.max_tgt_len=100",
        f"model.emb_size={EMB}", f"model.enc_hidden_size={ENC}", f"model.dec_hidden_size={DEC}",
        "model.decoder=luong", f"model.attention={attention}", "model.input_feeding=true",
        "model.tie_embeddings=false", f"model.dropout={DROPOUT}", f"model.param_init={PARAM_INIT}",
        f"train.batch_size={BATCH}", f"train.lr={LR}", "train.clip=1.0", f"train.label_smoothing={SMOOTHING}",
        "train.ema_decay=0", "train.snapshot_minutes=0", "train.max_minutes=0", "train.max_epochs=1000",
        "train.lr_patience=1000", "train.patience=0", "train.valid_metric=loss", "train.valid_max_sentences=200",
        f"train.device={device}", f"train.precision={precision}", f"decode.precision={precision}",
        f"decode.batch_size={BATCH}", "decode.length_penalty=gnmt", "decode.alpha=0.6",
    ]  # fmt: skip


def child_throughput(args) -> None:
    """(child process) attnseq training tokens/s over `measure` steps after `warmup` steps."""
    import tempfile

    from attnseq.config import load_config
    from attnseq.runtime import keep_freed_memory
    from attnseq.train import Trainer

    keep_freed_memory()  # as the attnseq command does
    cfg = load_config(RECIPE, attnseq_overrides(Path(args.data), args.attention, args.precision, args.device))
    trainer = Trainer(cfg, Path(tempfile.mkdtemp()) / "run", progress_bar=False)
    data = trainer.data.train
    batches = [data.collate(i) for i in data.batch_indices(BATCH, seed=1)[: args.warmup + args.measure]]
    for batch in batches[: args.warmup]:
        trainer.train_step(batch)
    synchronize(args.device)
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        trainer.train_step(batch)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    tokens = sum(b.n_tgt_tokens for b in batches[args.warmup :])
    print(json.dumps({"tok_s": tokens / seconds, "vocab": len(trainer.data.tgt_vocab)}))


def child_decode(args) -> None:
    """(child process) decode the test set with a trained attnseq model in each of --precisions
    and each of --beams: --untimed passes, then one timed pass (its BLEU and sentences/s)."""
    from attnseq.data import read_parallel
    from attnseq.runtime import keep_freed_memory
    from attnseq.translate import Translator

    keep_freed_memory()  # as the attnseq command does
    translator = Translator.from_pretrained(args.model, device=args.device)
    pairs = read_parallel(Path(args.data) / "test.en", Path(args.data) / "test.de")
    src, ref = [s for s, _ in pairs], [r for _, r in pairs]
    results: dict[str, dict[str, dict]] = {}
    for precision in args.precisions.split(","):
        translator.config.decode.precision = precision
        for beam in map(int, args.beams.split(",")):
            for _ in range(args.untimed + 1):
                _, scores = translator.evaluate(src, ref, beam_size=beam, batch_size=BATCH)
            results.setdefault(precision, {})[str(beam)] = {"sent_s": scores["sent_s"], "bleu": scores["bleu"]}
    print(json.dumps(results))


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
        choices=["all", "training", "decoding"],
        default="all",
        help="training: throughput and FLOP/s only; decoding: BLEU and decoding speed only",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (median)")
    parser.add_argument("--warmup", type=int, default=25, help="training steps before the timed ones")
    parser.add_argument("--measure", type=int, default=150, help="timed training steps per repetition")
    parser.add_argument("--steps", type=int, default=1500, help="training steps before BLEU and decoding")
    parser.add_argument("--seeds", type=int, default=8, help="attnseq trainings per precision (BLEU: their mean)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="decoding: take the models trained by an earlier run in --out (same --steps) instead of training anew",
    )
    parser.add_argument("--child", choices=["throughput", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="general", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--precisions", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--beams", default="1,5", help=argparse.SUPPRESS)
    parser.add_argument("--untimed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return (child_throughput if args.child == "throughput" else child_decode)(args)

    import torch

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(work)
    device = args.device
    onmt = onmt_env(Path(args.onmt_venv), args.onmt_python)
    run([*onmt, "-m", "onmt.bin.build_vocab", "-config", str(onmt_config(work, data, "general", 1, None, device)),
         "-n_sample", "-1"])  # fmt: skip
    peak = matmul_peak(args.reps, device)
    log(f"matmul peak on {device}: {peak['fp32']:.0f} GFLOP/s fp32, {peak['bf16']:.0f} bf16")

    summary: dict = {"device": device, "reps": args.reps, "matmul_gflops": peak}
    gpu = f"{torch.cuda.get_device_name()}, " if device == "cuda" else ""
    print(f"\nmachine: {gpu}{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"matmul 2048^2 peak fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"
          + (f"; oneDNN with a packed weight fp32 {peak['onednn_fp32']:.0f}, bf16 {peak['onednn_bf16']:.0f}"
             if device == "cpu" else ""), flush=True)  # fmt: skip
    if args.part in ("all", "training"):
        summary.update(measure_training(args, work, data, onmt, peak))
    if args.part in ("all", "decoding"):
        summary.update(measure_decoding(args, work, data, onmt))
    print("reproduce: " + shlex.join([sys.executable, *sys.argv]))
    print(json.dumps(summary))


def measure_training(args, work: Path, data: Path, onmt: list[str], peak: dict) -> dict:
    """Training target tokens/s of both toolkits, each repetition a fresh process, in turn; prints
    the table and returns the figures."""
    device = args.device
    common = ["--data", str(data), "--reps", str(args.reps), "--device", device]
    train: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.reps):
        for attention in ONMT_ATTENTION:
            cfg = onmt_config(work, data, attention, args.warmup + args.measure, None, device)
            tok_s, rss, _ = onmt_train(onmt, cfg, args.warmup)
            log(f"OpenNMT-py {attention}: {tok_s:,.0f} target tok/s")
            train.setdefault(("onmt", attention), []).append({"tok_s": tok_s, "rss_mib": rss})
            for precision in ("fp32", "bf16"):
                r = child([*common, "--child", "throughput", "--attention", attention, "--precision", precision,
                           "--warmup", str(args.warmup), "--measure", str(args.measure)])  # fmt: skip
                train.setdefault((precision, attention), []).append(r)
                log(f"attnseq {precision} {attention}: {r['tok_s']:,.0f} target tok/s")
    vocab = train[("fp32", "general")][0]["vocab"]
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("tok_s", "rss_mib")} for k, v in train.items()}
    flops = {att: flops_per_target_token(data, att, vocab) for att in ONMT_ATTENTION}
    rows = []
    for att in ONMT_ATTENTION:
        for who, label in (("onmt", "OpenNMT-py 3.5.1 fp32"), ("fp32", "attnseq fp32"), ("bf16", "attnseq bf16")):
            m = med[(who, att)]
            gflops = m["tok_s"] * flops[att] / 1e9
            rows.append((att, label, m["tok_s"], gflops, gflops / peak["fp32"], m["rss_mib"]))
    print(
        f"training (median of {args.reps}; {args.measure} steps after {args.warmup}; target vocabulary {vocab}; "
        f"{flops['general'] / 1e6:.1f} / {flops['concat'] / 1e6:.1f} MFLOP per target token general / concat)"
    )
    print("| attention | toolkit | target tok/s | GFLOP/s | of fp32 peak | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for att, label, tok_s, gflops, frac, rss in rows:
        print(f"| {att} | {label} | {tok_s:,.0f} | {gflops:.0f} | {frac:.1%} | {rss:,.0f} |")
    summary = {
        "train_tok_s_ratio": med[("bf16", "general")]["tok_s"] / med[("onmt", "general")]["tok_s"],
        "train_tok_s_ratio_concat": med[("bf16", "concat")]["tok_s"] / med[("onmt", "concat")]["tok_s"],
        "train_tok_s_ratio_fp32": med[("fp32", "general")]["tok_s"] / med[("onmt", "general")]["tok_s"],
        "train_tok_s_ratio_fp32_concat": med[("fp32", "concat")]["tok_s"] / med[("onmt", "concat")]["tok_s"],
        "peak_fraction": rows[1][4],
        "peak_fraction_onmt": rows[0][4],
        "train": {f"{w}_{a}": v for (w, a), v in med.items()},
    }
    line = (
        "training, attnseq / OpenNMT-py: bf16 {train_tok_s_ratio:.2f}x general, {train_tok_s_ratio_concat:.2f}x "
        "concat; fp32 {train_tok_s_ratio_fp32:.2f}x, {train_tok_s_ratio_fp32_concat:.2f}x; fp32 step at "
        "{peak_fraction:.1%} of the fp32 matmul peak (OpenNMT-py {peak_fraction_onmt:.1%})"
    )
    if "onednn_fp32" in peak:  # a CPU: the same against oneDNN's packed product
        summary["peak_fraction_onednn"] = rows[1][4] * peak["fp32"] / peak["onednn_fp32"]
        summary["peak_fraction_onednn_onmt"] = rows[0][4] * peak["fp32"] / peak["onednn_fp32"]
        line += "; {peak_fraction_onednn:.0%} / {peak_fraction_onednn_onmt:.0%} of oneDNN's"
    print(line.format(**summary), flush=True)
    return summary


def measure_decoding(args, work: Path, data: Path, onmt: list[str]) -> dict:
    """BLEU and decoding speed of both toolkits after the same --steps training steps (general
    attention); prints the table and returns the figures."""
    device = args.device
    onmt_model = work / "onmt" / "model"
    onmt_ckpt = Path(f"{onmt_model}_step_{args.steps}.pt")
    if not (args.reuse and onmt_ckpt.exists()):
        log(f"training OpenNMT-py for {args.steps} steps")
        _, _, out = onmt_train(onmt, onmt_config(work, data, "general", args.steps, onmt_model, device), 0)
        (work / "onmt_train.log").write_text(out, encoding="utf-8")
    refs = (data / "test.de").read_text(encoding="utf-8").splitlines()
    # attnseq: --seeds trainings per precision. The fast path: bf16 training, then int8 decoding on
    # a CPU (bf16 on a GPU, which has no int8 path); the bf16 model is also decoded in bf16. Each
    # fp32 model is also decoded in bf16 and int8: what the decoding precision alone costs, on the
    # same weights. BLEU is the mean over the seeds.
    lower = ("bf16", "int8") if device == "cpu" else ("bf16",)
    decoded_as = {"fp32": ("fp32", *lower), "bf16": lower}
    fast = "bf16_as_int8" if device == "cpu" else "bf16"

    def key(trained: str, decoded: str) -> str:
        return trained if decoded == trained else f"{trained}_as_{decoded}"

    def decode_child(model: Path, precisions, untimed: int) -> dict:
        result = child(["--data", str(data), "--device", device, "--child", "decode", "--model", str(model),
                        "--precisions", ",".join(precisions), "--untimed", str(untimed)])  # fmt: skip
        result.pop("rss_mib")
        return result

    seed_bleu: dict[str, list[float]] = {}
    first_model: dict[str, Path] = {}
    for precision in ("fp32", "bf16"):
        for i in range(args.seeds):
            run_dir = work / f"attnseq_{precision}" if i == 0 else work / f"attnseq_{precision}_seed{i}"
            if not (args.reuse and (run_dir / "last").exists()):
                if run_dir.exists():
                    shutil.rmtree(run_dir)
                log(f"training attnseq {precision} for {args.steps} steps (seed {i + 1} of {args.seeds})")
                overrides = attnseq_overrides(data, "general", precision, device) + [
                    f"train.max_steps={args.steps}", f"train.seed={1234 + i}"
                ]  # fmt: skip
                run([sys.executable, "-m", "attnseq", "train", str(RECIPE), "--out", str(run_dir),
                     *[a for o in overrides for a in ("--set", o)]],
                    save_output=run_dir.with_name(run_dir.name + "_train.log"))  # fmt: skip
            first_model.setdefault(precision, run_dir / "last")
            for decoded, by_beam in decode_child(run_dir / "last", decoded_as[precision], 0).items():
                for beam, res in by_beam.items():
                    seed_bleu.setdefault(f"{key(precision, decoded)}_beam{beam}", []).append(res["bleu"])
                    log(f"attnseq {key(precision, decoded)} beam {beam}: BLEU {res['bleu']:.2f}")

    # Speed, in --reps rounds side by side: each round decodes with OpenNMT-py, then with every
    # attnseq model and precision in turn (each seed-1 model once, in a fresh process: one untimed
    # pass, which builds its decoding copy, then the timed one), so that the machine's drift over
    # the run moves both toolkits alike. A ratio is the median of the rounds' ratios.
    rounds: dict[tuple[str, int], list[float]] = {}
    onmt_bleu = {}
    for r in range(args.reps):
        for beam in (1, 5):
            output = work / f"onmt_beam{beam}.txt"
            rounds.setdefault(("onmt", beam), []).append(onmt_translate(onmt, onmt_ckpt, data, beam, output, device))
            hyps = output.read_text(encoding="utf-8").splitlines()
            onmt_bleu[beam] = sacrebleu.corpus_bleu(hyps, [refs]).score
        for precision, model in first_model.items():
            for decoded, by_beam in decode_child(model, decoded_as[precision], 1).items():
                for beam, res in by_beam.items():
                    rounds.setdefault((key(precision, decoded), int(beam)), []).append(res["sent_s"])
        log(f"round {r + 1} of {args.reps}: " + ", ".join(
            f"{who} beam {beam} {v[-1]:,.0f}" for (who, beam), v in rounds.items()) + " sentences/s")  # fmt: skip
    decode: dict[tuple[str, int], dict] = {}
    for (who, beam), rates in rounds.items():
        bleu = onmt_bleu[beam] if who == "onmt" else statistics.mean(seed_bleu[f"{who}_beam{beam}"])
        decode[(who, beam)] = {"sent_s": statistics.median(rates), "bleu": bleu, "rounds": rates}

    print(
        f"\nafter {args.steps} training steps, general attention; test_2016_flickr, batch {BATCH} "
        f"(median of {args.reps})"
    )
    print("| toolkit | BLEU greedy | BLEU beam 5 | greedy sent/s | beam 5 sent/s |")
    print("|---|---:|---:|---:|---:|")
    decoders = (("onmt", "OpenNMT-py 3.5.1 fp32"), ("fp32", "attnseq fp32"), ("bf16", "attnseq bf16"),
                ("bf16_as_int8", "attnseq bf16-trained, int8 decoding (fast path)"),
                ("fp32_as_bf16", "attnseq fp32-trained, bf16 decoding"),
                ("fp32_as_int8", "attnseq fp32-trained, int8 decoding"))  # fmt: skip
    for who, label in decoders:
        if (who, 1) in decode:  # int8: a CPU only
            g, b = decode[(who, 1)], decode[(who, 5)]
            print(f"| {label} | {g['bleu']:.2f} | {b['bleu']:.2f} | {g['sent_s']:,.0f} | {b['sent_s']:,.0f} |")
    print(
        f"attnseq BLEU: mean of {args.seeds} trainings (seeds 1234...); decoding speed: the first one's model; "
        f"ratios below: the median of the {args.reps} rounds' ratios"
    )
    for key, values in seed_bleu.items():
        print(f"  {key}: " + ", ".join(f"{v:.2f}" for v in values))

    def from_fp32(key: str) -> tuple[float, float]:
        """The beam-5 BLEU difference from the fp32 models, seed by seed: its mean, and that mean's
        standard error (the spread of the seeds' differences / sqrt(seeds))."""
        diffs = [a - b for a, b in zip(seed_bleu[f"{key}_beam5"], seed_bleu["fp32_beam5"], strict=True)]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        return statistics.mean(diffs), se

    def ratio(who: str, beam: int) -> float:  # the median of the rounds' ratios
        pairs = zip(decode[(who, beam)]["rounds"], decode[("onmt", beam)]["rounds"], strict=True)
        return statistics.median(a / b for a, b in pairs)

    fast_diff, fast_se = from_fp32(fast)
    summary = {
        "fast_path": "bf16 training, " + ("int8 decoding" if fast.endswith("int8") else "bf16 decoding"),
        "greedy_sent_s_ratio": ratio(fast, 1),
        "beam5_sent_s_ratio": ratio(fast, 5),
        "greedy_sent_s_ratio_bf16": ratio("bf16", 1),
        "beam5_sent_s_ratio_bf16": ratio("bf16", 5),
        "greedy_sent_s_ratio_fp32": ratio("fp32", 1),
        "beam5_sent_s_ratio_fp32": ratio("fp32", 5),
        "bleu_diff": decode[(fast, 5)]["bleu"] - decode[("onmt", 5)]["bleu"],
        "bleu_diff_fp32": decode[("fp32", 5)]["bleu"] - decode[("onmt", 5)]["bleu"],
        "fast_bleu_diff": fast_diff,
        "fast_bleu_diff_se": fast_se,
        "bf16_bleu_diff": from_fp32("bf16")[0],
        "bf16_decode_bleu_diff": from_fp32("fp32_as_bf16")[0],
        "seed_bleu": seed_bleu,
        "decode": {f"{w}_beam{b}": v for (w, b), v in decode.items()},
        "steps": args.steps,
        "seeds": args.seeds,
    }
    line = (
        "decoding, attnseq fast path ({fast_path}) / OpenNMT-py: greedy {greedy_sent_s_ratio:.2f}x, "
        "beam 5 {beam5_sent_s_ratio:.2f}x (bf16 decoding {greedy_sent_s_ratio_bf16:.2f}x, "
        "{beam5_sent_s_ratio_bf16:.2f}x; fp32 {greedy_sent_s_ratio_fp32:.2f}x, {beam5_sent_s_ratio_fp32:.2f}x); "
        "BLEU diff {bleu_diff:+.2f}; fast path - fp32 {fast_bleu_diff:+.2f} (standard error "
        "{fast_bleu_diff_se:.2f}), bf16 - fp32 {bf16_bleu_diff:+.2f} (bf16 decoding alone {bf16_decode_bleu_diff:+.2f})"
    )
    if ("fp32_as_int8", 1) in decode:
        summary.update(
            int8_decode_bleu_diff=from_fp32("fp32_as_int8")[0],
            greedy_sent_s_ratio_int8=ratio("fp32_as_int8", 1),
            beam5_sent_s_ratio_int8=ratio("fp32_as_int8", 5),
        )
        line += (
            "; the fp32 model in int8: {int8_decode_bleu_diff:+.2f} BLEU, greedy {greedy_sent_s_ratio_int8:.2f}x, "
            "beam 5 {beam5_sent_s_ratio_int8:.2f}x"
        )
    print(line.format(**summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
