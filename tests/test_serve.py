"""attnseq serve: micro-batching, the API on a real loopback server, its limits and errors, the CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from attnseq.contracts import Prediction, SearchOption
from attnseq.errors import AttnseqError
from attnseq.serve import Batching, Limits, ServedModel, create_app
from attnseq.serve.app import is_loopback
from attnseq.serve.batching import Inbound, MicroBatcher
from tests.serving import live_server


# ------------------------------------------------------------------ the batcher, on a scripted predictor
class Recorder:
    """A predictor that records each call; output = input upper-cased, after `delay` seconds."""

    search_options = (SearchOption("beam_size", int, 1, 8),)

    def __init__(self, delay: float = 0.0, fail_on: str = "") -> None:
        self.calls: list[tuple[list[str], dict]] = []
        self.delay, self.fail_on = delay, fail_on

    def predict(self, inputs, **search):
        self.calls.append((list(inputs), search))
        time.sleep(self.delay)
        if self.fail_on and self.fail_on in inputs:
            raise AttnseqError(f"cannot read {self.fail_on!r}")
        return [Prediction(t, t.upper(), 0.0, [t], [t.upper()], None) for t in inputs]

    def info(self):
        return {}

    def search_defaults(self):
        return {"beam_size": 1}


def run_batcher(recorder, requests, *, pending: int, **kwargs):
    """Submit `requests` [(inputs, search)] at once to a batcher; returns each one's outputs (or error)."""

    async def main():
        inbound = Inbound(pending=pending)
        batcher = MicroBatcher(recorder.predict, inbound=inbound, **kwargs)
        batcher.start()
        futures = [batcher.submit(inputs, search) for inputs, search in requests]
        inbound.pending = 0
        results = await asyncio.gather(*futures, return_exceptions=True)
        await batcher.stop()
        return [r if isinstance(r, Exception) else [p.output for p in r] for r in results]

    return asyncio.run(main())


def test_concurrent_requests_are_decoded_as_one_batch_and_answered_in_order():
    recorder = Recorder()
    requests = [([f"r{i}a", f"r{i}b"], {}) for i in range(8)]
    results = run_batcher(recorder, requests, pending=0, max_batch=64, max_wait_ms=50)
    assert results == [[f"R{i}A", f"R{i}B"] for i in range(8)]
    assert len(recorder.calls) == 1 and recorder.calls[0][0] == [t for inputs, _ in requests for t in inputs]


def test_the_batch_limit_caps_the_inputs_gathered():
    recorder = Recorder()
    run_batcher(recorder, [([f"x{i}"], {}) for i in range(10)], pending=0, max_batch=4, max_wait_ms=50)
    assert [len(inputs) for inputs, _ in recorder.calls] == [4, 4, 2]


def test_batching_off_decodes_each_request_alone():
    recorder = Recorder()
    run_batcher(recorder, [([f"x{i}"], {}) for i in range(5)], pending=0, enabled=False)
    assert [inputs for inputs, _ in recorder.calls] == [[f"x{i}"] for i in range(5)]


def test_requests_with_other_search_options_are_batched_apart():
    recorder = Recorder()
    requests = [(["a"], {"beam_size": 2}), (["b"], {}), (["c"], {"beam_size": 2}), (["d"], {})]
    assert run_batcher(recorder, requests, pending=0) == [["A"], ["B"], ["C"], ["D"]]
    assert sorted((inputs, tuple(search.items())) for inputs, search in recorder.calls) == [
        (["a", "c"], (("beam_size", 2),)), (["b", "d"], ())]  # fmt: skip


def test_one_bad_request_does_not_fail_the_others_of_its_batch():
    recorder = Recorder(fail_on="bad")
    results = run_batcher(recorder, [(["ok1"], {}), (["bad"], {}), (["ok2"], {})], pending=0)
    assert results[0] == ["OK1"] and results[2] == ["OK2"]
    assert isinstance(results[1], AttnseqError) and "bad" in str(results[1])


