"""The CLI's contract for bad input: exit status 2, exactly one stderr line `attnseq: error: ...` that
names the file and line (or the key), no traceback, and nothing written to --out."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnseq.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATES_CONFIG = ROOT / "configs" / "dates.yaml"
TINY = ("model.emb_size=8", "model.enc_hidden_size=8", "model.dec_hidden_size=8")
GOOD_LINES = "3 Mar 2021\t2021-03-03\n4 Apr 2020\t2020-04-04\n5 May 2019\t2019-05-05\n"


@pytest.fixture
def data(tmp_path) -> dict[str, Path]:
    """Good train / valid TSV files, and the --set overrides that point the dates config at them."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.tsv").write_text(GOOD_LINES, encoding="utf-8")
    (d / "valid.tsv").write_text(GOOD_LINES, encoding="utf-8")
    return {"dir": d, "train": d / "train.tsv", "valid": d / "valid.tsv"}


def data_overrides(train: Path, valid: Path) -> list[str]:
    return [f"data.train={train}", f"data.valid={valid}", "data.test="]


def train(capsys, config: Path, out: Path, overrides, *, resume: bool = False):
    argv = ["train", str(config), "--out", str(out)]
    for o in (*TINY, *overrides):
        argv += ["--set", o]
    if resume:
        argv.append("--resume")
    code = main(argv)
    return code, capsys.readouterr()


def error_line(code, captured) -> str:
    """Check the contract and return the message after `attnseq: error: `."""
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert code == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {captured.err!r}"
    assert lines[0].startswith("attnseq: error: ")
    assert captured.out == ""
    return lines[0].removeprefix("attnseq: error: ")


def config_with(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """configs/dates.yaml with one line replaced; returns the file and that line's number."""
    lines = DATES_CONFIG.read_text(encoding="utf-8").splitlines(keepends=True)
    (number,) = [i for i, line in enumerate(lines, start=1) if line.strip() == old]
    lines[number - 1] = lines[number - 1].replace(old, new)
    path = tmp_path / "cfg.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path, number


# ------------------------------------------------------------------------------------- config mistakes


def test_unknown_config_key_in_the_file(capsys, tmp_path, data):
    cfg, line = config_with(tmp_path, "attention: general", "atention: general")
    out = tmp_path / "run"
    msg = error_line(*train(capsys, cfg, out, data_overrides(data["train"], data["valid"])))
    assert msg.startswith(f"{cfg}:{line}: 'model.atention' is not a known key (did you mean 'attention'?)")
    assert not out.exists()


def test_unknown_config_key_in_set(capsys, tmp_path, data):
    out = tmp_path / "run"
    overrides = [*data_overrides(data["train"], data["valid"]), "train.lrr=0.1"]
    msg = error_line(*train(capsys, DATES_CONFIG, out, overrides))
    assert msg.startswith("--set: 'train.lrr' is not a known key (did you mean 'lr'?)")
    assert not out.exists()


def test_bad_config_value_in_the_file(capsys, tmp_path, data):
    cfg, line = config_with(tmp_path, "attention: general", "attention: foo")
    out = tmp_path / "run"
    msg = error_line(*train(capsys, cfg, out, data_overrides(data["train"], data["valid"])))
    assert msg.startswith(f"{cfg}:{line}: 'model.attention': 'foo' is not allowed")
    assert "choose one of dot, scaled_dot, general, concat, location" in msg
    assert not out.exists()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.emb_size=big", "--set: 'model.emb_size': expected a whole number, got 'big'"),
        ("model.attention=foo", "--set: 'model.attention': 'foo' is not allowed; choose one of"),
        ("model.attention", "--set 'model.attention': expected KEY=VALUE"),
        ("model.dec_hidden_size=16", "model.dec_hidden_size (16) must equal model.enc_hidden_size (8)"),
        ("train.lr_factor=1.0", "--set: 'train.lr_factor' must be in (0, 1) (got 1.0)"),
        ("train.lr=-1", "'train.lr' must be more than 0 (got -1.0)"),
        ("train.label_smoothing=2", "'train.label_smoothing' must be in [0, 1) (got 2.0)"),
        ("decode.batch_size=0", "'decode.batch_size' must be at least 1 (got 0)"),
        ("train.max_epochs=0", "'train.max_epochs' must be at least 1 (got 0)"),
        ("decode.max_len_b=0", "'decode.max_len_b' must be in [1, 100000] (got 0)"),
        ("decode.max_len_b=1000000000", "'decode.max_len_b' must be in [1, 100000] (got 1000000000)"),
        ("model.emb_size=1000000000", "parameters, 1,400.7 GiB with their gradients and Adam state, more than the"),
        ("model.attention=location", "raise model.max_src_len to 65 or lower data.max_src_len"),
    ],
)
def test_bad_config_value_in_set(capsys, tmp_path, data, override, expected):
    out = tmp_path / "run"
    overrides = [*data_overrides(data["train"], data["valid"]), "model.attention=dot", "model.max_src_len=10", override]
    msg = error_line(*train(capsys, DATES_CONFIG, out, overrides))
    assert expected in msg
    assert not out.exists()


