"""The HTTP API and the attention page (`attnseq serve`).

    POST /v1/predict   {"model": NAME, "inputs": [...], "search": {...}} -> predictions
                       (a speech model: "audio": [base64 of a wav file, ...] instead of "inputs")
    GET  /v1/models    each model's task, vocabulary sizes, labels, metrics, search options, config
    GET  /health       {"status": "ok", ...}
    GET  /             the page: type a sentence, see the output, its n-best list and attention
    GET  /openapi.json the schema (interactive docs at /docs)

The server knows predictors only through the task contract (`attnseq.contracts.Predictor`):
`predict(inputs, **search) -> list[Prediction]`, `search_options`, `search_defaults()` and
`info()`. A new task is served as soon as its predictor has those. The request schema is built from
the loaded models: `model` is one of their names, `search` has each option a loaded model takes,
with its bounds, and `inputs` the server's limits. Every error is JSON,
{"error": {"code", "message", "limit"}}, and bad input is always a 4xx.
"""

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from attnseq.errors import AttnseqError
from attnseq.serve.batching import Inbound, MicroBatcher, QueueFull, inference_thread, threads_per_model
from attnseq.serve.schema import ERRORS, PredictResponse
from attnseq.serve.settings import Batching, Limits

log = logging.getLogger("attnseq.serve")
STATIC = resources.files("attnseq.serve") / "static"


@dataclass
class ServedModel:
    name: str
    predictor: Any
    task: str
    directory: str = ""
    metrics: dict = field(default_factory=dict)
    executor: ThreadPoolExecutor | None = None  # the thread the predictor was loaded in and runs in

    def describe(self) -> dict:
        defaults = self.predictor.search_defaults()
        options = [
            {
                "name": o.name,
                "type": o.type.__name__,
                "minimum": o.minimum,
                "maximum": o.maximum,
                "default": defaults.get(o.name),
                "help": o.help,
            }  # fmt: skip
            for o in self.predictor.search_options
        ]
        config = getattr(self.predictor, "config", None)
        return {
            "name": self.name,
            "task": self.task,
            "input": input_kind(self.predictor),
            "output": getattr(self.predictor, "output_kind", "text"),  # "label": one class (and every class's score)
            "directory": self.directory,
            **self.predictor.info(),
            "search": options,
            "metrics": _finite(self.metrics),
            "config": config.to_dict() if config is not None else {},
        }


def input_kind(predictor) -> str:
    """What a predictor reads: "text" (the request's inputs) or "audio" (the request's audio)."""
    return getattr(predictor, "input_kind", "text")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, limit: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.limit = status, code, message, limit


class _Gate:
    """ASGI middleware: reads each request body up to the limit before the app sees it (Content-Length
    or not), answering 413 past it, and counts predict requests on their way in, which the batchers
    read (`Inbound`)."""

    def __init__(self, app, *, max_body_bytes: int, inbound: Inbound) -> None:
        self.app, self.max_body_bytes, self.inbound = app, max_body_bytes, inbound

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        counted = scope["path"] == "/v1/predict" and scope.get("method") == "POST"
        if counted:
            self.inbound.pending += 1
            scope.setdefault("state", {})["attnseq_inbound"] = True
        try:
            body = await self._read(scope, receive)
            if body is None:
                return await _too_large(self.max_body_bytes)(scope, receive, send)
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()  # after the body: wait for the disconnect
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            if counted and scope["state"].pop("attnseq_inbound", False):
                self.inbound.pending -= 1

    async def _read(self, scope, receive) -> bytes | None:
        """The whole body, or None past the limit (without reading further)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return None
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(parts)


def _too_large(limit: int) -> JSONResponse:
    return _error(413, "max_body_bytes", f"request body over {limit} bytes (serve --max-body-bytes)", limit)


def _error(status: int, code: str, message: str, limit: float | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "limit": limit}}, status_code=status)


def _finite(value):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _validation_error(exc: RequestValidationError, limits: Limits, models) -> JSONResponse:
    errors = exc.errors()
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc[:2] == ["body", "inputs"] and len(loc) == 3 and err.get("type") == "string_too_long":
            return _error(422, "max_chars", f"inputs[{loc[2]}] is longer than {limits.max_chars} characters "
                          "(serve --max-chars)", limits.max_chars)  # fmt: skip
        if loc == ["body", "inputs"] and err.get("type") == "too_long":
            return _error(422, "max_inputs", f"more than {limits.max_inputs} inputs in one request "
                          "(serve --max-inputs)", limits.max_inputs)  # fmt: skip
    for err in errors:
        if [str(p) for p in err.get("loc", ())] == ["body", "model"] and err.get("type") == "literal_error":
            return _error(422, "invalid_request", f"model {err.get('input')!r} is not served here; "
                          f"GET /v1/models lists them: {', '.join(models)}")  # fmt: skip
    shown = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return _error(422, "invalid_request", shown + more)


def _a_number(value):
    """A number option given as a string or true / false is refused ("5" is not a beam size), as the
    command line and Python refuse it; 5.0 is JSON's 5."""
    if isinstance(value, (str, bool)):
        raise ValueError(f"a number, not {type(value).__name__} {value!r}")
    return value


