"""Labelled texts (task classify): TSV lines TEXT TAB LABEL, or CSV with a header naming the text and
label columns; each error names file:line. With `data.files`, each file is a domain, split train /
valid / test by `data.split` under `data.split_seed`; otherwise `data.train` / `data.valid` /
`data.test` are the splits."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from attnseq.errors import AttnseqError
from attnseq.readers import SPLITS, read_lines, seeded_split


@dataclass
class Example:
    text: str
    label: str
    domain: str
    where: str  # file:line, for messages


def read_labelled(path: str | Path, cfg, *, domain: str = "") -> list[Example]:
    """Read one TSV (TEXT TAB LABEL) or CSV file of labelled texts; every error names file:line."""
    path = Path(path)
    domain = domain or path.stem
    examples = []
    if cfg.format == "csv":
        lines = [line for _, line in read_lines(path)]  # UTF-8 checked line by line
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise AttnseqError(
                f"{path}:1: no column {', '.join(map(repr, missing))} in the header "
                f"({', '.join(reader.fieldnames or [])}); set data.text_column / data.label_column"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            text, label = (row[cfg.text_column] or "").strip(), (row[cfg.label_column] or "").strip()
            _check(text, label, where)
            examples.append(Example(text, label, domain, where))
    else:
        for lineno, line in read_lines(path):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue  # a blank line (often the last) carries nothing
            if "\t" not in line:
                raise AttnseqError(f"{where}: no tab in the line; write TEXT<TAB>LABEL")
            text, label = line.rsplit("\t", 1)
            _check(text.strip(), label.strip(), where)
            examples.append(Example(text.strip(), label.strip(), domain, where))
    if not examples:
        raise AttnseqError(f"{path}: no labelled text in the file")
    return examples


def _check(text: str, label: str, where: str) -> None:
    if not text:
        raise AttnseqError(f"{where}: the text is empty; fill it or drop the line")
    if not label:
        raise AttnseqError(f"{where}: the label is empty; every text needs a label")


def split_examples(cfg) -> dict[str, list[Example]]:
    """train / valid / test examples: each of data.files shuffled under data.split_seed and cut
    by data.split (so every domain is split in the same shares), or the ready-made files."""
    d = cfg
    if not d.files:
        if not d.train or not d.valid:
            raise AttnseqError("data.files (split by data.split) or data.train and data.valid must be set")
        return {name: read_labelled(getattr(d, name), d) if getattr(d, name) else [] for name in SPLITS}
    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    names = d.domains or [Path(f).stem for f in d.files]
    for i, (path, domain) in enumerate(zip(d.files, names)):
        examples = read_labelled(path, d, domain=domain)
        for name, index in seeded_split(len(examples), d.split, f"{d.split_seed}:{i}").items():
            out[name].extend(examples[j] for j in index)
    return out