def test_a_lone_request_does_not_wait_for_company():
    """With no other request on its way in, the first of a batch is decoded at once, not after max_wait."""

    async def one(pending_others: int) -> float:
        inbound = Inbound(pending=pending_others)
        batcher = MicroBatcher(Recorder().predict, inbound=inbound, max_wait_ms=300)
        batcher.start()
        start = time.perf_counter()
        await batcher.submit(["x"], {})
        elapsed = time.perf_counter() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(one(0)) < 0.1  # nobody else coming
    assert asyncio.run(one(1)) >= 0.29  # a request is being received: wait for it, up to max_wait_ms


# ------------------------------------------------------------------ the API, on a real server
def post(url, body, **kw):
    return httpx.post(f"{url}/v1/predict", json=body, timeout=60, **kw)


def test_predict_returns_what_the_predictor_returns(server, served):
    sentences = ["March 3, 2021", "3/4/99", ""]
    r = post(server, {"inputs": sentences, "search": {"beam_size": 3, "n_best": 2}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "dates" and body["task"] == "translate"
    assert body["search"] == {"beam_size": 3, "n_best": 2}
    direct = served["dates"].predictor.predict(sentences, beam_size=3, n_best=2)
    assert body["predictions"] == [json.loads(json.dumps(p.to_dict())) for p in direct]
    first = body["predictions"][0]
    assert len(first["alternatives"]) == 2
    assert len(first["attention"]) == len(first["output_tokens"])
    assert all(len(row) == len(first["input_tokens"]) for row in first["attention"])
    assert body["predictions"][2]["output"] == ""  # an empty input answers an empty output, in place


def test_the_config_decode_section_fills_in_search_options(server):
    body = post(server, {"inputs": ["1 May 2020"]}).json()
    assert body["search"] == {"beam_size": 3, "n_best": 3}  # the model's decode section (fixture)


def test_a_classifier_is_served_by_the_same_api(server, served):
    texts = ["the food was great", "awful service"]
    r = post(server, {"model": "sentiment", "inputs": texts, "search": {"beam_size": 4}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "classify" and body["search"] == {}  # a classifier takes no search option
    direct = served["sentiment"].predictor.predict(texts)
    assert [p["output"] for p in body["predictions"]] == [p.output for p in direct]
    weights = body["predictions"][0]["attention"]
    assert len(weights) == 1 and len(weights[0]) == len(body["predictions"][0]["input_tokens"])
    assert {a["output"] for a in body["predictions"][0]["alternatives"]} == {"neg", "pos"}


def test_models_lists_task_vocabulary_metrics_and_search_options(server):
    models = {m["name"]: m for m in httpx.get(f"{server}/v1/models").json()["models"]}
    dates, sentiment = models["dates"], models["sentiment"]
    assert dates["task"] == "translate" and set(dates["vocab"]) == {"source", "target"}
    assert dates["vocab"]["target"] > 10 and dates["config"]["model"]["attention"] == "general"
    assert "exact_match" in dates["metrics"] and dates["metrics"]["valid_metric"] == "exact_match"
    assert [o["name"] for o in dates["search"]] == ["beam_size", "n_best"]
    assert sentiment["task"] == "classify" and sentiment["labels"] == ["neg", "pos"] and sentiment["search"] == []
    assert "accuracy" in sentiment["metrics"]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_concurrent_http_requests_share_batches(server):
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        before = httpx.get(f"{server}/health").json()["batches"]["dates"]
        replies = list(pool.map(lambda i: post(server, {"inputs": [f"{i + 1} May 2020"], "search": {"beam_size": 2}}),
                                range(32)))  # fmt: skip
        after = httpx.get(f"{server}/health").json()["batches"]["dates"]
    assert all(r.status_code == 200 for r in replies)
    assert [r.json()["predictions"][0]["input"] for r in replies] == [f"{i + 1} May 2020" for i in range(32)]
    assert after["requests"] - before["requests"] == 32
    assert after["batches"] - before["batches"] < 32  # some were decoded together
    assert after["largest_batch"] > 1


# ------------------------------------------------------------------ limits and errors
@pytest.fixture(scope="module")
def strict(served):
    limits = Limits(max_chars=20, max_inputs=3, max_body_bytes=2000, timeout_s=0.3, max_queue=4)
    slow = ServedModel(name="slow", predictor=Recorder(delay=0.6), task="test")
    models = {"dates": served["dates"], "slow": slow}
    with live_server(create_app(models, limits=limits, batching=Batching(max_wait_ms=1))) as url:
        yield url


def error_of(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


def test_each_limit_is_a_4xx_naming_it(strict):
    e = error_of(post(strict, {"inputs": ["x" * 21]}), 422)
    assert e["code"] == "max_chars" and e["limit"] == 20 and "--max-chars" in e["message"]
    e = error_of(post(strict, {"inputs": ["a", "b", "c", "d"]}), 422)
    assert e["code"] == "max_inputs" and e["limit"] == 3
    e = error_of(post(strict, {"inputs": ["a"], "pad": "x" * 3000}), 413)
    assert e["code"] == "max_body_bytes" and e["limit"] == 2000

    def chunks():  # no Content-Length: the limit holds while the body streams in
        yield b'{"inputs": ["a"], "pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    e = error_of(httpx.post(f"{strict}/v1/predict", content=chunks(), headers={"content-type": "application/json"}),
                 413)  # fmt: skip
    assert e["code"] == "max_body_bytes"
    e = error_of(post(strict, {"model": "slow", "inputs": ["a"]}), 408)
    assert e["code"] == "timeout_s" and e["limit"] == 0.3


def test_a_full_queue_is_429(strict):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: post(strict, {"model": "slow", "inputs": ["a", "b", "c"]}), range(8)))
    codes = {r.status_code for r in replies}
    assert 429 in codes and codes <= {408, 429, 200}
    assert any(r.json()["error"]["code"] == "max_queue" for r in replies if r.status_code == 429)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "JSON"),
        (b'{"inputs": "one string"}', "inputs"),
        (b'{"inputs": [1, 2]}', "inputs.0"),
        (b'{"inputs": ["a"], "search": {"beam_size": 0}}', "search.beam_size"),
        (b'{"inputs": ["a"], "search": {"beams": 2}}', "search.beams"),
        (b'{"inputs": ["a"], "model": "nope"}', "is not served here"),
        (b'{"inputs": ["\\ud800"]}', "inputs.0"),  # a lone surrogate is not text
        (b"[]", "body"),
    ],
)
def test_bad_requests_get_a_json_422_that_says_what_is_wrong(strict, body, needle):
    r = httpx.post(f"{strict}/v1/predict", content=body, headers={"content-type": "application/json"})
    e = error_of(r, 422)
    assert needle in e["message"], e