def _request_model(models: dict[str, ServedModel], limits: Limits) -> type[BaseModel]:
    """The predict request's schema, from the loaded models' names and search options."""
    fields: dict[str, Any] = {}
    for served in models.values():
        for o in served.predictor.search_options:
            if o.name not in fields:
                kind = o.type if o.type is bool else Annotated[o.type, Field(ge=o.minimum, le=o.maximum),
                                                                BeforeValidator(_a_number)]  # fmt: skip
                fields[o.name] = (kind | None, Field(None, description=o.help))
    search = create_model("Search", __config__=ConfigDict(extra="forbid"), **fields)
    names = tuple(models)
    text = Annotated[str, StringConstraints(max_length=limits.max_chars)]
    audio = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/=\s]*$")]
    kinds = {input_kind(served.predictor) for served in models.values()}
    both = len(kinds) > 1  # then each field is optional; _inputs says which one the chosen model reads
    body: dict[str, Any] = {}
    if "text" in kinds:
        body["inputs"] = (list[text] | None if both else list[text],
                            Field(None if both else ..., min_length=1, max_length=limits.max_inputs,
                                  description="texts to predict (text models)"))  # fmt: skip
    if "audio" in kinds:
        body["audio"] = (list[audio] | None if both else list[audio],
                         Field(None if both else ..., min_length=1, max_length=limits.max_inputs,
                               description="speech models: audio files (wav, flac), each base64 encoded"))  # fmt: skip
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        model=(Literal[names] | None, Field(None, description=f"one of the served models (default {names[0]!r})")),
        **body,
        search=(
            search,
            Field(
                default_factory=search,
                description="search options; a model uses those it takes "
                "(GET /v1/models lists them) and its config's decode section for the rest",
            ),
        ),  # fmt: skip
    )


def _inputs(body, served: ServedModel) -> list:
    """The request's inputs as the model's predictor takes them: texts, or the decoded bytes of audio files."""
    kind = input_kind(served.predictor)
    inputs, audio = getattr(body, "inputs", None), getattr(body, "audio", None)
    given, other = (audio, inputs) if kind == "audio" else (inputs, audio)
    field, wrong = ("audio", "inputs") if kind == "audio" else ("inputs", "audio")
    if other is not None or given is None:
        raise ApiError(422, "invalid_request", f"model {served.name!r} ({served.task}) reads {kind}: give "
                       f"'{field}'" + (f", not '{wrong}'" if other is not None else ""))  # fmt: skip
    if kind == "text":
        return given
    import base64
    import binascii

    out = []
    for i, item in enumerate(given):
        try:
            out.append(base64.b64decode(item, validate=False))
        except (binascii.Error, ValueError):
            raise ApiError(422, "invalid_request", f"audio[{i}]: not base64") from None
    return out


