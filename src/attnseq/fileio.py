"""Reading and writing whole files safely; imported by every module that touches the disk.

Writes go to a temporary file beside the target, are flushed to disk and moved into place with
`os.replace`, so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from attnseq.errors import AttnseqError


def umask() -> int:
    """The process's file-creation mask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    """Flush a file that another library wrote to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json_file(path: Path):
    """A JSON file's value; invalid JSON is an AttnseqError naming the file and line."""
    import json

    try:
        return json.loads(read_text_file(path))
    except json.JSONDecodeError as exc:
        raise AttnseqError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def read_text_file(path: Path) -> str:
    """A whole UTF-8 text file (a leading byte-order mark is dropped).

    Raises:
        AttnseqError: naming the line of the first byte that is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise AttnseqError(f"{path}:{line}: not valid UTF-8; re-save the file as UTF-8") from None


class DirectoryLock:
    """An exclusive lock on a directory, held while this object is open (a `.lock` file inside
    taken with `flock`; the system releases it when the process ends, however it ends).

    Raises:
        AttnseqError: when another process holds it, naming that process where it wrote its pid.
    """

    NAME = ".lock"

    def __init__(self, directory: Path, what: str = "a training run") -> None:
        import fcntl

        path = Path(directory) / self.NAME
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~umask())
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            self.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AttnseqError(
                f"{directory}: another process{who} is writing {what} here; wait for it to end or choose another --out"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __del__(self) -> None:
        self.close()


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove what an interrupted atomic write left in `directory` (`.NAME.*.tmp` files and
    directories); call it only while holding the directory's lock. Returns what it removed."""
    import shutil

    removed = []
    for entry in Path(directory).glob(".*.tmp"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
