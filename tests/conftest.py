"""Seeded tiny fixtures shared by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnseq.config import load_config
from attnseq.runtime import capabilities
from attnseq.tasks.dates import write_corpus

ROOT = Path(__file__).resolve().parents[1]
DATES_CONFIG = ROOT / "configs" / "dates.yaml"

# A test of a kernel that only some CPUs run natively skips elsewhere, with what is missing as its reason.
CPU = capabilities("cpu")
needs_native_bf16 = pytest.mark.skipif(not CPU.bf16, reason=f"needs native bf16: {CPU.bf16_missing}")


@pytest.fixture(scope="session")
def dates_dir(tmp_path_factory):
    """A small dates corpus (train / valid / test TSV), written once per session."""
    out = tmp_path_factory.mktemp("dates")
    write_corpus(out, sizes={"train": 3000, "valid": 60, "test": 200})
    return out


@pytest.fixture
def tiny_config(dates_dir):
    """A small Luong/general model on the small dates corpus; extra overrides via the factory."""

    def make(*overrides: str):
        return load_config(
            DATES_CONFIG,
            [
                f"data.train={dates_dir / 'train.tsv'}",
                f"data.valid={dates_dir / 'valid.tsv'}",
                f"data.test={dates_dir / 'test.tsv'}",
                "model.emb_size=16",
                "model.enc_hidden_size=32",
                "model.dec_hidden_size=32",
                "train.batch_size=32",
                "train.max_minutes=0",
                "train.log_every=1",
                *overrides,
            ],
        )

    return make


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Fixtures imported here so tests can ask for them: the small dates corpus of the tests that compare
# whole runs (distributed, faults); the server's (two small trained models, a live server); the
# classifier tests' synthetic labelled texts.
from tests.classify_data import synthetic  # noqa: E402, F401
from tests.runs import small_dates  # noqa: E402, F401
from tests.serving import model_dirs, served, server  # noqa: E402, F401
