"""attnseq.runtime: the process settings the `attnseq` command applies."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from attnseq.runtime import keep_freed_memory


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_stays_with_the_process_for_reuse():
    assert keep_freed_memory()
    assert keep_freed_memory()  # once per process; a second call changes nothing
    block = torch.ones(48 << 20, dtype=torch.uint8)  # larger than glibc's largest default map threshold
    before_free = resident_bytes()
    del block
    # glibc's default would unmap the block on free and give its 48 MiB back to the system
    assert resident_bytes() > before_free - (8 << 20)


def test_tune_process_is_the_one_call_for_python_users():
    import attnseq

    assert attnseq.tune_process() == {"keep_freed_memory": keep_freed_memory()}


def test_loading_and_predicting_leave_process_settings_alone(tiny_config, tmp_path):
    """A library call never changes torch's threads or quantized engine as a side effect."""
    import torch

    import attnseq
    from attnseq.trainer import Trainer

    Trainer(tiny_config("train.max_steps=3", "train.num_threads=1"), tmp_path / "r", progress_bar=False).fit()
    before = (torch.get_num_threads(), torch.backends.quantized.engine)
    attnseq.load(tmp_path / "r").predict(["3 March 2021"])
    assert (torch.get_num_threads(), torch.backends.quantized.engine) == before