def test_missing_config_file(capsys, tmp_path):
    out = tmp_path / "run"
    msg = error_line(*train(capsys, tmp_path / "nope.yaml", out, []))
    assert msg.startswith(f"{tmp_path / 'nope.yaml'}: config file not found")
    assert not out.exists()


def test_config_file_that_is_not_utf8(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(DATES_CONFIG.read_bytes().replace(b"rnn: lstm", b"rnn: \xff\xfe"))
    out = tmp_path / "run"
    msg = error_line(*train(capsys, cfg, out, []))
    assert str(cfg) in msg
    assert not out.exists()


# ------------------------------------------------------------------------------------- data mistakes


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"3 Mar 2021\t2021-03-03\n4 Apr 2020 2020-04-04\n", ":2: no tab in the line; separate source and target"),
        (b"3 Mar 2021\t2021-03-03\n4 Apr 2020\t2020-04-04\n\n5 May 2019\t2019-05-05\n", ":3: empty line; remove it"),
        (b"3 Mar 2021\t2021-03-03\n4 Apr 2020\t2020-04-04\n5 \xff\xfe 2019\t2019-05-05\n", ":3: byte 3 of the line"),
        (b"3 Mar 2021\t2021-03-03\n\t2020-04-04\n", ":2: the source side is empty"),
        (b"", ": the file is empty"),
    ],
    ids=["no-tab", "empty-line", "undecodable", "empty-source", "empty-file"],
)
@pytest.mark.parametrize("which", ["train", "valid"])
def test_bad_tsv_file(capsys, tmp_path, data, content, expected, which):
    data[which].write_bytes(content)
    out = tmp_path / "run"
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(data["train"], data["valid"])))
    assert msg.startswith(f"{data[which]}{expected}")
    assert not out.exists()


def test_missing_data_file(capsys, tmp_path, data):
    missing = data["dir"] / "nope.tsv"
    out = tmp_path / "run"
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(missing, data["valid"])))
    assert msg.startswith(f"{missing}: file not found; check the path")
    assert not out.exists()


def test_mismatched_parallel_files(capsys, tmp_path, data):
    d = data["dir"]
    (d / "train.src").write_text("3 Mar 2021\n4 Apr 2020\n5 May 2019\n", encoding="utf-8")
    (d / "train.tgt").write_text("2021-03-03\n2020-04-04\n", encoding="utf-8")
    (d / "valid.src").write_text("3 Mar 2021\n", encoding="utf-8")
    (d / "valid.tgt").write_text("2021-03-03\n", encoding="utf-8")
    out = tmp_path / "run"
    overrides = [*data_overrides(d / "train", d / "valid"), "data.src_suffix=.src", "data.tgt_suffix=.tgt"]
    msg = error_line(*train(capsys, DATES_CONFIG, out, overrides))
    assert f"{d / 'train.src'} has 3 lines but {d / 'train.tgt'} has 2" in msg
    assert "line-aligned" in msg
    assert not out.exists()


def test_empty_vocabulary(capsys, tmp_path, data):
    out = tmp_path / "run"
    overrides = [*data_overrides(data["train"], data["valid"]), "data.min_freq=100000"]
    msg = error_line(*train(capsys, DATES_CONFIG, out, overrides))
    assert msg.startswith(f"{data['train']}: the vocabulary is empty")
    assert "lower data.min_freq" in msg
    assert not out.exists()


# ------------------------------------------------------------------------------------- run directories


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("existing", ["last", "best"])
def test_train_into_an_existing_run_without_resume(capsys, tmp_path, data, existing):
    out = tmp_path / "run"
    (out / existing).mkdir(parents=True)
    (out / existing / "config.json").write_text("{}\n", encoding="utf-8")
    (out / "metrics.jsonl").write_text('{"event": "start"}\n', encoding="utf-8")
    before = snapshot(out)
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(data["train"], data["valid"])))
    assert msg.startswith(f"{out}: already holds a training run; pass --resume")
    assert snapshot(out) == before


def test_resume_with_nothing_to_resume(capsys, tmp_path, data):
    out = tmp_path / "run"
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(data["train"], data["valid"]), resume=True))
    assert msg.startswith(f"{out}: nothing to resume (no last/trainer_state.pt)")
    assert "drop --resume" in msg
    assert not out.exists()


@pytest.mark.parametrize("exists", [True, False])
def test_translate_from_a_directory_that_is_not_a_model(capsys, tmp_path, exists):
    model = tmp_path / "not_a_model"
    if exists:
        model.mkdir()
        (model / "notes.txt").write_text("hello\n", encoding="utf-8")
    src = tmp_path / "in.txt"
    src.write_text("3 Mar 2021\n", encoding="utf-8")
    msg = error_line(main(["translate", "--model", str(model), "--input", str(src)]), capsys.readouterr())
    assert msg.startswith(f"{model}: no model.safetensors here or in {model}/best")
    assert "attnseq train --out DIR" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.txt", *(["not_a_model"] if exists else [])])


