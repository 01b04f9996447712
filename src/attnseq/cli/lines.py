"""Line-by-line commands (`translate`, `classify`): input read as it comes, each result written as
soon as its batch is done, and at a terminal a prompt that answers each line as it is typed.

`batches(path)` yields the input lines in batches: a batch closes when it is full (a few decoding
batches, so length-sorting still pays) or when nothing more is waiting on a pipe, so a producer
that writes a line and waits gets its answer. `Progress` counts the lines done on stderr when
stderr is a terminal (quiet otherwise). `prompt(answer)` is the interactive loop.
"""

from __future__ import annotations

import select
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from attnseq.errors import AttnseqError


def _waiting(stream) -> bool:
    """Whether more input is ready to read without blocking (a regular file always is)."""
    try:
        return bool(select.select([stream], [], [], 0)[0])
    except (OSError, ValueError, TypeError):  # no file descriptor (a stream put in stdin's place): read on
        return True


def check_input(path: str | None) -> None:
    """--input names a file (None: stdin)."""
    if path is not None and Path(path).is_dir():
        raise AttnseqError(f"--input {path}: a directory; give a file of one text per line")
    if path is not None and not Path(path).exists():
        raise AttnseqError(f"--input {path}: file not found; check the path")


def batches(path: str | None, size: int) -> Iterator[list[str]]:
    """The lines of --input `path` (or of stdin), `size` at most per batch; stdin's batches also close
    when nothing more is waiting."""
    from attnseq.readers import decode_lines, read_lines

    check_input(path)
    if path is not None:
        lines, stream = (line for _, line in read_lines(path)), None
    else:
        stream = getattr(sys.stdin, "buffer", None)  # a text stream put in its place (tests) has none
        lines = (line for _, line in decode_lines(stream or (t.encode() for t in sys.stdin), "stdin"))
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size or (stream is not None and not _waiting(stream)):
            yield batch
            batch = []
    if batch:
        yield batch


class Progress:
    """`N lines, X lines/s` on stderr (lines, or files), rewritten after each batch, when stderr is a terminal."""

    def __init__(self, what: str) -> None:
        self.what, self.done, self.start = what, 0, time.perf_counter()
        self.shown = sys.stderr.isatty()

    def add(self, n: int) -> None:
        self.done += n
        if self.shown:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"\r{self.what}: {self.done:,} lines, {rate:,.1f} lines/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown and self.done:
            print(file=sys.stderr, flush=True)


def stream(path: str | None, size: int, write: Callable[[list[str], int], bool], *, what: str) -> bool:
    """Feed the input's batches to `write(lines, number of the first)`; returns whether any call
    returned True (a line was refused)."""
    progress, number, refused = Progress(what), 1, False
    try:
        for batch in batches(path, size):
            refused |= write(batch, number)
            sys.stdout.flush()
            number += len(batch)
            progress.add(len(batch))
    finally:
        progress.close()
    return refused


def prompt(write: Callable[[list[str], int], bool], *, what: str) -> int:
    """The interactive loop: each typed line answered at once; Ctrl-D leaves, Ctrl-C at the prompt
    clears the line and during an answer abandons it. Returns the exit status."""
    import readline  # noqa: F401  (line editing and history for input())

    print(f"attnseq {what}: type a line and press Enter; Ctrl-D leaves", file=sys.stderr, flush=True)
    number = 0
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        number += 1
        try:
            write([line], number)
        except KeyboardInterrupt:
            print("\n(interrupted)", flush=True)
        sys.stdout.flush()
