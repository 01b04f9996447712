"""The whole `make demo` job (slow: about two minutes; run with `pytest -m slow`)."""

from __future__ import annotations

import re

import pytest

from attnseq.cli import main
from tests.conftest import DATES_CONFIG


@pytest.mark.slow
def test_demo_reaches_99_percent_on_held_out_dates(tmp_path, capsys):
    out, data = tmp_path / "demo", tmp_path / "dates"
    assert main(["demo", str(DATES_CONFIG), "--out", str(out), "--data-dir", str(data)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"held-out exact match: (\d+\.\d)%", last)
    assert match, last
    assert float(match.group(1)) >= 99.0
    assert all((out / f"attention_{k}.png").is_file() for k in (1, 2, 3))
