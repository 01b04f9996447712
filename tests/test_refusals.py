"""Refusals that hold the same way on the command line, in Python and over HTTP: search sizes bounded
in one place, n_best never above the beam, strict types; and inputs that must not be taken silently:
bare \\r line ends, YAML keys given twice, values whose repr would be huge."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attnseq.errors import AttnseqError


def test_a_bare_carriage_return_ends_a_line():
    from attnseq.readers import decode_lines

    lines = list(decode_lines([b"one\rtwo\r\n", b"three\n", b"\xef\xbb\xbffour"], "f"))
    assert lines == [(1, "one"), (2, "two"), (3, "three"), (4, "\ufefffour")]
    assert list(decode_lines([b"\xef\xbb\xbfa\rb\n"], "f")) == [(1, "a"), (2, "b")]  # a BOM only opens line 1
    with pytest.raises(AttnseqError, match=r"f:2: byte 2 of the line is not valid UTF-8"):
        list(decode_lines([b"ok\ra\xff\n"], "f"))


def test_a_yaml_key_given_twice_is_refused_with_both_lines(tmp_path):
    from attnseq.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  attention: dot\n  dropout: 0.1\n  attention: general\n", encoding="utf-8")
    with pytest.raises(AttnseqError, match=r"c\.yaml:4: 'model\.attention' is given twice \(also at line 2\)"):
        load_config(path)


def test_a_yaml_alias_bomb_is_reported_by_a_short_line_in_bounded_memory(tmp_path):
    """A value of 9^8 (43 million) strings in 300 bytes of YAML: the error shows its type and a cut repr."""
    items = ['    - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefg", "bcdefgh"):
        items.append(f"    - &{name} [{', '.join(['*' + prev] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("model:\n  dropout:\n" + "\n".join(items) + "\n", encoding="utf-8")
    code = ("import resource, sys\nfrom attnseq.config import load_config\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_config(sys.argv[1])\nexcept Exception as exc:\n    print(str(exc))\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    message, grown_kb = done.stdout.splitlines()
    assert message.startswith(f"{path}:2: 'model.dropout': expected a number, got [[") and len(message) < 400, message
    assert int(grown_kb) < 50_000, grown_kb  # printing its repr would take gigabytes


def test_search_sizes_and_n_best_are_bounded_alike_in_python(model_dirs):
    import attnseq

    translator = attnseq.load(model_dirs["dates"])
    with pytest.raises(AttnseqError, match=r"beam_size = 100000: at most 64"):
        translator.translate(["3 May 2001"], beam_size=100000)
    with pytest.raises(AttnseqError, match=r"n_best = 5 is more than beam_size = 3"):
        translator.translate(["3 May 2001"], beam_size=3, n_best=5)
    assert len(translator.translate(["3 May 2001"], beam_size=3, n_best=3)[0].alternatives) == 3
    done = subprocess.run([sys.executable, "-m", "attnseq", "translate", "--model", str(model_dirs["dates"]),
                           "--beam-size", "100000"], input="3 May 2001\n", capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "decode.beam_size" in done.stderr and "[1, 64]" in done.stderr, done.stderr


def test_the_server_refuses_what_python_refuses(model_dirs):
    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import live_server

    with live_server(create_app(load_models([f"dates={model_dirs['dates']}"]))) as url:
        for search in ({"beam_size": "5"}, {"beam_size": True}, {"beam_size": 65}, {"beam_size": 3, "n_best": 5}):
            r = httpx.post(f"{url}/v1/predict", json={"inputs": ["3 May 2001"], "search": search}, timeout=60)
            assert 400 <= r.status_code < 500, (search, r.status_code, r.text)
        r = httpx.post(f"{url}/v1/predict", json={"inputs": ["3 May 2001"], "search": {"beam_size": 3, "n_best": 3}},
                       timeout=60)  # fmt: skip
        assert r.status_code == 200 and len(r.json()["predictions"][0]["alternatives"]) == 3