def create_app(models: dict[str, ServedModel], *, limits: Limits | None = None, batching: Batching | None = None):
    """The FastAPI application serving `models` (name -> ServedModel, the first is the default)."""
    if not models:
        raise ValueError("no models to serve")
    limits, batching = limits or Limits(), batching or Batching()
    inbound = Inbound()
    batchers = {
        name: MicroBatcher(
            served.predictor.predict,
            name=name,
            max_batch=batching.max_batch,
            max_wait_ms=batching.max_wait_ms,
            max_queue=limits.max_queue,
            enabled=batching.enabled,
            inbound=inbound,
            executor=served.executor,
        )  # fmt: skip
        for name, served in models.items()
    }

    async def lifespan(app):
        for batcher in batchers.values():
            batcher.start()
        yield
        for batcher in batchers.values():
            await batcher.stop()

    from attnseq import __version__

    about = "Sequence-to-sequence models with attention, and attention-pooling classifiers."
    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN (blank offline, third-party code
    # on the API's origin); /openapi.json describes the API for any OpenAPI viewer
    app = FastAPI(title="attnseq", version=__version__, lifespan=lifespan, description=about, docs_url=None,
                  redoc_url=None)  # fmt: skip
    app.state.models, app.state.batchers, app.state.limits, app.state.batching = models, batchers, limits, batching
    app.add_middleware(_Gate, max_body_bytes=limits.max_body_bytes, inbound=inbound)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc.status, exc.code, exc.message, exc.limit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        return _validation_error(exc, limits, models)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        code = "not_found" if exc.status_code == 404 else "invalid_request"
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):  # a fault of the server, never of the input: logged in full
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", f"the server failed ({type(exc).__name__}); its log has the details")

    PredictRequest = _request_model(models, limits)  # noqa: N806

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(body: PredictRequest, request: Request):  # type: ignore[valid-type]
        start = time.perf_counter()
        served = models[body.model or next(iter(models))]
        batcher = batchers[served.name]
        inputs = _inputs(body, served)
        taken = {o.name for o in served.predictor.search_options}
        search = {k: v for k, v in body.search.model_dump().items() if v is not None and k in taken}
        if request.scope.get("state", {}).pop("attnseq_inbound", False):
            inbound.pending -= 1  # handed over: no longer on its way in
        try:
            future = batcher.submit(inputs, search)
        except QueueFull as exc:
            raise ApiError(429, "max_queue", f"{exc}; retry later (serve --max-queue)", limits.max_queue) from None
        try:
            predictions = await asyncio.wait_for(future, limits.timeout_s)
        except TimeoutError:
            raise ApiError(408, "timeout_s", f"not answered within {limits.timeout_s:g} s (serve --timeout)",
                           limits.timeout_s) from None  # fmt: skip
        except (AttnseqError, ValueError) as exc:
            raise ApiError(400, "bad_input", str(exc)) from None
        # the dict as it stands (PredictResponse documents it; validating it again per request costs time)
        return JSONResponse({
            "model": served.name,
            "task": served.task,
            "search": {**served.predictor.search_defaults(), **search},
            "predictions": [_finite(p.to_dict()) for p in predictions],
            "seconds": time.perf_counter() - start,
        })  # fmt: skip

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"models": [served.describe() for served in models.values()],
                "limits": vars(limits), "batching": vars(batching)}  # fmt: skip

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": list(models),
                "batches": {name: b.stats.to_dict() for name, b in batchers.items()}}  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _warm_up(predictor) -> None:
    """One prediction before the first request, so that it does not pay for building the decoding
    copy and the kernels' first calls (about 0.4 s for the Multi30k recipe)."""
    try:
        if input_kind(predictor) == "audio":
            import numpy as np

            predictor.predict([np.zeros(predictor.config.data.sample_rate // 2, np.float32)])
        else:
            predictor.predict(["a"])
    except Exception as exc:  # a model that cannot read "a" still serves; its first request warms it
        log.warning("warm-up of %s failed: %s", type(predictor).__name__, exc)


def load_models(specs: list[str], *, device: str = "cpu", threads: int = 0,
                overrides: list[str] = ()) -> dict[str, ServedModel]:  # fmt: skip
    """`serve --model` values, DIR or NAME=DIR, each loaded through its task in its own inference
    thread with `threads` torch threads (0: the machine's cores shared out among the models), with
    `serve --set decode.KEY=VALUE` `overrides` applied to each. Names default to the directory's
    name, or its parent's for a run's best/."""
    from attnseq.checkpoint import load_metrics, resolve_model_dir
    from attnseq.predict import load_with_task, set_decode

    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = "", spec
        directory = resolve_model_dir(path)
        if not name:
            name = directory.parent.name if directory.name in ("best", "last") else directory.name
        if name in named:
            raise AttnseqError(f"--model {spec}: the name {name!r} is taken; give NAME=DIR")
        named[name] = directory
    threads = threads or threads_per_model(len(named))
    models: dict[str, ServedModel] = {}
    for name, directory in named.items():
        executor = inference_thread(threads, name)
        try:
            predictor, task = executor.submit(load_with_task, directory, device=device).result()
            set_decode(predictor, task, list(overrides), where=f"serve (model {name!r})")
            executor.submit(_warm_up, predictor).result()
        except BaseException:
            executor.shutdown()
            raise
        models[name] = ServedModel(name=name, predictor=predictor, task=task.name, directory=str(directory),
                                   metrics=load_metrics(directory), executor=executor)  # fmt: skip
    return models


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(models: dict[str, ServedModel], *, host: str = "127.0.0.1", port: int = 8000, access_log: bool = True,
        limits: Limits | None = None, batching: Batching | None = None) -> None:  # fmt: skip
    """Serve until interrupted (uvicorn)."""
    import sys

    import uvicorn

    if not is_loopback(host):
        print(f"attnseq serve: listening on {host}, reachable from other machines; the API has no "
              "authentication: put it behind a proxy that has", file=sys.stderr)  # fmt: skip
    app = create_app(models, limits=limits, batching=batching)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")


__all__ = ["Batching", "Limits", "ServedModel", "create_app", "load_models", "run"]
