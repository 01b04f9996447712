"""The commands a user runs, end to end on a tiny model: train, translate, evaluate, plot, dates."""

from __future__ import annotations

import io
import json

import pytest

from attnseq.cli import main
from attnseq.data import read_tsv
from tests.conftest import DATES_CONFIG


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dates_dir):
    """A small model trained through the CLI; shared by this module's tests."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "train",
            str(DATES_CONFIG),
            "--out",
            str(out),
            "--set",
            f"data.train={dates_dir / 'train.tsv'}",
            "--set",
            f"data.valid={dates_dir / 'valid.tsv'}",
            "--set",
            "model.emb_size=32",
            "--set",
            "model.enc_hidden_size=64",
            "--set",
            "model.dec_hidden_size=64",
            "--set",
            "model.dropout=0.0",
            "--set",
            "train.lr=0.005",
            "--set",
            "train.batch_size=32",
            "--set",
            "train.max_epochs=2",
            "--set",
            "train.max_minutes=0",
        ]
    )
    assert code == 0
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
    assert from_stdin == from_file and len(from_file) == 2
    assert all(len(line) <= 25 for line in from_file)  # bounded by max_len_a * |src| + max_len_b


def test_plot_writes_a_png(run_dir, tmp_path, capsys):
    png = tmp_path / "att.png"
    assert main(["plot", "--model", str(run_dir), "3 March 2021", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in capsys.readouterr().out


def test_plot_of_a_model_without_attention_is_a_clear_error(tmp_path, dates_dir, capsys):
    out = tmp_path / "init"
    assert (
        main(
            [
                "train",
                str(DATES_CONFIG),
                "--out",
                str(out),
                "--set",
                f"data.train={dates_dir / 'valid.tsv'}",
                "--set",
                f"data.valid={dates_dir / 'valid.tsv'}",
                "--set",
                "model.decoder=init",
                "--set",
                "train.max_steps=1",
                "--set",
                "model.emb_size=8",
                "--set",
                "model.enc_hidden_size=8",
                "--set",
                "model.dec_hidden_size=8",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["plot", "--model", str(out), "3 March 2021", "--out", str(tmp_path / "x.png")]) == 2
    assert "has no attention to plot" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_resume_through_the_cli(tmp_path, dates_dir, capsys):
    common = [
        "--set",
        f"data.train={dates_dir / 'valid.tsv'}",
        "--set",
        f"data.valid={dates_dir / 'valid.tsv'}",
        "--set",
        "model.emb_size=8",
        "--set",
        "model.enc_hidden_size=8",
        "--set",
        "model.dec_hidden_size=8",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.patience=0",
        "--set",
        "train.log_every=1",
    ]
    out = tmp_path / "run"
    assert main(["train", str(DATES_CONFIG), "--out", str(out), *common, "--set", "train.max_steps=2"]) == 0
    assert main(["train", str(DATES_CONFIG), "--out", str(out), "--resume", *common, "--set", "train.max_steps=6"]) == 0
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
