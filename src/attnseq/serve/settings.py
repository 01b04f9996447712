"""The server's limits and batching settings: one place for their defaults (the CLI's flags read
them here, without importing the web framework)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """What one request may ask; each breach is a 4xx naming the limit and the flag that sets it."""

    max_chars: int = 1000  # characters per input
    max_inputs: int = 64  # inputs per request
    max_body_bytes: int = 1 << 20  # request body
    timeout_s: float = 30.0  # queueing and decoding, per request
    max_queue: int = 4096  # inputs waiting per model


@dataclass
class Batching:
    enabled: bool = True
    max_batch: int = 64  # inputs decoded together
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
