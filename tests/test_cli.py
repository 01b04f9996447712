"""The commands a user runs, end to end on a tiny model: train, translate, evaluate, plot, dates."""

from __future__ import annotations

import io
import json
import re

import pytest

from attnseq import Translator
from attnseq.cli import main
from attnseq.readers import read_tsv
from tests.conftest import DATES_CONFIG


def sets(*overrides: str) -> list[str]:
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [arg for o in overrides for arg in ("--set", o)]


def tiny_run(out, dates_dir, *overrides: str, resume: bool = False) -> int:
    """Train a tiny model on the 60 validation pairs through the CLI."""
    data = (f"data.train={dates_dir / 'valid.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}")
    size = ("model.emb_size=8", "model.enc_hidden_size=8", "model.dec_hidden_size=8", "train.batch_size=16")
    flags = ["--resume"] if resume else []
    return main(["train", str(DATES_CONFIG), "--out", str(out), *flags, *sets(*data, *size, *overrides)])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dates_dir):
    """A small model trained through the CLI on 3000 pairs; shared by this module's tests."""
    out = tmp_path_factory.mktemp("cli") / "run"
    overrides = sets(
        f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
        "model.emb_size=32", "model.enc_hidden_size=64", "model.dec_hidden_size=64", "model.dropout=0.0",
        "train.lr=0.005", "train.batch_size=32", "train.max_epochs=2", "train.max_minutes=0",
    )  # fmt: skip
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *overrides]) == 0
    return out


def test_train_learns_and_writes_a_run(run_dir, dates_dir, capsys):
    """A tiny run (3000 pairs, 2 epochs) gets most held-out dates right."""
    assert (run_dir / "best" / "model.safetensors").is_file()
    test = read_tsv(dates_dir / "test.tsv")
    assert main(["evaluate", "--model", str(run_dir), "--data", str(dates_dir / "test.tsv"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["sentences"] == len(test)
    assert scores["exact_match"] >= 50.0, scores
    assert 0 <= scores["chrf"] <= 100 and scores["bleu_signature"].startswith("nrefs:1")


def test_translate_stdin_and_input_file(run_dir, tmp_path, capsys, monkeypatch):
    lines = ["3 March 2021", "the 4th of July, 1976"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["translate", "--model", str(run_dir)]) == 0
    from_stdin = capsys.readouterr().out.splitlines()
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    assert main(["translate", "--model", str(run_dir / "best"), "--input", str(tmp_path / "in.txt")]) == 0
    from_file = capsys.readouterr().out.splitlines()
    assert from_stdin == from_file
    assert from_file == [tr.text for tr in Translator.from_pretrained(run_dir).translate(lines)]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", line) for line in from_file), from_file


def test_translate_json_carries_the_attention(run_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("3 March 2021\n")
    assert main(["translate", "--model", str(run_dir), "--input", str(tmp_path / "in.txt"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["input_tokens"] == [*"3▁March▁2021", "</s>"]
    assert len(record["attention"]) == len(record["output_tokens"])
    assert all(len(row) == len(record["input_tokens"]) and abs(sum(row) - 1) < 1e-3 for row in record["attention"])
    assert record["score"] <= 0 and record["output"] == "".join(t for t in record["output_tokens"] if t != "</s>")


def test_plot_writes_a_png(run_dir, tmp_path, capsys):
    png = tmp_path / "att.png"
    assert main(["plot", "--model", str(run_dir), "3 March 2021", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().out


def test_plot_of_a_model_without_attention_is_a_clear_error(tmp_path, dates_dir, capsys):
    assert tiny_run(tmp_path / "init", dates_dir, "model.decoder=init", "train.max_steps=1") == 0
    banner = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("training "))
    assert banner.startswith("training init/general model, ") and " parameters, 60 pairs" in banner, banner
    assert main(["plot", "--model", str(tmp_path / "init"), "3 March 2021", "--out", str(tmp_path / "x.png")]) == 2
    assert "has no attention to plot" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_resume_through_the_cli(tmp_path, dates_dir, capsys):
    out = tmp_path / "run"
    common = ("train.patience=0", "train.log_every=1")
    assert tiny_run(out, dates_dir, *common, "train.max_steps=2") == 0
    assert tiny_run(out, dates_dir, *common, "train.max_steps=6", resume=True) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_dates_command_is_deterministic(tmp_path, capsys):
    assert main(["dates", "--out", str(tmp_path / "a")]) == 0
    assert main(["dates", "--out", str(tmp_path / "b")]) == 0
    for split in ("train", "valid", "test"):
        assert (tmp_path / "a" / f"{split}.tsv").read_bytes() == (tmp_path / "b" / f"{split}.tsv").read_bytes()
    train = {t for _, t in read_tsv(tmp_path / "a" / "train.tsv")}
    test = {t for _, t in read_tsv(tmp_path / "a" / "test.tsv")}
    assert train and test and not train & test  # held-out dates never appear in training


def test_demo_runs_any_wiring_and_replaces_its_own_run(tmp_path, capsys):
    """The demo with a no-attention model: curves but no heatmaps; a second run replaces the first."""
    out, data = tmp_path / "demo", tmp_path / "dates"
    argv = ["demo", str(DATES_CONFIG), "--out", str(out), "--data-dir", str(data), *sets(
        "model.decoder=init", "model.emb_size=8", "model.enc_hidden_size=8", "model.dec_hidden_size=8",
        "train.max_steps=2", "train.valid_max_sentences=20",
    )]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "no attention heatmaps: model.decoder = init has no attention" in printed
    assert re.fullmatch(r"held-out exact match: \d+\.\d%", printed.strip().splitlines()[-1])
    assert (out / "training.png").is_file() and not list(out.glob("attention_*.png"))
    (out / "stale.txt").write_text("from the first run\n")
    assert main(argv) == 0
    assert not (out / "stale.txt").exists() and (out / "best" / "model.safetensors").is_file()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_the_command_says_its_version(flag, capsys):
    import subprocess
    import sys

    import attnseq

    with pytest.raises(SystemExit) as stop:
        main([flag])
    assert stop.value.code == 0 and capsys.readouterr().out == f"attnseq {attnseq.__version__}\n"
    shell = subprocess.run([sys.executable, "-m", "attnseq", flag], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"attnseq \d+\.\d+\.\d+\n", shell.stdout)
