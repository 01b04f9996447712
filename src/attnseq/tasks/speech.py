"""Speech-to-text (SPEC 6.4): recordings and their transcripts, log-mel features (`attnseq.audio`),
Listen, Attend and Spell models (a `PyramidalListener` under the attention decoders of SPEC 2 / 4),
WER / CER through jiwer, and the `Transcriber`.

Corpora (data.corpus): `tsv` manifests of a user's own recordings; `fsdd`, the Free Spoken Digit
Dataset, as digit strings made by joining clips with short silences; `yesno`, the 60 yes/no
recordings with Kaldi's split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnseq.audio import FeatureStats, Frontend, read_wav, spec_augment
from attnseq.audio.features import played_at
from attnseq.config import Config, SpeechDataConfig
from attnseq.data import Batch, bucketed_batches, pad
from attnseq.datasets import resolve
from attnseq.decoding.ctc_prefix import CTCPrefixScorer
from attnseq.errors import AttnseqError
from attnseq.fileio import read_text_file
from attnseq.contracts import Prediction, Task, TaskData
from attnseq.tokenize import Tokenizer, build_tokenizer, train_sentencepiece
from attnseq.translate import Seq2SeqPredictor
from attnseq.vocab import Vocab

VOCAB, STATS, SPM = "tgt_vocab.json", "features.json", "tgt.spm.model"


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


def _audio_path(manifest: Path, d: SpeechDataConfig, name: str) -> Path:
    return manifest.parent / d.audio_dir / name


def _load(manifest: Path, d: SpeechDataConfig, row: dict, file_column: str) -> np.ndarray:
    path = _audio_path(manifest, d, row[file_column])
    if not path.is_file():
        raise AttnseqError(f"{row['_where']}: {path}: audio file not found; fix the name or data.audio_dir")
    return read_wav(path, d.sample_rate)


def tsv_corpus(d: SpeechDataConfig, split: str) -> list[Utterance]:
    spec = getattr(d, split)
    if not spec:
        return []
    manifest, rows = read_manifest(spec, [d.file_column, d.text_column])
    out = []
    for row in rows:
        if not row[d.text_column].strip():
            raise AttnseqError(f"{row['_where']}: the transcript is empty; fill it or drop the line")
        out.append(Utterance(row[d.file_column], row[d.text_column], _load(manifest, d, row, d.file_column)))
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


# ------------------------------------------------------------------------------------ assets
@dataclass
class SpeechAssets:
    vocab: Vocab  # output tokens
    tokenizer: Tokenizer  # transcript <-> tokens
    stats: FeatureStats  # normalization of the features (identity with data.normalize: utterance)

    def files(self) -> dict[str, bytes]:
        files = {VOCAB: self.vocab.to_bytes(), STATS: self.stats.to_bytes()}
        if getattr(self.tokenizer, "model_proto", None) is not None:
            files[SPM] = self.tokenizer.model_proto
        return files

    def describe(self) -> str:
        return f"vocab {len(self.vocab):,}"


class Featurizer:
    """Waveform -> normalized log-mel frames (frames, n_mels), as training and transcription see them."""

    def __init__(self, d: SpeechDataConfig, stats: FeatureStats | None = None) -> None:
        self.frontend = Frontend.from_config(d)
        self.normalize = d.normalize
        self.mean = self.std = None
        if stats is not None:
            self.use(stats)

    def use(self, stats: FeatureStats) -> None:
        """Normalize with `stats` from now on (data.normalize: global)."""
        self.mean, self.std = torch.tensor(stats.mean), torch.tensor(stats.std)

    def raw(self, wave: np.ndarray) -> torch.Tensor:
        return self.frontend.log_mel(wave)

    def normalized(self, raw: torch.Tensor) -> torch.Tensor:
        if self.normalize == "utterance":
            std = raw.std(0).clamp(min=1e-3) if raw.size(0) > 1 else torch.ones(raw.size(1))
            return (raw - raw.mean(0)) / std
        return (raw - self.mean) / self.std

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        return self.normalized(self.raw(wave))


# ------------------------------------------------------------------------------------ dataset
class SpeechDataset:
    """Normalized features and id-encoded transcripts; `collate` pads a batch (and applies
    SpecAugment when `augment` is set)."""

    def __init__(self, utterances: list[Utterance], features: list[torch.Tensor], assets: SpeechAssets, *,
                 max_frames: int, augment: SpeechDataConfig | None = None) -> None:  # fmt: skip
        self.names: list[str] = []
        self.texts: list[str] = []
        self.features: list[torch.Tensor] = []
        self.tgt_ids: list[list[int]] = []
        self.skipped = 0  # utterances over data.max_seconds, or whose transcript tokenizes to nothing
        self.augment = augment if augment is not None and (augment.freq_masks or augment.time_masks) else None
        for utt, feats in zip(utterances, features):
            tokens = assets.tokenizer.tokenize(utt.text)
            if not tokens or feats.size(0) > max_frames:
                self.skipped += 1
                continue
            self.names.append(utt.name)
            self.texts.append(assets.tokenizer.detokenize(tokens))
            self.features.append(feats)
            self.tgt_ids.append(assets.vocab.encode(tokens))

    def __len__(self) -> int:
        return len(self.features)

    def collate(self, index: list[int]) -> Batch:
        feats = [self.features[i] for i in index]
        lengths = torch.tensor([f.size(0) for f in feats], dtype=torch.long)
        src = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        if self.augment is not None:
            a = self.augment
            src = spec_augment(src, lengths, freq_masks=a.freq_masks, freq_width=a.freq_width,
                               time_masks=a.time_masks, time_width=a.time_width)  # fmt: skip
        tgt = [self.tgt_ids[i] for i in index]
        tgt_lengths = torch.tensor([len(t) + 1 for t in tgt], dtype=torch.long)
        return Batch(src=src, src_lengths=lengths, tgt_in=pad([[Vocab.bos_id, *t] for t in tgt], Vocab.pad_id),
                     tgt_out=pad([[*t, Vocab.eos_id] for t in tgt], Vocab.pad_id), index=list(index),
                     tgt_lengths=tgt_lengths, n_tgt_tokens=int(tgt_lengths.sum()))  # fmt: skip

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        """Batches of similar length in frames (`data.bucketed_batches`)."""
        return bucketed_batches(len(self), lambda i: self.features[i].size(0), batch_size, seed=seed)


# ------------------------------------------------------------------------------------ metrics
def speech_scores(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """WER and CER (jiwer; fractions, lower is better) and the share of exactly right transcripts."""
    import jiwer

    if not refs:
        return {"wer": float("nan"), "cer": float("nan"), "exact": float("nan"), "n": 0}
    words = jiwer.process_words(refs, hyps)
    return {"wer": float(words.wer), "cer": float(jiwer.cer(refs, hyps)),
            "exact": sum(h == r for h, r in zip(hyps, refs)) / len(refs), "n": len(refs),
            "errors": int(words.substitutions + words.deletions + words.insertions),
            "words": int(sum(len(r.split()) for r in refs))}  # fmt: skip


# ------------------------------------------------------------------------------------ predictor
Audio = str | Path | bytes | np.ndarray


class Transcriber(Seq2SeqPredictor):
    """Recordings in (paths, the bytes of audio files, or waveforms at data.sample_rate), one
    `Prediction` each out: output = the transcript, output_tokens = what the speller wrote,
    input_tokens = the start time of each listener position ("0.32s"), attention (output tokens x
    listener positions)."""

    input_kind = "audio"  # the server takes base64-encoded audio files for it

    def __init__(self, model, config: Config, assets: SpeechAssets, *, device: str = "cpu") -> None:
        self.model, self.config, self.assets = model, config, assets
        self.tgt_vocab = assets.vocab
        self.device = torch.device(device)
        self.featurizer = Featurizer(config.data, assets.stats)
        self._copies = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Transcriber:
        from attnseq.checkpoint import load

        return load(path, device=device, expect=cls, what="a speech model")

    def info(self) -> dict:
        d = self.config.data
        return {"vocab": {"target": len(self.tgt_vocab)}, "sample_rate": d.sample_rate, "n_mels": d.n_mels,
                "seconds_per_position": self.seconds_per_position}  # fmt: skip

    @property
    def seconds_per_position(self) -> float:
        """The time one listener output covers."""
        m = self.config.model
        return self.featurizer.frontend.seconds_per_frame * m.frame_stack * 2 ** (m.enc_layers - 1)

    def predict(self, inputs: list[Audio], **search) -> list[Prediction]:
        return self.transcribe(inputs, **search)

    def features(self, audio: Audio, *, name: str | None = None) -> torch.Tensor:
        """Normalized log-mel frames of one recording; longer than data.max_seconds is an AttnseqError."""
        d = self.config.data
        wave = (
            np.asarray(audio, dtype=np.float32)
            if isinstance(audio, np.ndarray)
            else read_wav(audio, d.sample_rate, name=name)
        )
        if wave.ndim != 1 or not len(wave):
            raise AttnseqError(f"{name or 'audio'}: a waveform must be one non-empty channel")
        if len(wave) > d.max_seconds * d.sample_rate:
            raise AttnseqError(f"{name or audio}: {len(wave) / d.sample_rate:.1f} s is longer than data.max_seconds "
                               f"= {d.max_seconds:g} s; cut the recording")  # fmt: skip
        return self.featurizer(wave)

    def transcribe(self, audio: list[Audio], *, names: list[str] | None = None, batch_size: int | None = None,
                   beam_size: int | None = None, n_best: int | None = None) -> list[Prediction]:  # fmt: skip
        if isinstance(audio, (str, bytes, Path)) or (isinstance(audio, np.ndarray) and audio.ndim == 1):
            raise AttnseqError("audio: a list of recordings, not one; wrap it: [recording]")
        audio = list(audio)
        for i, item in enumerate(audio):
            if not isinstance(item, (str, Path, bytes, np.ndarray)):
                raise AttnseqError(f"audio[{i}]: a path, the bytes of an audio file or a waveform, "
                                   f"not {type(item).__name__}")  # fmt: skip
        names = names or [item if isinstance(item, (str, Path)) else f"audio {i + 1}" for i, item in enumerate(audio)]
        feats = [self.features(a, name=str(n)) for a, n in zip(audio, names)]
        return self.transcribe_features(feats, [str(n) for n in names], batch_size=batch_size,
                                        beam_size=beam_size, n_best=n_best)  # fmt: skip

    def transcribe_features(self, feats: list[torch.Tensor], names: list[str], *, batch_size: int | None = None,
                            beam_size: int | None = None, n_best: int | None = None) -> list[Prediction]:  # fmt: skip
        """Decode normalized features (`features`) in length-sorted batches; results in input order."""
        batch_size, beam_size, n_best = self.search_settings(batch_size, beam_size, n_best)
        results: list[Prediction | None] = [None] * len(feats)
        order = sorted(range(len(feats)), key=lambda i: feats[i].size(0))
        model = self._decoding_model()
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            src = torch.nn.utils.rnn.pad_sequence([feats[i] for i in index], batch_first=True)
            lengths = torch.tensor([feats[i].size(0) for i in index], dtype=torch.long)
            positions = self.model.encoder.reduced_lengths(lengths)
            for i, n_pos, hyps in zip(index, positions.tolist(), self._search(model, src, lengths, beam_size, n_best)):
                shown = [self._prediction(names[i], n_pos, *h) for h in hyps]
                results[i] = shown[0]
                shown[0].alternatives = shown
        return results  # type: ignore[return-value]

    def prefix_scorer(self, model):
        """decode.ctc_weight > 0: beam search ranks by the attention decoder and the CTC layer
        together (`decoding/ctc_prefix.py`), also at beam size 1."""
        weight = self.config.decode.ctc_weight
        if weight <= 0:
            return None
        if model.ctc is None:
            raise AttnseqError("decode.ctc_weight > 0 needs a model trained with a CTC layer (model.ctc_weight > 0); "
                               "decode with --ctc-weight 0")  # fmt: skip
        eos = self.tgt_vocab.eos_id
        return lambda memory: CTCPrefixScorer(model.ctc.log_probs(memory), memory.src_mask.sum(dim=1), eos_id=eos,
                                              weight=weight)  # fmt: skip

    def limit_basis(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """decode.max_len_a counts listener positions for a speech model (not frames)."""
        return self.model.encoder.reduced_lengths(src_lengths)

    def _prediction(self, name: str, n_positions: int, ids, score, rank_score, attention) -> Prediction:
        out_tokens, shown = self._written(ids)
        step = self.seconds_per_position
        return Prediction(input=name, output=self.assets.tokenizer.detokenize(out_tokens),
                          input_tokens=[f"{j * step:.2f}s" for j in range(n_positions)], output_tokens=shown,
                          score=score, rank_score=rank_score,
                          attention=None if attention is None else attention[: len(shown), :n_positions])  # fmt: skip

    def evaluate(self, utterances: list[Utterance], **search) -> tuple[list[Prediction], dict]:
        """Transcribe `utterances` and score them against their transcripts (`speech_scores`)."""
        feats = [self.features(u.wave, name=u.name) for u in utterances]
        found = self.transcribe_features(feats, [u.name for u in utterances], **search)
        refs = [self.assets.tokenizer.detokenize(self.assets.tokenizer.tokenize(u.text)) for u in utterances]
        return found, speech_scores([p.output for p in found], refs)


# ------------------------------------------------------------------------------------ the task
def fit_tokenizer(d: SpeechDataConfig, texts: list[str]) -> Tokenizer:
    if d.tokenizer == "spm":
        proto = train_sentencepiece(texts, vocab_size=d.spm_vocab_size, model_type="unigram", lowercase=d.lowercase)
        return build_tokenizer("spm", lowercase=d.lowercase, model_proto=proto)
    return build_tokenizer(d.tokenizer, lowercase=d.lowercase)


class SpeechTask(Task):
    name = "speech"
    metrics = {"wer": False, "cer": False, "exact": True, "loss": False}
    default_metric = "wer"
    unit = "tok"
    examples = "recordings"

    def describe_model(self, cfg: Config) -> str:
        m = cfg.model
        return f"listen-attend-spell model ({m.enc_layers}-layer pyramid, {m.decoder}/{m.attention})"

    def summary(self, r: dict) -> str:
        return f"WER {100 * r['wer']:.2f}%  CER {100 * r['cer']:.2f}%  exact {100 * r['exact']:.1f}%"

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        d = cfg.data
        splits = {split: read_split(d, split) for split in ("train", "valid")}
        if not splits["valid"]:
            raise AttnseqError("data.valid: no validation recordings; give a validation manifest")
        featurizer = Featurizer(d)
        raw = {split: [featurizer.raw(u.wave) for u in utts] for split, utts in splits.items()}
        if saved is not None:
            assets = self.load_assets(cfg, saved)
        else:
            tokenizer = fit_tokenizer(d, [u.text for u in splits["train"]])
            vocab = Vocab.build(
                (tokenizer.tokenize(u.text) for u in splits["train"]), source="the training transcripts"
            )
            stats = FeatureStats.fit(raw["train"]) if d.normalize == "global" else FeatureStats.identity(d.n_mels)
            assets = SpeechAssets(vocab, tokenizer, stats)
        featurizer.use(assets.stats)
        max_frames = int(d.max_seconds / featurizer.frontend.seconds_per_frame) + 1
        train, valid = (
            SpeechDataset(
                splits[s],
                [featurizer.normalized(f) for f in raw[s]],
                assets,
                max_frames=max_frames,
                augment=d if s == "train" else None,
            )  # fmt: skip
            for s in ("train", "valid")
        )
        if not len(train):
            raise AttnseqError("the training set has no usable recording (all longer than data.max_seconds, or "
                               "with empty transcripts)")  # fmt: skip
        return TaskData(train, valid, assets)

    def load_assets(self, cfg: Config, directory: Path) -> SpeechAssets:
        directory = Path(directory)
        vocab = Vocab.load(directory / VOCAB)
        path = directory / STATS
        if not path.is_file():
            raise AttnseqError(f"{path}: not found; a speech model directory holds its feature statistics")
        stats = FeatureStats.from_bytes(path.read_bytes(), str(path))
        if len(stats.mean) != cfg.data.n_mels:
            raise AttnseqError(f"{path}: {len(stats.mean)} bins, but data.n_mels is {cfg.data.n_mels}")
        proto = (directory / SPM).read_bytes() if cfg.data.tokenizer == "spm" else None
        return SpeechAssets(vocab, build_tokenizer(cfg.data.tokenizer, lowercase=cfg.data.lowercase,
                                                   model_proto=proto), stats)  # fmt: skip

    def build_model(self, cfg: Config, assets: SpeechAssets):
        from attnseq.models.seq2seq import assemble
        from attnseq.modules.listener import PyramidalListener

        m = cfg.model
        listener = PyramidalListener(cfg.data.n_mels, hidden_size=m.enc_hidden_size, layers=m.enc_layers, rnn=m.rnn,
                                     dropout=m.dropout, frame_stack=m.frame_stack)  # fmt: skip
        model = assemble(m, listener, tgt_vocab_size=len(assets.vocab), pad_id=assets.vocab.pad_id)
        if m.ctc_weight > 0:
            from attnseq.modules.ctc import CTCHead

            model.ctc, model.ctc_weight = CTCHead(m.enc_hidden_size, len(assets.vocab)), m.ctc_weight
        model.label_smoothing, model.teacher_forcing = cfg.train.label_smoothing, cfg.train.teacher_forcing
        return model

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """Greedy WER, CER and exact share on (the first train.valid_max_sentences of) valid."""
        valid = data.valid
        limit = cfg.train.valid_max_sentences or len(valid)
        transcriber = self.predictor(model, cfg, data.assets, device=device)
        found = transcriber.transcribe_features(valid.features[:limit], valid.names[:limit], beam_size=1)
        scores = speech_scores([p.output for p in found], valid.texts[:limit])
        return {k: scores[k] for k in ("wer", "cer", "exact")}

    def predictor(self, model, cfg: Config, assets: SpeechAssets, *, device: str = "cpu") -> Transcriber:
        return Transcriber(model, cfg, assets, device=device)


def held_out_report(transcriber: Transcriber, *, utterances: list[Utterance] | None = None,
                    predictions: list[Prediction] | None = None) -> dict:  # fmt: skip
    """The model on its config's test split (or `utterances`): wer, cer, exact; for fsdd also the
    isolated test clips' accuracy under `isolated`, and the held-out speaker's name."""
    d = transcriber.config.data
    test = utterances if utterances is not None else read_split(d, "test")
    if not test:
        raise AttnseqError("no test recordings: set data.test, or give --data MANIFEST")
    found, out = transcriber.evaluate(test)
    if predictions is not None:
        predictions.extend(found)
    if utterances is None and d.corpus == "fsdd":
        clips = read_split(d, "test_isolated")
        _, iso = transcriber.evaluate(clips)
        out["isolated"] = {"accuracy": iso["exact"], "n": iso["n"]}
        out["speaker"] = d.held_out_speaker or "all (official split)"
    return out
