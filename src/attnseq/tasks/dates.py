"""The built-in demo task: human-written dates -> ISO 8601, generated deterministically.

Every day from 1950-01-01 to 2049-12-31 is assigned, by a seeded shuffle, to exactly one split
(80 % train, 10 % valid, 10 % test), so validation and test dates are never seen in training.
Each example writes its date in one of many human formats, with random casing.
Two-digit years follow one rule: '50..'99 are 19xx, '00..'49 are 20xx.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

from attnseq.fileio import atomic_write_text

FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
SPLITS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
DEFAULT_SIZES = {"train": 40000, "valid": 1000, "test": 2000}

ORDINAL_WORDS = (
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth twenty-first "
    "twenty-second twenty-third twenty-fourth twenty-fifth twenty-sixth twenty-seventh "
    "twenty-eighth twenty-ninth thirtieth thirty-first"
).split()


def ordinal(n: int) -> str:
    """1 -> 1st, 2 -> 2nd, 11 -> 11th, 23 -> 23rd."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fmt(pattern: str) -> Callable[[dt.date], str]:
    """strftime plus the fields {d} (day without zero), {m} (month without zero), {o} (ordinal day)
    and {w} (ordinal day in words)."""

    def render(d: dt.date) -> str:
        return d.strftime(pattern.format(d=d.day, m=d.month, o=ordinal(d.day), w=ORDINAL_WORDS[d.day - 1]))

    return render


FORMATS: dict[str, Callable[[dt.date], str]] = {
    "3 March 2021": _fmt("{d} %B %Y"),
    "March 3, 2021": _fmt("%B {d}, %Y"),
    "Mar 3, '21": _fmt("%b {d}, '%y"),
    "Wednesday, 3 March 2021": _fmt("%A, {d} %B %Y"),
    "03.03.2021": _fmt("%d.%m.%Y"),
    "3.3.21": _fmt("{d}.{m}.%y"),
    "3/3/2021 (US)": _fmt("{m}/{d}/%Y"),
    "2021/03/03": _fmt("%Y/%m/%d"),
    "20210303": _fmt("%Y%m%d"),
    "2021-03-03": _fmt("%Y-%m-%d"),
    "3rd of March 2021": _fmt("{o} of %B %Y"),
    "the 3rd of March, 2021": _fmt("the {o} of %B, %Y"),
    "the third of March 2021": _fmt("the {w} of %B %Y"),
    "Wednesday March 3rd, 2021": _fmt("%A %B {o}, %Y"),
    "Wed Mar 03 2021": _fmt("%a %b %d %Y"),
    "3-Mar-21": _fmt("{d}-%b-%y"),
    "03 Mar 2021": _fmt("%d %b %Y"),
    "March 2021, the 3rd": _fmt("%B %Y, the {o}"),
}


def split_dates(seed: int = 0) -> dict[str, list[dt.date]]:
    """Every day of the range in exactly one split."""
    days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    random.Random(seed).shuffle(days)
    n = len(days)
    return {name: days[int(lo * n) : int(hi * n)] for name, (lo, hi) in SPLITS.items()}


def render(date: dt.date, rng: random.Random) -> str:
    """One random human rendering of `date` (format and casing drawn from `rng`)."""
    text = FORMATS[rng.choice(list(FORMATS))](date)
    casing = rng.random()
    if casing < 0.15:
        return text.lower()
    if casing < 0.25:
        return text.upper()
    return text


def generate(split: str, n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (human date, ISO date) pairs of one split; the same arguments give the same pairs."""
    dates = split_dates(seed)[split]
    rng = random.Random(f"{seed}-{split}")
    return [(render(d, rng), d.isoformat()) for d in (rng.choice(dates) for _ in range(n))]


def corpus_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where `write_corpus` puts each split."""
    return {split: Path(out_dir) / f"{split}.tsv" for split in SPLITS}


def write_corpus(out_dir: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    """Write train.tsv, valid.tsv and test.tsv (source TAB target) into `out_dir`."""
    paths = corpus_paths(out_dir)
    for split, n in (sizes or DEFAULT_SIZES).items():
        atomic_write_text(paths[split], "".join(f"{s}\t{t}\n" for s, t in generate(split, n, seed=seed)))
    return paths
