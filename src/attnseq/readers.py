"""Reading text data: lines, TSV pairs, line-aligned parallel files (plain or .gz), CSV / JSON Lines
records, and seeded splits.

Every reading error names the file and the line and says how to fix it (`AttnseqError`).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import random
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from attnseq.catalogue import resolve
from attnseq.errors import AttnseqError

if TYPE_CHECKING:  # the text tasks' data sections (attnseq.tasks.translation)
    from attnseq.tasks.records import RecordsDataConfig
    from attnseq.tasks.translation import DataConfig


def expand(path: str) -> list[str]:
    """The files a config path names: itself, or, for a file-name pattern with * ? or [...] (e.g.
    `data:arxiv-titles/train-*.jsonl.gz`), the files it matches in its folder, sorted (a `data:`
    folder is looked up as `catalogue.resolve` looks up any `data:` path).

    Raises:
        AttnseqError: a pattern that matches no file.
    """
    text = str(path)
    if not any(c in text for c in "*?["):
        return [text]
    folder, _, name = text.rpartition("/")
    base = resolve(folder) if folder else Path(".")
    if found := sorted(str(f) for f in base.glob(name) if f.is_file()):
        return found
    raise AttnseqError(f"{text}: no file matches this pattern (in {base}); check the path")


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without the newline) of a UTF-8 file, plain or gzip;
    `data:NAME/FILE` paths are looked up in the data directories (`attnseq.catalogue.resolve`)."""
    path = resolve(path)
    if not path.is_file():
        raise AttnseqError(f"{path}: file not found; check the path in the config or --set")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            yield from decode_lines(f, str(path))
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise AttnseqError(f"{path}: not a readable gzip file ({exc}); re-compress it") from None
    except OSError as exc:
        raise AttnseqError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None