def test_unknown_routes_and_methods_are_json_errors(strict):
    assert error_of(httpx.get(f"{strict}/v2/nothing"), 404)["code"] == "not_found"
    assert error_of(httpx.get(f"{strict}/v1/predict"), 405)["code"] == "invalid_request"


def test_the_page_and_its_files_are_served_without_external_urls(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        r = httpx.get(server + asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text
    assert "https://" not in page.text and "http://" not in page.text


# ------------------------------------------------------------------ the command
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_starts_answers_and_stops_on_ctrl_c(model_dirs):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnseq", "serve", "--model", str(model_dirs["dates"]), "--port", str(port),
         "--no-access-log"], stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.2)
        assert health["models"] == ["dates-run"]  # a run directory is named after itself, not best/
        r = post(f"http://127.0.0.1:{port}", {"inputs": ["March 3, 2021"]})
        assert r.status_code == 200 and r.json()["predictions"][0]["output_tokens"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "model 'dates-run' (translate)" in err and "Traceback" not in err


def test_serve_command_rejects_bad_flags_and_models(tmp_path, capsys):
    from attnseq.cli import main

    assert main(["serve", "--model", str(tmp_path), "--port", "1"]) == 2
    assert "no model.safetensors" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err


def test_binding_beyond_loopback_is_said_out_loud(monkeypatch, capsys, served):
    import uvicorn

    from attnseq.serve import run

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    run({"dates": served["dates"]}, host="0.0.0.0", port=1)
    assert "reachable from other machines" in capsys.readouterr().err and seen["host"] == "0.0.0.0"
    run({"dates": served["dates"]}, host="127.0.0.1", port=1)
    assert capsys.readouterr().err == ""
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


def test_requests_answered_while_another_model_decodes(strict):
    """No global lock: a slow model's batch does not hold up another model's requests."""
    done = threading.Event()
    slow = threading.Thread(target=lambda: (post(strict, {"model": "slow", "inputs": ["a"]}), done.set()))
    slow.start()
    time.sleep(0.05)
    start = time.perf_counter()
    r = post(strict, {"model": "dates", "inputs": ["1 May 2020"]})
    fast = time.perf_counter() - start
    slow.join()
    assert r.status_code == 200 and fast < 0.5 and done.is_set()


def test_a_model_runs_in_the_thread_it_was_loaded_in(model_dirs):
    """All of a model's torch work stays on its inference thread: a second OpenMP pool (one per
    calling thread) made decoding 2.7x slower on 2 cores."""
    from attnseq.serve import load_models

    models = load_models([f"dates={model_dirs['dates']}"])
    served = models["dates"]
    loaded_in = served.executor.submit(threading.get_ident).result()
    seen = []
    predict = served.predictor.predict
    served.predictor.predict = lambda inputs, **kw: (seen.append(threading.get_ident()), predict(inputs, **kw))[1]
    with live_server(create_app(models)) as url:
        assert post(url, {"inputs": ["1 May 2020", "2 May 2020"]}).status_code == 200
    assert seen == [loaded_in]
    served.executor.shutdown()


def test_cores_are_shared_out_among_models(monkeypatch):
    from attnseq.serve import batching

    monkeypatch.setattr(batching.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [batching.threads_per_model(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


# ------------------------------------------------------------------ the predictors' own checks, below the server
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda p: p.predict("one sentence"), "not one str"),
        (lambda p: p.predict(["ok", 3]), "[1]: a text (str), not int"),
        (lambda p: p.predict(None), "not NoneType"),
        (lambda p: p.predict(["ok"], batch_size=-1), "batch_size = -1"),
        (lambda p: p.predict(["ok"], beam_size=0), "beam_size = 0"),
        (lambda p: p.predict(["ok"], n_best=0), "n_best = 0"),
        (lambda p: p.predict(["ok"], beam_size=2.5), "beam_size = 2.5"),
    ],
)
def test_a_translator_checks_its_arguments_as_the_cli_does(served, call, needle):
    with pytest.raises(AttnseqError) as caught:
        call(served["dates"].predictor)
    assert needle in str(caught.value)


def test_a_classifier_checks_its_arguments_too(served):
    classifier = served["sentiment"].predictor
    for bad, needle in (("text", "not one str"), ([b"x"], "not bytes"), (["a", None], "[1]")):
        with pytest.raises(AttnseqError, match=re.escape(needle)):
            classifier.predict(bad)
    with pytest.raises(AttnseqError, match="batch_size = 0"):
        classifier.predict(["fine"], batch_size=0)
    assert len(classifier.predict(("a tuple", "works"))) == 2


def test_a_lone_http_request_is_not_held_for_the_batch_window(served):
    """The server tells the batcher when no other request is on its way in: with a 2 s window a
    lone request still comes back at once (the gate's count reaches the handler)."""
    with live_server(create_app({"dates": served["dates"]}, batching=Batching(max_wait_ms=2000))) as url:
        post(url, {"inputs": ["1 May 2020"]})
        start = time.perf_counter()
        assert post(url, {"inputs": ["2 May 2020"]}).status_code == 200
        assert time.perf_counter() - start < 1.0
