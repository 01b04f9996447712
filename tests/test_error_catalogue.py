"""docs/errors.md's catalogue, checked against the program: every entry's command gives exactly
the message the catalogue shows (exit status 2, one line, nothing else on stderr).

An entry is a `### ...` heading, a ```sh block and a ```text block. The sh block's lines but the
last are shell set-up run with bash in a fresh copy of the catalogue's folder; the last line is
the `attnseq ...` command (`< FILE` feeds its standard input) or a `>>> ` Python expression with
`attnseq` imported. The text block is the message; `...` in it stands for any text (a figure of
this machine, e.g. its memory).

The folder holds `tiny.yaml` (a small dates model on data/dates/), `run/` (2 steps of it, saved
every step) and `model/` (a copy of run/best).
"""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CATALOGUE = ROOT / "docs" / "errors.md"
TINY = """\
data:
  train: data/dates/train.tsv
  valid: data/dates/valid.tsv
  src_tokenizer: char
  tgt_tokenizer: char
model:
  emb_size: 8
  enc_hidden_size: 16
  dec_hidden_size: 16
train:
  batch_size: 32
  max_steps: 2
  save_every: 1
  num_threads: 1
  valid_max_sentences: 10
"""


def entries() -> list[tuple[str, list[str], str, str]]:
    """(title, set-up lines, command, expected message) of every catalogue entry."""
    text = CATALOGUE.read_text(encoding="utf-8")
    text = text[text.index("## Catalogue") :]
    found = re.findall(r"^### (.+?)\n+```sh\n(.*?)```\n+```text\n(.*?)```", text, flags=re.M | re.S)
    return [(title, body.strip().splitlines()[:-1], body.strip().splitlines()[-1], message.strip())
            for title, body, message in found]  # fmt: skip


def test_the_catalogue_has_at_least_40_entries():
    assert len(entries()) >= 40
    titles = [title for title, *_ in entries()]
    assert len(set(titles)) == len(titles)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from attnseq.config import load_config
    from attnseq.tasks.dates import write_corpus
    from attnseq.trainer import Trainer

    base = tmp_path_factory.mktemp("catalogue")
    write_corpus(base / "data" / "dates", sizes={"train": 300, "valid": 20, "test": 20})
    (base / "tiny.yaml").write_text(TINY, encoding="utf-8")
    (base / "configs").symlink_to(ROOT / "configs")
    cwd = Path.cwd()
    try:
        import os

        os.chdir(base)
        Trainer(load_config("tiny.yaml"), "run", progress_bar=False).fit()
    finally:
        os.chdir(cwd)
    shutil.copytree(base / "run" / "best", base / "model")
    return base


def matches(expected: str, got: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got, flags=re.S) is not None


def run_entry(where: Path, command: str, capsys) -> str:
    """The entry's message: the command's one stderr line (exit status 2), or the Python error."""
    import attnseq
    from attnseq.cli import main
    from attnseq.errors import AttnseqError

    if command.startswith(">>> "):
        try:
            eval(command[4:], {"attnseq": attnseq})  # noqa: S307 - the catalogue's own expressions
        except AttnseqError as exc:
            return f"AttnseqError: {exc}"
        raise AssertionError(f"{command}: raised nothing")
    argv = shlex.split(command)
    assert argv[0] == "attnseq", command
    stdin = sys.stdin
    if "<" in argv:
        i = argv.index("<")
        argv, feed = argv[:i], (where / argv[i + 1]).read_bytes()
        sys.stdin = io.TextIOWrapper(io.BytesIO(feed), encoding="utf-8")
    capsys.readouterr()
    try:
        code = main(argv[1:])
    finally:
        sys.stdin = stdin
    captured = capsys.readouterr()
    assert code == 2, (command, code, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnseq: error: "), (command, captured.err)
    return lines[0].removeprefix("attnseq: error: ")


@pytest.mark.parametrize("title, setup, command, expected", entries(), ids=[e[0] for e in entries()])
def test_catalogue_entry(title, setup, command, expected, folder, tmp_path, capsys, monkeypatch):
    where = tmp_path / "w"
    shutil.copytree(folder, where, symlinks=True)
    if setup:
        path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # the project's python first
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(setup)], cwd=where,
                              capture_output=True, text=True, env={"PATH": path})  # fmt: skip
        assert done.returncode == 0, (title, done.stderr)
    monkeypatch.chdir(where)
    got = run_entry(where, command, capsys)
    assert matches(expected, got), f"{title}\n  catalogue: {expected}\n  program:   {got}"
