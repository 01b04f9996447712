"""The README's quickstart, typed as a new user types it: its demo block run in a clean shell (no
activated virtual environment), each command in order, and what its comments promise."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

# a shell as a new user's: the system's PATH (no virtual environment active), their HOME
CLEAN = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def demo_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The demo", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_quickstart_runs_as_typed_in_a_clean_shell():
    commands = demo_block()
    assert commands[0].startswith("make demo") and any("source .venv/bin/activate" in c for c in commands)
    script = "set -euo pipefail\n" + "\n".join(commands)
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env=CLEAN)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out exact match" in done.stdout
    expected = re.search(r"#\s*(\S+)\s*$", commands[-1]).group(1)  # the last command's comment: its output
    assert done.stdout.splitlines()[-1] == expected, done.stdout[-500:]


@pytest.mark.parametrize("command", ["attnseq --version", ".venv/bin/attnseq --version"])
def test_the_command_answers_after_activation_or_by_its_path(command):
    script = f"source .venv/bin/activate; {command}" if command.startswith("attnseq") else command
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env=CLEAN)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("attnseq "), done.stderr