def decode_lines(stream: Iterable[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line end) of a binary stream of UTF-8 lines (a file,
    standard input's buffer); `name` is what errors call it. A line ends with \\n, \\r\\n or a bare \\r
    (as old Mac files end theirs).

    Raises:
        AttnseqError: naming the line and byte that is not UTF-8.
    """
    lineno = 0
    for raw in stream:
        body = raw[:-1] if raw.endswith(b"\n") else raw
        body = body[:-1] if body.endswith(b"\r") else body
        for piece in body.split(b"\r"):
            lineno += 1
            try:
                text = piece.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise AttnseqError(f"{name}:{lineno}: byte {exc.start + 1} of the line is not valid UTF-8; re-save "
                                   "the file as UTF-8") from None  # fmt: skip
            yield lineno, text


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read `source TAB target` lines; extra columns (e.g. attribution) are ignored."""
    pairs = []
    for lineno, line in read_lines(path):
        if not line.strip():
            raise AttnseqError(f"{path}:{lineno}: empty line; remove it (every line must be SOURCE<TAB>TARGET)")
        if "\t" not in line:
            raise AttnseqError(f"{path}:{lineno}: no tab in the line; separate source and target with a TAB")
        src, tgt = line.split("\t")[:2]
        for side, text in (("source", src), ("target", tgt)):
            if not text.strip():
                raise AttnseqError(f"{path}:{lineno}: the {side} side is empty; fill it or drop the line")
        pairs.append((src, tgt))
    if not pairs:
        raise AttnseqError(f"{path}: the file is empty; it needs SOURCE<TAB>TARGET lines")
    return pairs


def _read_side(path: Path) -> list[str]:
    lines = []
    for lineno, line in read_lines(path):
        if not line.strip():
            raise AttnseqError(
                f"{path}:{lineno}: empty line; parallel files need text on every line "
                "(remove the line here and the same line in the other file)"
            )
        lines.append(line)
    if not lines:
        raise AttnseqError(f"{path}: the file is empty; it needs one sentence per line")
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Read two line-aligned files into pairs."""
    src_lines, tgt_lines = _read_side(Path(src_path)), _read_side(Path(tgt_path))
    if len(src_lines) != len(tgt_lines):
        raise AttnseqError(
            f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}; "
            "parallel files must be line-aligned (same number of lines)"
        )
    return list(zip(src_lines, tgt_lines))


def read_pairs(spec: str, cfg: DataConfig, *, key: str = "data.train") -> list[tuple[str, str]]:
    """Read the pairs named by a config path: a TSV file, or `<spec><suffix>` parallel files."""
    if not spec:
        raise AttnseqError(f"'{key}' is not set; give a file in the config or with --set {key}=PATH")
    if cfg.src_suffix:
        return read_parallel(spec + cfg.src_suffix, spec + cfg.tgt_suffix)
    return read_tsv(spec)


SPLITS = ("train", "valid", "test")


def seeded_split(n: int, shares: list[float], seed: str) -> dict[str, list[int]]:
    """Items 0..n-1 shuffled by `random.Random(seed)` and cut by `shares` (train, valid, test);
    each split's indices in file order. The same seed gives the same split on every machine."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_train, n_valid = round(shares[0] * n), round(shares[1] * n)
    cuts = (order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :])
    return {name: sorted(index) for name, index in zip(SPLITS, cuts)}


@dataclass
class Record:
    src: str
    tgt: str
    where: str  # file:line, for messages


def read_records(path: str | Path, d: RecordsDataConfig) -> tuple[list[Record], int]:
    """The (source, target) records of a CSV file (a header naming d.src_field and d.tgt_field) or
    a JSON Lines file (objects with those keys), and how many were dropped for an empty side.
    A malformed record is an AttnseqError naming file:line and the fix. A file is parsed once per
    process while it is unchanged (size and modification time): a task reads its train, valid and
    test splits, and its baselines, from the same parse."""
    file = resolve(path)
    if not file.is_file():
        return _parse_records(path, d)  # says what is wrong with the path
    stat = file.stat()
    records, dropped = _parsed_records(str(path), d.format, d.src_field, d.tgt_field, stat.st_mtime_ns, stat.st_size)
    return list(records), dropped


@functools.lru_cache(maxsize=8)
def _parsed_records(path: str, fmt: str, src_field: str, tgt_field: str, mtime_ns: int, size: int):
    d = SimpleNamespace(format=fmt, src_field=src_field, tgt_field=tgt_field)  # what the parser reads of a config
    records, dropped = _parse_records(path, d)
    return tuple(records), dropped


def _parse_records(path: str | Path, d: RecordsDataConfig) -> tuple[list[Record], int]:
    lines = [(lineno, line) for lineno, line in read_lines(path)]  # UTF-8 checked line by line
    path = resolve(path)
    fields = (d.src_field, d.tgt_field)
    records, dropped = [], 0

    def keep(src, tgt, where: str) -> None:
        nonlocal dropped
        for name, value in zip(fields, (src, tgt)):
            if value is not None and not isinstance(value, str):
                raise AttnseqError(f"{where}: {name!r} is {type(value).__name__} {value!r}, not a text; "
                                   "write it as a string")  # fmt: skip
        src, tgt = " ".join((src or "").split()), " ".join((tgt or "").split())
        if src and tgt:
            records.append(Record(src, tgt, where))
        else:
            dropped += 1

    if d.format == "csv":
        reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)), strict=True)
        start = 1  # the line (of `lines`) the next record starts on: a bad quote is named where it opened
        try:
            header = reader.fieldnames or []
            missing = [f for f in fields if f not in header]
            if missing:
                raise AttnseqError(
                    f"{path}:1: no column {', '.join(map(repr, missing))} in the header ({', '.join(header)}); "
                    "set data.src_field / data.tgt_field"
                )
            start = reader.line_num + 1
            for row in reader:
                where = f"{path}:{lines[start - 1][0]}"
                if None in row:
                    raise AttnseqError(f"{where}: {len(header) + len(row[None])} fields where the header has "
                                       f"{len(header)}; quote a field that holds a comma")  # fmt: skip
                keep(row[d.src_field], row[d.tgt_field], where)
                start = reader.line_num + 1
        except csv.Error as exc:
            line = lines[min(start, len(lines)) - 1][0] if lines else 1
            raise AttnseqError(f"{path}:{line}: not valid CSV ({exc}); check the quoting of the record "
                               "that starts here") from None  # fmt: skip
    else:
        for lineno, line in lines:
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AttnseqError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); "
                                   "write one JSON object per line") from None  # fmt: skip
            if not isinstance(obj, dict):
                raise AttnseqError(f"{where}: a JSON {type(obj).__name__}, not an object; write one object per line")
            missing = [f for f in fields if f not in obj]
            if missing:
                raise AttnseqError(f"{where}: no key {', '.join(map(repr, missing))} in the record; "
                                   "set data.src_field / data.tgt_field")  # fmt: skip
            keep(obj[d.src_field], obj[d.tgt_field], where)
    if not records:
        raise AttnseqError(f"{path}: no record with both {d.src_field!r} and {d.tgt_field!r} filled")
    return records, dropped


def split_records(d: RecordsDataConfig) -> dict[str, list[Record]]:
    """train / valid / test records: each of d.files split by d.split under d.split_seed (the
    same shares from each file), or the ready-made d.train / d.valid / d.test files (each a file
    or a pattern of files, `expand`)."""
    if not d.files:
        return {name: [r for file in expand(getattr(d, name)) for r in read_records(file, d)[0]] if getattr(d, name)
                else [] for name in SPLITS}  # fmt: skip
    out: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for i, path in enumerate(d.files):
        records, _ = read_records(path, d)
        for name, index in seeded_split(len(records), d.split, f"{d.split_seed}:{i}").items():
            out[name].extend(records[j] for j in index)
    return out
