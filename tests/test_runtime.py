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
