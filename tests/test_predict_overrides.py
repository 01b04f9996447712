"""`--set decode.KEY=VALUE` on the commands that use a trained model: decode keys apply as the config's
would, any other key is refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys


def attnseq(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attnseq", *args], input=stdin, capture_output=True, text=True)


def test_decode_keys_apply_and_training_keys_are_refused(model_dirs):
    dates = str(model_dirs["dates"])
    beam = attnseq("translate", "--model", dates, "--n-best", "2", stdin="3 March 2021\n")
    assert beam.returncode == 0 and len(beam.stdout.splitlines()) == 2, beam.stderr  # decode.beam_size 3 as trained
    greedy = attnseq("translate", "--model", dates, "--set", "decode.beam_size=1", stdin="3 March 2021\n")
    assert greedy.returncode == 0 and len(greedy.stdout.splitlines()) == 1, greedy.stderr
    short = attnseq("translate", "--model", dates, "--set", "decode.max_src_tokens=3", stdin="3 March 2021\n")
    assert short.returncode != 0 and "decode.max_src_tokens" in short.stderr
    for key, message in (("train.lr=0.1", "a trained model takes decode.* keys only (its train keys"),
                         ("decode.beam_sise=2", "beam_sise"), ("decode.beam_size=0", "decode.beam_size")):  # fmt: skip
        done = attnseq("translate", "--model", dates, "--set", key, stdin="3 March 2021\n")
        assert done.returncode != 0 and message in done.stderr, (key, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    sentiment = str(model_dirs["sentiment"])
    done = attnseq("classify", "--model", sentiment, "--set", "decode.batch_size=7", stdin="good\n")
    assert done.returncode == 0, done.stderr
    done = attnseq("classify", "--model", sentiment, "--set", "decode.beam_size=2", stdin="good\n")
    assert done.returncode != 0 and "--set decode.beam_size: not for a classifier" in done.stderr, done.stderr


def test_a_line_over_the_limit_is_named_and_left_empty_and_the_others_are_translated(model_dirs):
    dates = str(model_dirs["dates"])
    text = "3 March 2021\n" + "the " * 40 + "12 May 1999\n" + "4/5/2001\n"
    done = attnseq("translate", "--model", dates, "--n-best", "1", "--set", "decode.max_src_tokens=20", stdin=text)
    alone = attnseq("translate", "--model", dates, "--n-best", "1", stdin="3 March 2021\n4/5/2001\n")
    first, third = alone.stdout.splitlines()
    assert done.stdout.splitlines() == [first, "", third]
    assert done.returncode == 1 and done.stderr.splitlines()[-1:] == [
        "attnseq: line 2: 171 tokens, more than decode.max_src_tokens = 20; left empty (split it, or --set "
        "decode.max_src_tokens=N)"
    ], done.stderr
    records = attnseq("translate", "--model", dates, "--json", "--set", "decode.max_src_tokens=20", stdin=text)
    assert [json.loads(line).get("error") for line in records.stdout.splitlines()] == [
        None, "171 tokens, more than decode.max_src_tokens = 20", None]  # fmt: skip


def test_command_line_paths_and_plot_outputs_are_checked_in_one_line(model_dirs, tmp_path):
    dates = str(model_dirs["dates"])
    for given, message in ((str(tmp_path / "nope.txt"), "file not found; check the path"),
                           (str(tmp_path), "a directory; give a file of one text per line")):  # fmt: skip
        done = attnseq("translate", "--model", dates, "--input", given)
        assert done.returncode != 0 and done.stderr == f"attnseq: error: --input {given}: {message}\n", done.stderr
    cases = (([""], "plot: the input is empty"), (["3 May 2001", "--out", str(tmp_path / "a.gif")], "name a picture"),
             (["3 May 2001", "--out", str(tmp_path / "no" / "a.png")], "does not exist; create it first"))  # fmt: skip
    for args, message in cases:
        done = attnseq("plot", "--model", dates, *args)
        assert done.returncode != 0 and message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    for name, magic in (("a.jpg", b"\xff\xd8\xff"), ("a.svg", b"<?xml"), ("a.png", b"\x89PNG")):
        done = attnseq("plot", "--model", dates, "3 May 2001", "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / name).read_bytes().startswith(magic), name


def test_the_python_training_api_returns_the_run_directory(dates_dir, tmp_path):
    import attnseq
    from tests.conftest import DATES_CONFIG

    sets = [f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}", "model.emb_size=8",
            "model.enc_hidden_size=16", "model.dec_hidden_size=16", "train.max_steps=20",
            "train.log_every=10"]  # fmt: skip
    run = attnseq.train(str(DATES_CONFIG), out=tmp_path / "run", overrides=sets)
    assert run == tmp_path / "run" and (run / "best" / "config.json").is_file()
    assert "valid" in [json.loads(line)["event"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert attnseq.load(run).translate(["3 May 2001"])[0].output is not None
    import pytest

    with pytest.raises(attnseq.AttnseqError, match="train.lr"):
        attnseq.train(str(DATES_CONFIG), out=tmp_path / "bad", overrides=[*sets, "train.lr=-1"])


def test_translate_answers_each_line_as_it_is_typed_at_a_terminal(model_dirs):
    import pexpect

    dates = str(model_dirs["dates"])
    expected = attnseq("translate", "--model", dates, "--n-best", "1", stdin="3 May 2001\n12/1/1999\n")
    first, second = expected.stdout.splitlines()
    child = pexpect.spawn(sys.executable, ["-m", "attnseq", "translate", "--model", dates, "--n-best", "1"],
                          encoding="utf-8", timeout=60)  # fmt: skip
    child.expect("Ctrl-D leaves")
    child.expect("> ")
    child.sendline("3 May 2001")
    child.expect(first)  # answered before the next line is typed
    child.expect("> ")
    child.sendline("12/1/1999")
    child.expect(second)
    child.expect("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_lines_are_answered_before_the_input_ends(model_dirs):
    proc = subprocess.Popen([sys.executable, "-m", "attnseq", "translate", "--model", str(model_dirs["dates"]),
                             "--n-best", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        proc.stdin.write("3 May 2001\n")
        proc.stdin.flush()
        answer = proc.stdout.readline()  # the pipe is still open: this line came as soon as its batch was done
        assert answer.strip()
        proc.stdin.write("12/1/1999\n")
        proc.stdin.close()
        assert len(proc.stdout.read().splitlines()) == 1
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait(timeout=30)


def test_serve_says_in_one_line_that_a_port_is_busy_or_out_of_range(model_dirs):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = attnseq("serve", "--model", str(model_dirs["dates"]), "--port", str(port))
        assert done.returncode == 2 and done.stderr.splitlines() == [
            f"attnseq: error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); stop what "
            "listens there or choose another --port"], done.stderr  # fmt: skip
    done = attnseq("serve", "--model", str(model_dirs["dates"]), "--port", "99999")
    assert done.returncode == 2 and "--port 99999: a port is a number from 0 to 65535" in done.stderr


def test_the_server_serves_its_schema_and_no_cdn_pages(model_dirs):
    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import live_server

    with live_server(create_app(load_models([f"dates={model_dirs['dates']}"]))) as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 200
        assert httpx.get(f"{url}/docs").status_code == 404 and httpx.get(f"{url}/redoc").status_code == 404
        assert "cdn" not in httpx.get(f"{url}/").text.lower()


def test_tensorboard_event_files_appear_where_it_is_installed_and_nothing_breaks_without(dates_dir, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    import importlib.util

    import pytest

    import attnseq
    from tests.conftest import DATES_CONFIG

    sets = [f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}", "model.emb_size=8",
            "model.enc_hidden_size=16", "model.dec_hidden_size=16", "train.max_steps=20",
            "train.log_every=5"]  # fmt: skip
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        run = attnseq.train(str(DATES_CONFIG), out=tmp_path / "board", overrides=sets)
        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        assert {"train/loss", "valid/loss", "valid/exact_match"} <= set(events.Tags()["scalars"])
        assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    run = attnseq.train(str(DATES_CONFIG), out=tmp_path / "plain", overrides=sets)  # auto: none, and no error
    assert (run / "metrics.jsonl").is_file() and not (run / "tensorboard").exists()
    with pytest.raises(attnseq.AttnseqError, match=r"train.tensorboard = always needs the tensorboard package"):
        attnseq.train(str(DATES_CONFIG), out=tmp_path / "always", overrides=[*sets, "train.tensorboard=always"])
    assert not (tmp_path / "always").exists()


def help_keys(command: str) -> list[str]:
    """The JSON keys the --json help of `command` names: after the colon, split at commas and slashes,
    parentheses dropped."""
    import re

    from attnseq.cli.parser import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]
    (action,) = [a for a in sub._actions if "--json" in a.option_strings]
    named = re.sub(r"\([^)]*\)", "", action.help.split(":", 1)[1])
    return [word.strip() for word in re.split(r"[,/]", named) if word.strip()]


def test_every_json_key_a_help_text_names_is_in_the_output(model_dirs):
    from attnseq.contracts import Prediction

    translated = json.loads(attnseq("translate", "--model", str(model_dirs["dates"]), "--json",
                                    stdin="3 May 2001\n").stdout)  # fmt: skip
    classified = json.loads(attnseq("classify", "--model", str(model_dirs["sentiment"]), "--json",
                                    stdin="good\n").stdout)  # fmt: skip
    every = Prediction("in", "out", 0.0, [], [], None).to_dict()  # what transcribe --json prints for each file
    for command, record in (("translate", translated), ("classify", classified), ("transcribe", every)):
        keys = help_keys(command)
        assert keys and set(keys) <= set(record), (command, keys, sorted(record))


def test_serve_applies_decode_overrides_to_every_model_and_refuses_other_keys(model_dirs):
    from attnseq.serve import load_models

    models = load_models([f"dates={model_dirs['dates']}"], overrides=["decode.beam_size=2", "decode.n_best=2"])
    try:
        assert models["dates"].predictor.config.decode.beam_size == 2
    finally:
        for served in models.values():
            served.executor.shutdown()
    done = attnseq("serve", "--model", f"dates={model_dirs['dates']}", "--set", "train.lr=0.1", "--port", "0")
    assert done.returncode == 2 and "serve (model 'dates'): --set train.lr: a trained model takes decode.* keys only" \
        in done.stderr, done.stderr  # fmt: skip
