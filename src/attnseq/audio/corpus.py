"""Speech corpora (SPEC 6.4): the recordings and transcripts of a split as `Utterance`s.

`tsv` manifests of a user's own recordings; `fsdd`, the Free Spoken Digit Dataset, as digit strings
made by joining clips with short silences (`clip_strings`: edge and pause silences, opening bursts,
speed perturbation of training strings); `yesno`, the 60 yes/no recordings with Kaldi's split, its
training recordings also cut into words at the pauses (`split_words`) and joined into new strings.
`read_split` picks the reader by data.corpus.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attnseq.audio.features import played_at, read_wav
from attnseq.catalogue import resolve
from attnseq.errors import AttnseqError
from attnseq.fileio import read_text_file

if TYPE_CHECKING:
    from attnseq.tasks.speech_config import SpeechDataConfig


@dataclass
class Utterance:
    name: str  # the recording's file name, or for a generated string the clips it joins
    text: str  # the transcript
    wave: np.ndarray  # mono float32 at data.sample_rate
    speaker: str = ""


# ------------------------------------------------------------------------------------ corpora
def read_manifest(path: str | Path, columns: list[str]) -> tuple[Path, list[dict[str, str]]]:
    """A TSV manifest with a header row: (its resolved path, one dict per line holding `columns`).
    Errors name the file and line."""
    path = resolve(path)
    if not path.is_file():
        raise AttnseqError(f"{path}: manifest not found; check data.manifest / data.train in the config")
    lines = read_text_file(path).splitlines()
    if not lines:
        raise AttnseqError(f"{path}: the manifest is empty; it needs a header line ({', '.join(columns)}) and rows")
    header = lines[0].lstrip("\ufeff").split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise AttnseqError(
            f"{path}:1: the header has no column {', '.join(repr(c) for c in missing)} (it has "
            f"{', '.join(repr(h) for h in header)}); rename the column or set data.file_column / data.text_column"
        )
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise AttnseqError(f"{path}:{lineno}: {len(cells)} columns, the header has {len(header)}; "
                               "separate the columns with one TAB each")  # fmt: skip
        row = dict(zip(header, cells))
        row["_where"] = f"{path}:{lineno}"
        rows.append(row)
    if not rows:
        raise AttnseqError(f"{path}: the manifest has a header but no recordings")
    return path, rows


def split_rows(d, split: str, columns: list[str]) -> tuple[Path, list[dict[str, str]]]:
    """The manifest rows of `split` (train / valid / test): the rows of data.<split>'s own manifest,
    or, with data.split_column, those of data.manifest whose split column holds data.<split>
    (speech and lm data sections both have these keys). Errors name the file and line."""
    spec = getattr(d, split)
    manifest, rows = read_manifest(d.manifest if d.split_column else spec, columns + [d.split_column] * bool(
        d.split_column))  # fmt: skip
    if d.split_column:
        rows = [row for row in rows if row[d.split_column] == spec]
        if not rows:
            raise AttnseqError(f"{manifest}: no row has {spec!r} in its {d.split_column!r} column; check "
                               f"data.{split} (the split's name in the manifest)")  # fmt: skip
    return manifest, rows


def _audio_path(manifest: Path, d: SpeechDataConfig, name: str) -> Path:
    return manifest.parent / d.audio_dir / name


def _load(manifest: Path, d: SpeechDataConfig, row: dict, file_column: str) -> np.ndarray:
    path = _audio_path(manifest, d, row[file_column])
    if not path.is_file():
        raise AttnseqError(f"{row['_where']}: {path}: audio file not found; fix the name or data.audio_dir")
    return read_wav(path, d.sample_rate)


def tsv_corpus(d: SpeechDataConfig, split: str) -> list[Utterance]:
    """The recordings of `split` from its manifest (data.train / valid / test), or, with
    data.split_column, the rows of data.manifest whose split column holds data.<split>. Training
    recordings are played at each speed of data.speed_copies (Kaldi's speed perturbation)."""
    if not getattr(d, split):
        return []
    manifest, rows = split_rows(d, split, [d.file_column, d.text_column])
    out = []
    for row in rows:
        text = row[d.text_column].strip()
        if not text:
            raise AttnseqError(f"{row['_where']}: the transcript is empty; fill it or drop the line")
        out.append(Utterance(row[d.file_column], text, _load(manifest, d, row, d.file_column)))
    if split == "train" and d.speed_copies:
        out = [u if speed == 1.0 else dataclasses.replace(u, name=f"{u.name}@{speed:g}",
                                                          wave=played_at(u.wave, speed, d.sample_rate))
               for speed in d.speed_copies for u in out]  # fmt: skip
    return out


def yesno_rows(d: SpeechDataConfig) -> tuple[Path, list[dict[str, str]]]:
    """The yes/no recordings as manifest rows (file, transcript): from a transcripts.tsv, or, when
    data.manifest is the waves_yesno folder itself, from the file names (1 = YES, 0 = NO)."""
    folder = resolve(d.manifest)
    if not folder.is_dir():
        return read_manifest(d.manifest, ["file", "transcript"])
    rows = []
    for path in sorted(folder.glob("*.wav")):
        bits = path.stem.split("_")
        if not bits or any(b not in ("0", "1") for b in bits):
            raise AttnseqError(f"{path}: not a yesno file name (0s and 1s joined by _); move it out of {folder}")
        rows.append({"file": str(path.resolve()), "transcript": " ".join("YES" if b == "1" else "NO" for b in bits),
                     "_where": str(path)})  # fmt: skip
    if not rows:
        raise AttnseqError(f"{folder}: no .wav files; data.manifest must be a transcripts.tsv or the waves folder")
    return folder / "manifest", rows


def yesno_corpus(d: SpeechDataConfig, split: str) -> list[Utterance]:
    """Kaldi's yesno split: recordings sorted by name, the first train_count train (the last
    valid_count of them validate), the others test."""
    manifest, rows = yesno_rows(d)
    rows.sort(key=lambda r: Path(r["file"]).name)
    n_train = d.train_count - d.valid_count
    part = {"train": rows[:n_train], "valid": rows[n_train : d.train_count], "test": rows[d.train_count :]}[split]
    utterances = [Utterance(Path(r["file"]).name, r["transcript"], _load(manifest, d, r, "file")) for r in part]
    if split != "train" or not d.train_strings:
        return utterances
    words = []
    # every recording lends its opening, also one whose words cannot be cut: a click that opens one
    # training recording in 27 (and 4 test recordings in 29) must not come to mean its first words
    runs = [voiced_runs(u.wave, d.sample_rate) for u in utterances]
    background = [lead_in(u.wave, d.sample_rate, runs=r) for u, r in zip(utterances, runs)]
    for u, r in zip(utterances, runs):
        cut = split_words(u.wave, len(u.text.split()), d.sample_rate, runs=r)
        if cut is None:  # the pauses do not separate the words: the recording trains as it is only
            continue
        for k, (word, segment) in enumerate(zip(u.text.split(), cut[0])):
            words.append(Utterance(f"{Path(u.name).stem}#{k}", word, segment))
    if not words:
        return utterances
    strings = clip_strings(words, d, d.train_strings, SPLIT_KEYS["train"], background=np.concatenate(background),
                           leads=background, training=True)  # fmt: skip
    return utterances + strings


def frame_rms(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The RMS of each whole 10 ms frame of `wave`, in float64."""
    hop = sample_rate // 100
    frames = len(wave) // hop
    return np.sqrt(np.mean(wave[: frames * hop].astype(np.float64).reshape(frames, hop) ** 2, axis=1))


def voiced_runs(wave: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """The stretches of voice in a recording, as (start, end) 10 ms frame numbers: frames louder than
    a tenth of the loudest are voice, runs of them shorter than 50 ms are dropped (a click is not a
    word) and runs closer than 80 ms joined."""
    rms = frame_rms(wave, sample_rate)
    if len(rms) < 2:
        return []
    voiced = rms > 0.1 * rms.max()
    runs, start = [], None
    for i, v in enumerate([*voiced, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if runs and start - runs[-1][1] < 8:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((start, i))
            start = None
    return [(a, b) for a, b in runs if b - a >= 5]


def lead_in(wave: np.ndarray, sample_rate: int, *, runs: list[tuple[int, int]] | None = None,
            margin_ms: float = 40.0) -> np.ndarray:  # fmt: skip
    """What a recording holds before its first word (up to margin_ms before the voice): its
    background, and whatever clicks or breaths open it. `runs`: its `voiced_runs`, if known."""
    runs = voiced_runs(wave, sample_rate) if runs is None else runs
    if not runs:
        return wave[:0]
    return wave[: max(runs[0][0] * (sample_rate // 100) - int(margin_ms * sample_rate / 1000), 0)]


def split_words(wave: np.ndarray, n_words: int, sample_rate: int, *, runs: list[tuple[int, int]] | None = None,
                margin_ms: float = 40.0):  # fmt: skip
    """Cut a recording of `n_words` words said with pauses between them into its words at the
    pauses (`voiced_runs`, or `runs` when known). Returns (the words' waveforms, each with margin_ms
    either side, and the silence before the first word), or None when the runs are not n_words."""
    runs = voiced_runs(wave, sample_rate) if runs is None else runs
    if len(runs) != n_words:
        return None
    hop, margin = sample_rate // 100, int(margin_ms * sample_rate / 1000)
    segments = [wave[max(a * hop - margin, 0) : min(b * hop + margin, len(wave))] for a, b in runs]
    return segments, lead_in(wave, sample_rate, runs=runs, margin_ms=margin_ms)


FSDD_VALID = range(5, 10)  # the clips of index 5-9 validate; 0-4 are the official test set


def fsdd_rows(d: SpeechDataConfig) -> tuple[Path, list[dict[str, str]]]:
    """FSDD's clips as manifest rows: from its transcripts.tsv, or, when data.manifest is the
    recordings folder itself (as the official repository ships it), from the file names
    DIGIT_SPEAKER_INDEX.wav."""
    folder = resolve(d.manifest)
    if not folder.is_dir():
        return read_manifest(d.manifest, ["file", "digit", "speaker", "index", "split"])
    rows = []
    for path in sorted(folder.glob("*.wav")):
        parts = path.stem.split("_")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
            raise AttnseqError(f"{path}: not an FSDD file name (DIGIT_SPEAKER_INDEX.wav); move it out of {folder}")
        rows.append({"file": str(path.resolve()), "digit": parts[0], "speaker": parts[1], "index": parts[2],
                     "split": "test" if int(parts[2]) < 5 else "train", "_where": str(path)})  # fmt: skip
    if not rows:
        raise AttnseqError(f"{folder}: no .wav files; data.manifest must be FSDD's transcripts.tsv or recordings/")
    return folder / "manifest", rows


def fsdd_clips(d: SpeechDataConfig, split: str) -> list[Utterance]:
    """The isolated clips of a split: test = index 0-4 (official), valid = 5-9, train = the rest;
    with held_out_speaker, train / valid leave that speaker out and test is all of that speaker."""
    manifest, rows = fsdd_rows(d)
    speakers = sorted({r["speaker"] for r in rows})
    if d.held_out_speaker and d.held_out_speaker not in speakers:
        raise AttnseqError(f"data.held_out_speaker = {d.held_out_speaker!r} is not a speaker of {manifest} "
                           f"({', '.join(speakers)})")  # fmt: skip

    def part(r: dict) -> str:
        if d.held_out_speaker:
            if r["speaker"] == d.held_out_speaker:
                return "test"
        elif r["split"] == "test":
            return "test"
        return "valid" if int(r["index"]) in FSDD_VALID else "train"

    return [Utterance(Path(r["file"]).name, r["digit"], _load(manifest, d, r, "file"), r["speaker"])
            for r in rows if part(r) == split]  # fmt: skip


def clip_strings(
    clips: list[Utterance], d: SpeechDataConfig, count: int, seed_key: int, *,
    background: np.ndarray | None = None, leads: list[np.ndarray] | None = None, training: bool = False,
) -> list[Utterance]:  # fmt: skip
    """`count` utterances of min_clips-max_clips clips drawn from `clips`, joined by pauses of
    silence_ms and led and trailed by edge_ms of silence (FSDD's edge_ms starts at 0: a clip on its
    own starts and ends with the voice), each silence digital zero or a stretch of `background`;
    with `leads` (the silences that open real recordings), a string opens as one of them does, up
    to the drawn length (clicks and all). Training strings (`training`) are augmented as the data
    section says: each clip played at a speed drawn from `speed_perturb` (resampled, as sox's
    `speed` effect: tempo and pitch change together), and with probability `bare_edge` a string
    has no silence before it (and, drawn apart, after it), as a clip on its own, and with
    probability `opening_burst` its opening silence carries a short burst of sound (`add_burst`). The
    same for the same split_seed on every machine."""
    speeds = d.speed_perturb if training else None
    bare = d.bare_edge if training else 0.0
    burst = d.opening_burst if training else 0.0
    rng = np.random.default_rng([d.split_seed, seed_key])
    burst_rng = np.random.default_rng([d.split_seed, seed_key, 1])  # its own stream: the strings stay as they are
    sources = [c.wave for c in clips]  # what a burst is cut from

    def silence(ms_range) -> np.ndarray:
        n = int(rng.uniform(*ms_range) * d.sample_rate / 1000)
        if background is None or not len(background):
            return np.zeros(n, np.float32)
        start = int(rng.integers(0, len(background)))
        return np.resize(np.roll(background, -start), n).astype(np.float32)

    def edge() -> np.ndarray:
        if bare and rng.uniform() < bare:
            return np.zeros(0, np.float32)
        return silence(d.edge_ms)

    def opening() -> np.ndarray:
        gap = edge()
        if not leads:
            return gap
        lead = leads[int(rng.integers(0, len(leads)))][: len(gap)]
        return np.concatenate([lead, gap[len(lead) :]])

    out = []
    for _ in range(count):
        picks = rng.integers(0, len(clips), size=int(rng.integers(d.min_clips, d.max_clips + 1)))
        parts = [opening()]
        for k, pick in enumerate(picks):
            wave = clips[pick].wave
            if speeds:
                wave = played_at(wave, float(rng.uniform(*speeds)), d.sample_rate)
            parts += [wave, edge() if k == len(picks) - 1 else silence(d.silence_ms)]
        wave = np.concatenate(parts)
        if burst and burst_rng.uniform() < burst:
            wave = add_burst(wave, len(parts[0]), d.sample_rate, burst_rng, sources)
        names = "+".join(Path(clips[p].name).stem for p in picks)
        out.append(Utterance(names, " ".join(clips[p].text for p in picks), wave))
    return out


def add_burst(wave: np.ndarray, room: int, sample_rate: int, rng: np.random.Generator,
              sources: list[np.ndarray]) -> np.ndarray:  # fmt: skip
    """`wave` with a short burst of sound added within its first `room` samples (the silence before
    its first word): a 20-150 ms piece of one of `sources` (the clips), faded in and out, starting
    in the first 30 ms, its level 3-15% of the loudest 10 ms of the wave (RMS). Some recordings open
    with such a bump, breath or click, loud enough and voiced enough to pass for a short word;
    strings that carry one teach the model that it is not."""
    hop = sample_rate // 100
    if room < hop or len(wave) < hop:
        return wave
    loudest = float(frame_rms(wave, sample_rate).max())
    start = int(rng.uniform(0, 0.03) * sample_rate)
    length = min(int(rng.uniform(0.02, 0.15) * sample_rate), room - start)
    source = sources[int(rng.integers(0, len(sources)))]
    if length < hop or len(source) < length:
        return wave
    offset = int(rng.integers(0, len(source) - length + 1))
    piece = source[offset : offset + length].astype(np.float64) * np.hanning(length)
    rms = float(np.sqrt(np.mean(piece**2)))
    if rms == 0:
        return wave
    out = wave.copy()
    out[start : start + length] += (piece * (loudest * rng.uniform(0.03, 0.15) / rms)).astype(wave.dtype)
    return out


SPLIT_KEYS = {"train": 1, "valid": 2, "test": 3}


def read_split(d: SpeechDataConfig, split: str) -> list[Utterance]:
    """The utterances of `split` (train / valid / test, and for fsdd test_isolated: the test clips
    one by one)."""
    if d.corpus == "tsv":
        return tsv_corpus(d, "test" if split == "test_isolated" else split)
    if d.corpus == "yesno":
        return yesno_corpus(d, "test" if split == "test_isolated" else split)
    if split == "test_isolated":
        return fsdd_clips(d, "test")
    clips = fsdd_clips(d, split)
    count = {"train": d.train_strings, "valid": d.valid_strings, "test": d.test_strings}[split]
    return clip_strings(clips, d, count, SPLIT_KEYS[split], training=split == "train")
