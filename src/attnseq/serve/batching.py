"""Micro-batching: concurrent requests for one model decoded as one batch.

Each model has one `MicroBatcher`: a queue of jobs (one job = one request's inputs and search
options) and one worker thread that runs the predictor. The gatherer takes the first waiting job,
then keeps taking jobs for up to `max_wait_ms` or until `max_batch` inputs are gathered, and runs
the jobs that share search options as one `predict` call; each caller gets its own predictions
back, in its input order. It stops waiting early when no other request is on its way into the
server (`Inbound`) and the last batch served a single caller, so a lone client never waits for
company that is not coming, while callers that came together (and come back together) are
gathered again.

Nothing is locked across models: each has its own inference thread, and the event loop stays free
to read and answer requests while a batch decodes. A model is loaded in its inference thread and
only ever run there, with its share of the CPU cores as torch threads (`inference_thread`): OpenMP
keeps one pool of threads per thread that calls it, and once the pools together outnumber the
cores it stops spinning between parallel regions, which made decoding from a second thread
several times slower than from the main thread (docs/serving.md has the measurement).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from attnseq.errors import AttnseqError
from attnseq.serve.settings import Batching, Limits


def inference_thread(torch_threads: int, name: str) -> ThreadPoolExecutor:
    """One worker thread that runs all of a model's torch work with `torch_threads` intra-op threads
    (0: torch's default)."""

    def setup() -> None:
        import torch

        if torch_threads > 0 and torch.get_num_threads() != torch_threads:  # setting it anew costs time
            torch.set_num_threads(torch_threads)

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"attnseq-{name}", initializer=setup)


def threads_per_model(models: int) -> int:
    """Each of `models` models' share of this machine's cores (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, models))


class QueueFull(Exception):
    """More inputs are waiting for this model than the server's queue limit."""


@dataclass
class Inbound:
    """Predict requests the server has begun to receive but not yet handed to a batcher."""

    pending: int = 0


@dataclass
class Job:
    inputs: list[str]
    search: dict
    future: asyncio.Future
    key: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.key = tuple(sorted(self.search.items()))


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    inputs: int = 0
    largest: int = 0  # most inputs decoded in one predict call
    busy_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "inputs": self.inputs,
                "largest_batch": self.largest, "busy_seconds": round(self.busy_seconds, 3)}  # fmt: skip


class MicroBatcher:
    """Gather jobs for one predictor and run them in its own worker thread.

    `enabled=False` runs each request on its own (batching off: the baseline of bench/serve.py).
    """

    def __init__(
        self,
        predict: Callable[..., list],
        *,
        name: str = "model",
        max_batch: int = Batching.max_batch,
        max_wait_ms: float = Batching.max_wait_ms,
        max_queue: int = Limits.max_queue,
        enabled: bool = True,
        inbound: Inbound | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms at least 0")
        self.predict, self.name = predict, name
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.enabled = enabled
        self.inbound = inbound or Inbound()
        self.stats = BatchStats()
        self._jobs: deque[Job] = deque()
        self._queued_inputs = 0
        self._last_requests = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._owns_executor = executor is None  # a model's inference thread outlives one app
        self._executor = executor or inference_thread(0, name)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(AttnseqError("the server is shutting down"))
        self._jobs.clear()
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ callers
    def submit(self, inputs: list[str], search: dict) -> asyncio.Future:
        """Queue one request; the future resolves to its predictions (in input order)."""
        if self._queued_inputs + len(inputs) > self.max_queue:
            raise QueueFull(f"{self._queued_inputs} inputs are already waiting for model {self.name!r}")
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(Job(list(inputs), dict(search), future))
        self._queued_inputs += len(inputs)
        self._arrived.set()
        return future

    # ------------------------------------------------------------------ the gatherer
    def _take(self) -> Job | None:
        while self._jobs:
            job = self._jobs.popleft()
            self._queued_inputs -= len(job.inputs)
            if not job.future.done():  # a caller that timed out has cancelled its future
                return job
        return None

    async def _next_job(self) -> Job:
        while True:
            job = self._take()
            if job is not None:
                return job
            self._arrived.clear()
            await self._arrived.wait()

    async def _gather(self) -> list[Job]:
        jobs = [await self._next_job()]
        if not self.enabled:
            return jobs
        size, deadline = len(jobs[0].inputs), time.monotonic() + self.max_wait
        while size < self.max_batch:
            job = self._take()
            if job is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.inbound.pending == 0 and self._last_requests <= 1):
                    break  # waited long enough, or no request is on its way in and none came with the last
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                continue
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            self._last_requests = len(jobs)  # under load (several callers at once), the next batch waits for them
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                await self._run_group(loop, group)

    async def _run_group(self, loop, group: list[Job]) -> None:
        inputs = [text for job in group for text in job.inputs]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._call, inputs, group[0].search)
        except Exception as exc:
            results, error = None, exc
        self.stats.busy_seconds += time.perf_counter() - start
        if results is None:
            if len(group) == 1:
                _settle(group[0].future, exc=error)
            else:  # one request's fault must not fail the others: run each alone
                for job in group:
                    await self._run_group(loop, [job])
            return
        self.stats.batches += 1
        self.stats.requests += len(group)
        self.stats.inputs += len(inputs)
        self.stats.largest = max(self.stats.largest, len(inputs))
        offset = 0
        for job in group:
            _settle(job.future, result=results[offset : offset + len(job.inputs)])
            offset += len(job.inputs)

    def _call(self, inputs: list[str], search: dict) -> list:
        results = self.predict(inputs, **search)
        if len(results) != len(inputs):
            raise RuntimeError(f"predictor returned {len(results)} results for {len(inputs)} inputs")
        return results


def _settle(future: asyncio.Future, *, result=None, exc: BaseException | None = None) -> None:
    if future.done():  # its caller timed out meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
