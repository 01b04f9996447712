"""Fixtures for the server's tests: two small trained models (a dates translator and a classifier)
and a real uvicorn server on a free loopback port, run in a thread of the test process."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time

import pytest
import uvicorn

from attnseq.config import load_config
from attnseq.serve import Batching, Limits, create_app, load_models
from attnseq.tasks.dates import write_corpus
from attnseq.trainer import Trainer
from tests.classify_data import tiny_classify_config, write_synthetic
from tests.conftest import ROOT

DATES_CONFIG = ROOT / "configs" / "dates.yaml"


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """{"dates": run dir, "sentiment": run dir}: trained for a few seconds each."""
    base = tmp_path_factory.mktemp("serve-models")
    data = base / "dates"
    write_corpus(data, sizes={"train": 2000, "valid": 40, "test": 40})
    dates = load_config(DATES_CONFIG, [
        f"data.train={data / 'train.tsv'}", f"data.valid={data / 'valid.tsv'}", f"data.test={data / 'test.tsv'}",
        "model.emb_size=16", "model.enc_hidden_size=32", "model.dec_hidden_size=32", "train.batch_size=32",
        "train.max_epochs=1", "train.max_minutes=0", "train.num_threads=1", "decode.beam_size=3", "decode.n_best=3",
    ])  # fmt: skip
    Trainer(dates, base / "dates-run", progress_bar=False).fit()
    texts = {name: write_synthetic(base / f"{name}.tsv", n, seed=i)
             for i, (name, n) in enumerate((("train", 400), ("valid", 60), ("test", 60)))}  # fmt: skip
    Trainer(tiny_classify_config(texts, "train.max_epochs=2"), base / "sentiment-run", progress_bar=False).fit()
    return {"dates": base / "dates-run", "sentiment": base / "sentiment-run"}


def chromium_path() -> str | None:
    """Debian's Chromium (or $ATTNSEQ_CHROMIUM), for Playwright's executable_path; None when absent."""
    for exe in (os.environ.get("ATTNSEQ_CHROMIUM", ""), "chromium", "chromium-browser"):
        if exe and shutil.which(exe):
            return shutil.which(exe)
    return None


@contextlib.contextmanager
def live_server(app):
    """Serve `app` with uvicorn on 127.0.0.1:<free port>; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no 40 ms Nagle waits
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="session")
def served(model_dirs):
    """The loaded models, by name (the first, dates, is the default)."""
    return load_models([f"{name}={path}" for name, path in model_dirs.items()])


@pytest.fixture(scope="session")
def server(served):
    """Base URL of a server over both models, with default limits and micro-batching on."""
    with live_server(create_app(served, limits=Limits(), batching=Batching())) as url:
        yield url
