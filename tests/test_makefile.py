"""The Makefile's choice of torch build, read from the commands `make -n` would run (no network)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(tmp_path, *, gpu: bool) -> str:
    """What `make -n setup` would run for a fresh venv, with or without an nvidia-smi that finds a GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: a test GPU'\n" if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("TORCH", None)
    done = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return next(line for line in done.stdout.splitlines() if "pip install" in line and "torch" in line)


def test_without_a_gpu_make_installs_the_cpu_build_of_torch(tmp_path):
    line = planned(tmp_path, gpu=False)
    assert "torch==2.13.0+cpu --extra-index-url https://download.pytorch.org/whl/cpu --retries 1" in line, line


def test_with_a_gpu_make_installs_the_default_cuda_build(tmp_path):
    line = planned(tmp_path, gpu=True)
    assert line.rstrip().endswith("install --quiet torch==2.13.0"), line


def test_a_user_can_name_the_build(tmp_path):
    env = {**os.environ, "TORCH": "torch==2.13.0 --index-url https://example.org/cu128"}
    done = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert "install --quiet torch==2.13.0 --index-url https://example.org/cu128" in done.stdout
