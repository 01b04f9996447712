"""Precision chosen by what the device runs: `auto` resolved from the capabilities (forced both ways
here), a one-line error for an explicit precision the device lacks, models moving between
precisions, a recipe-shaped LSTM trained under `auto`, the bias-corrected weight average, the
progress line and Ctrl-C before the first save."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnseq import runtime
from attnseq.cli import main
from attnseq.config import load_config
from attnseq.errors import AttnseqError
from attnseq.tasks.translation import Translator
from attnseq.trainer import Trainer, bias_corrected_ema
from tests.conftest import CPU, DATES_CONFIG

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "multi30k_en_de.yaml"
# what makes an AVX-512 CPU answer as an AVX2-only one (.ci/run runs the whole suite under it too)
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}  # fmt: skip
NO_BF16 = "oneDNN runs no bf16 kernels on this CPU (instruction set AVX2; bf16 needs AVX512-BF16 or AMX)"


def force(monkeypatch, **answers):
    """Make `runtime.capabilities` answer as a device with these fields would."""
    fake = dataclasses.replace(runtime.capabilities("cpu"), **answers)
    monkeypatch.setattr(runtime, "capabilities", lambda device="cpu": fake)
    return fake


@pytest.mark.parametrize(
    ("answers", "train", "decode"),
    [
        (dict(bf16=True, bf16_missing="", int8_engine="onednn"), "bf16", "int8"),
        (dict(bf16=False, bf16_missing=NO_BF16, int8_engine="onednn"), "fp32", "int8"),
        (dict(bf16=False, bf16_missing=NO_BF16, int8_engine=""), "fp32", "fp32"),
        (dict(bf16=True, bf16_missing="", int8_engine=""), "bf16", "bf16"),
        (dict(device="cuda", bf16=True, bf16_missing="", int8_engine=""), "bf16", "fp32"),
    ],
)
def test_auto_is_the_fastest_precision_the_device_runs(monkeypatch, answers, train, decode):
    force(monkeypatch, **answers)
    assert runtime.resolve_precision("auto", stage="train") == train
    assert runtime.resolve_precision("auto", stage="decode") == decode
    assert runtime.resolve_precision("fp32", stage="train") == "fp32"  # fp32 runs everywhere


def test_an_explicit_precision_the_device_lacks_names_what_is_missing(monkeypatch):
    force(monkeypatch, bf16=False, bf16_missing=NO_BF16, int8_engine="")
    with pytest.raises(AttnseqError) as info:
        runtime.resolve_precision("bf16", stage="train", where="train.precision")
    assert str(info.value) == f"train.precision bf16: {NO_BF16}; use auto (here: fp32) or fp32"
    with pytest.raises(AttnseqError, match="int8: no quantized engine runs here; use auto"):
        runtime.resolve_precision("int8", stage="decode")
    force(monkeypatch, bf16=True, bf16_missing="")
    assert runtime.resolve_precision("bf16", stage="decode") == "bf16"


def test_the_probe_leaves_the_random_stream_and_the_quantized_engine_alone():
    engine, rng = torch.backends.quantized.engine, torch.get_rng_state()
    runtime.capabilities.cache_clear()
    caps = runtime.capabilities("cpu")
    assert torch.equal(rng, torch.get_rng_state()) and torch.backends.quantized.engine == engine
    assert caps == CPU and "fp32" in caps.packed and caps.isa == torch.backends.cpu.get_cpu_capability()
    assert caps.bf16 == (not caps.bf16_missing)


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, dates_dir):
    """A small dates model trained through the CLI with every precision left at auto."""
    out = tmp_path_factory.mktemp("auto") / "run"
    sets = [f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
            "model.emb_size=32", "model.enc_hidden_size=64", "model.dec_hidden_size=64", "train.lr=0.005",
            "train.batch_size=32", "train.max_epochs=2", "train.max_minutes=0"]  # fmt: skip
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    return out


def test_resolved_precision_is_printed_logged_and_saved(auto_run, dates_dir, capsys):
    want = {
        "train.precision": "bf16" if CPU.bf16 else "fp32",
        "decode.precision": "int8" if CPU.int8_engine else "fp32",
    }
    start = json.loads((auto_run / "metrics.jsonl").read_text().splitlines()[0])
    assert {k: start["resolved"][k] for k in want} == want and start["resolved"]["device"] == CPU.summary()
    for model in ("best", "last"):
        saved = json.loads((auto_run / model / "config.json").read_text())
        assert saved["train"]["precision"] == saved["decode"]["precision"] == "auto"  # what was asked for ...
        assert {k: saved["resolved"][k] for k in want} == want  # ... and what it ran as
    assert main(["evaluate", "--model", str(auto_run), "--data", str(dates_dir / "test.tsv"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["precision"] == want["decode.precision"]
    assert err == f"attnseq: decoding in {want['decode.precision']} (auto on {CPU.summary()})\n"


def decodable() -> list[str]:
    return ["fp32", "bf16", "int8"] if CPU.bf16 else ["fp32", "int8"]


def test_a_model_decodes_under_every_precision_this_cpu_runs(auto_run, dates_dir):
    """Trained under auto (bf16 where native), decoded in each precision: the same dates."""
    sources = [line.split("\t")[0] for line in (dates_dir / "test.tsv").read_text().splitlines()[:40]]
    translator = Translator.from_pretrained(auto_run)
    found = {}
    for precision in decodable():
        translator.config.decode.precision = precision
        assert translator.precision == precision
        found[precision] = [t.text for t in translator.translate(sources, beam_size=1)]
    for precision, texts in found.items():
        agree = sum(a == b for a, b in zip(texts, found["fp32"]))
        assert agree >= 38, (precision, agree)


def test_a_model_trained_in_fp32_decodes_under_auto(tmp_path, tiny_config):
    cfg = tiny_config("train.precision=fp32", "train.max_steps=30", "train.lr=0.01")
    Trainer(cfg, tmp_path / "run", progress_bar=False).fit()
    translator = Translator.from_pretrained(tmp_path / "run")
    assert translator.config.train.precision == "fp32" and translator.config.decode.precision == "auto"
    reference = translator.translate(["3 March 2021", "July 4, 1976"], beam_size=2)
    translator.config.decode.precision = "fp32"
    assert [t.text for t in translator.translate(["3 March 2021", "July 4, 1976"], beam_size=2)] == [
        t.text for t in reference
    ]


def test_cli_refuses_bf16_where_it_is_not_native(monkeypatch, auto_run, dates_dir, tmp_path, capsys):
    force(monkeypatch, bf16=False, bf16_missing=NO_BF16)
    monkeypatch.setattr("sys.stdin", io.StringIO("3 March 2021\n"))
    assert main(["translate", "--model", str(auto_run), "--precision", "bf16"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"attnseq: error: decode.precision bf16: {NO_BF16}; use auto (here: int8) or fp32\n"
    assert sys.stdin.read() == "3 March 2021\n"  # nothing was read
    sets = ["--set", f"data.train={dates_dir / 'valid.tsv'}", "--set", f"data.valid={dates_dir / 'valid.tsv'}"]
    code = main(["train", str(DATES_CONFIG), "--out", str(tmp_path / "r"), "--set", "train.precision=bf16", *sets])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "train.precision bf16: " + NO_BF16 in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_an_avx2_only_cpu_refuses_bf16_in_one_line(auto_run):
    """Under the AVX2-only emulation the real capability checks answer no (not a forced answer)."""
    env = {**os.environ, **AVX2_ONLY}
    argv = [sys.executable, "-m", "attnseq", "translate", "--model", str(auto_run), "--precision", "bf16"]
    proc = subprocess.run(argv, input="3 March 2021\n", capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"attnseq: error: decode.precision bf16: {NO_BF16}; use auto (here: int8) or fp32\n"


def test_a_recipe_shaped_lstm_trains_under_auto(tmp_path, dates_dir):
    """The Multi30k recipe's model (biLSTM, Luong general without input feeding, tied embeddings,
    uniform init, label smoothing, weight average), small, a few steps under train.precision auto."""
    cfg = load_config(RECIPE, [
        f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}", "data.test=",
        "data.src_suffix=", "data.tgt_suffix=", "data.spm_vocab_size=120",
        "model.emb_size=64", "model.enc_hidden_size=64", "model.dec_hidden_size=64",
        "train.max_steps=40", "train.max_minutes=0", "train.snapshot_minutes=0", "train.valid_max_sentences=20",
    ])  # fmt: skip
    assert cfg.train.precision == "auto" and cfg.model.rnn == "lstm" and not cfg.model.input_feeding
    trainer = Trainer(cfg, tmp_path / "run", progress_bar=False)
    assert trainer.precision == ("bf16" if CPU.bf16 else "fp32")
    losses = trainer.fit().losses
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses


def test_the_weight_average_is_bias_corrected():
    """After n updates w_k weighs (1 - d) d^(n-k) / (1 - d^n): the first update copies, none of the
    starting weights stay."""
    decay, weights = 0.999, [torch.randn(5, dtype=torch.float64) for _ in range(4)]
    update, average = bias_corrected_ema(decay), [torch.zeros(5, dtype=torch.float64)]
    for n, w in enumerate(weights):
        update(average, [w], torch.tensor(n))
        k = torch.arange(n + 1, dtype=torch.float64)
        coeff = (1 - decay) * decay ** (n - k) / (1 - decay ** (n + 1))
        want = sum(c * v for c, v in zip(coeff, weights))
        torch.testing.assert_close(average[0], want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(sum(coeff), torch.tensor(1.0, dtype=torch.float64))


def test_a_short_run_with_a_slow_average_keeps_a_trained_best(tmp_path, tiny_config):
    """ema_decay 0.999 over 60 steps: best/ (the average) is about as good as last/, not the
    initialization (which an uncorrected average would still mostly be)."""
    cfg = tiny_config("train.ema_decay=0.999", "train.max_steps=60", "train.lr=0.01", "train.valid_metric=loss")
    trainer = Trainer(cfg, tmp_path / "run", progress_bar=False)
    initial = trainer.validate()["loss"]
    trainer.fit()
    averaged = trainer.validate()["loss"]
    trainer.eval_model = trainer.model
    trained = trainer.validate()["loss"]
    assert averaged < initial - 0.5 * (initial - trained), (initial, averaged, trained)


def test_progress_line_shows_on_a_terminal_only(tmp_path, dates_dir):
    """On a pseudo-terminal stderr shows steps, loss, tok/s and the time left; in a pipe, nothing."""
    argv = [sys.executable, "-m", "attnseq", "train", str(DATES_CONFIG)]
    sets = [f"data.train={dates_dir / 'valid.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
            "model.emb_size=8", "model.enc_hidden_size=8", "model.dec_hidden_size=8", "train.batch_size=4",
            "train.max_epochs=2"]  # fmt: skip
    flags = [a for s in sets for a in ("--set", s)]
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "tty"), *flags], stdout=subprocess.DEVNULL,
                            stderr=follower, stdin=subprocess.DEVNULL)  # fmt: skip
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert "/30 steps" in text and "tok/s" in text and "left" in text and "loss" in text, text
    piped = subprocess.run([*argv, "--out", str(tmp_path / "pipe"), *flags], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert piped.returncode == 0 and "steps" not in piped.stderr and "tok/s" not in piped.stderr


def interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C arrives during training step `step` (1-based)."""
    original = Trainer.train_step

    def train_step(self, batches, units):
        if self.progress.step + 1 == step:
            raise KeyboardInterrupt
        return original(self, batches, units)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_ctrl_c_before_the_first_save_leaves_nothing(monkeypatch, tmp_path, dates_dir, capsys):
    interrupt_at(monkeypatch, 3)
    out = tmp_path / "run"
    sets = ["--set", f"data.train={dates_dir / 'valid.tsv'}", "--set", f"data.valid={dates_dir / 'valid.tsv'}",
            "--set", "train.batch_size=4"]  # fmt: skip
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *sets]) == 130
    err = capsys.readouterr().err
    assert err == f"attnseq: interrupted at step 2; before the first save: nothing was kept and {out} was removed\n"
    assert not out.exists()
    assert main(["train", str(DATES_CONFIG), "--out", str(out), "--resume", *sets]) == 2  # and --resume agrees
    assert "nothing to resume" in capsys.readouterr().err


def test_ctrl_c_after_a_save_says_where_resume_continues(monkeypatch, tmp_path, dates_dir, capsys):
    interrupt_at(monkeypatch, 4)
    out = tmp_path / "run"
    sets = ["--set", f"data.train={dates_dir / 'valid.tsv'}", "--set", f"data.valid={dates_dir / 'valid.tsv'}",
            "--set", "train.save_every=2", "--set", "train.batch_size=8", "--set", "train.max_epochs=1"]  # fmt: skip
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *sets]) == 130
    assert capsys.readouterr().err == (
        "attnseq: interrupted at step 3; the last save is at step 2: continue from it with --resume\n"
    )
    monkeypatch.undo()
    assert main(["train", str(DATES_CONFIG), "--out", str(out), "--resume", *sets]) == 0
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 8  # 60 pairs / 8


def test_fit_applies_num_threads_for_its_own_duration(monkeypatch, tmp_path, tiny_config):
    seen, original = [], Trainer.train_step

    def train_step(self, batches, units):
        seen.append(torch.get_num_threads())
        return original(self, batches, units)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Trainer(tiny_config("train.num_threads=1", "train.max_steps=3"), tmp_path / "run", progress_bar=False).fit()
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