def test_corrupt_gzip_file(capsys, tmp_path, data):
    bad = tmp_path / "train.tsv.gz"
    bad.write_bytes(gzip.compress(GOOD_LINES.encode())[:-12] + b"garbage-not-deflate")
    out = tmp_path / "run"
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(bad, data["valid"])))
    assert msg.startswith(f"{bad}: not a readable gzip file") and msg.endswith("re-compress it")
    assert not out.exists()


def test_translate_on_a_missing_gpu(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    msg = error_line(main(["translate", "--model", str(tmp_path), "--device", "cuda"]), capsys.readouterr())
    assert msg == "device 'cuda' asked for, but no CUDA GPU is visible; use cpu"


def test_demo_never_replaces_a_directory_it_did_not_write(capsys, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n", encoding="utf-8")
    argv = ["demo", str(DATES_CONFIG), "--out", str(out), "--data-dir", str(tmp_path / "dates")]
    msg = error_line(main(argv), capsys.readouterr())
    assert msg == f"{out}: exists and is not a demo run; choose another --out (nothing was changed)"
    assert [p.name for p in out.iterdir()] == ["metrics.jsonl"]


def test_plot_into_a_directory(capsys, tmp_path, data):
    model = tmp_path / "run"
    assert (
        train(capsys, DATES_CONFIG, model, [*data_overrides(data["train"], data["valid"]), "train.max_steps=1"])[0] == 0
    )
    target = tmp_path / "a_directory.png"
    target.mkdir()
    msg = error_line(main(["plot", "--model", str(model), "3 Mar 2021", "--out", str(target)]), capsys.readouterr())
    assert msg.startswith(f"{target}: ")
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------------- a real process


def test_subprocess_bad_key_exits_2_with_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "attnseq", "train", str(DATES_CONFIG), "--out", str(out)]
        + ["--set", "model.atention=dot"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("attnseq: error: --set: 'model.atention' is not a known key (did you mean 'attention'?)")
    assert proc.stdout == ""
    assert not out.exists()


# ------------------------------------------------------------------------------------- found in review


def test_a_failing_demo_keeps_the_previous_demo_run(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    out = tmp_path / "demo"
    out.mkdir()
    (out / ".attnseq-demo").write_text("marker\n")
    (out / "metrics.jsonl").write_text("{}\n")
    argv = [
        "demo",
        str(DATES_CONFIG),
        "--out",
        str(out),
        "--data-dir",
        str(tmp_path / "d"),
        "--set",
        "train.device=cuda",
    ]
    msg = error_line(main(argv), capsys.readouterr())
    assert "no CUDA GPU is visible" in msg
    assert sorted(p.name for p in out.iterdir()) == [".attnseq-demo", "metrics.jsonl"]
    assert not (tmp_path / "demo.previous").exists()


def test_valid_metric_cannot_change_on_resume(capsys, tmp_path, data):
    out = tmp_path / "run"
    common = [*data_overrides(data["train"], data["valid"])]
    assert train(capsys, DATES_CONFIG, out, [*common, "train.max_steps=1"])[0] == 0
    capsys.readouterr()
    msg = error_line(*train(capsys, DATES_CONFIG, out, [*common, "train.valid_metric=loss"], resume=True))
    assert "train.valid_metric = exact_match; it cannot change on --resume" in msg


def test_out_that_is_a_file_fails_before_training(capsys, tmp_path, data):
    out = tmp_path / "a_file"
    out.write_text("keep me\n")
    msg = error_line(*train(capsys, DATES_CONFIG, out, data_overrides(data["train"], data["valid"])))
    assert msg == f"{out}: is a file, not a directory; choose another --out"
    assert out.read_text() == "keep me\n"


def test_corrupt_weights_are_a_one_line_error(capsys, tmp_path, data):
    out = tmp_path / "run"
    assert (
        train(capsys, DATES_CONFIG, out, [*data_overrides(data["train"], data["valid"]), "train.max_steps=1"])[0] == 0
    )
    capsys.readouterr()
    weights = out / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    msg = error_line(main(["translate", "--model", str(out), "--input", str(data["train"])]), capsys.readouterr())
    assert msg.startswith(f"{weights}: does not match its checksum in config.json (truncated or altered)")
    state = out / "last" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    overrides = [*data_overrides(data["train"], data["valid"]), "train.max_steps=2"]
    msg = error_line(*train(capsys, DATES_CONFIG, out, overrides, resume=True))
    assert msg.startswith(f"{state}: does not match its checksum in config.json (truncated or altered)")
    assert msg.endswith("the run cannot resume from it; start a new one")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=.inf", "--set: 'train.lr' must be a finite number"),
        ("train.max_minutes=.nan", "--set: 'train.max_minutes' must be a finite number"),
        ("train.seed=18446744073709551616", "--set: 'train.seed' must be in [0, 2^63)"),
    ],
)
def test_numbers_out_of_range(capsys, tmp_path, data, override, expected):
    out = tmp_path / "run"
    msg = error_line(*train(capsys, DATES_CONFIG, out, [*data_overrides(data["train"], data["valid"]), override]))
    assert msg.startswith(expected)
    assert not out.exists()
