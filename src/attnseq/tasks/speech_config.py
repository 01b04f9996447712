"""task: speech. Its config sections (data, model, decode) and the rules across their keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from attnseq.errors import AttnseqError
from attnseq.models.config import ModelConfig, check_seq2seq_model
from attnseq.schema import AT_LEAST_1, NOT_NEGATIVE, POSITIVE, Config, DecodeConfig, Range, TokenizerKind

SpeechCorpus = Literal["tsv", "fsdd", "yesno"]


@dataclass
class SpeechDecodeConfig(DecodeConfig):
    """task: speech. Generation as for text, and for a model trained with a CTC layer
    (model.ctc_weight > 0) joint CTC / attention decoding (`decoding/ctc_prefix.py`)."""

    # beam search ranks (1 - w) log P_attention + w log P_CTC(prefix): the CTC layer counts every word
    # of the recording in order, so a hypothesis that drops or adds one loses; 0 = attention alone
    ctc_weight: float = 0.0

    ranges: ClassVar[dict[str, Range]] = {
        **DecodeConfig.ranges,
        "ctc_weight": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (1: the CTC layer alone ranks what beam search finds)"),
    }


@dataclass
class SpeechDataConfig:
    """task: speech. Recordings and their transcripts, and how recordings become log-mel frames.

    corpus tsv: `train` / `valid` / `test` are manifests with a header naming `file_column` and
    `text_column` (audio paths relative to the manifest's folder, or to `audio_dir` there).
    corpus fsdd: `manifest` is the Free Spoken Digit Dataset's transcripts.tsv; its official test
    clips (index 0-4) are held out, index 5-9 validate, the rest train, and every utterance is a
    string of `min_clips`-`max_clips` clips of one split joined by short silences (made from
    `split_seed`, the same on every machine). corpus yesno: `manifest` lists the 60 yes/no
    recordings; the first `train_count` (by file name) train, the last `valid_count` of those
    validate, the rest test; with `train_strings` > 0 the training recordings are also cut into
    their words (at the pauses) and joined into that many new strings, the pauses filled with the
    recordings' own background."""

    corpus: SpeechCorpus = "tsv"
    manifest: str = ""  # fsdd / yesno: the corpus's transcripts.tsv (e.g. data:fsdd/transcripts.tsv)
    audio_dir: str = ""  # audio files' folder, relative to the manifest's ("" = the manifest's own)
    train: str = ""  # corpus tsv: manifest files
    valid: str = ""
    test: str = ""
    file_column: str = "file"
    text_column: str = "text"
    # corpus tsv: the column of data.manifest naming each row's split; with it, data.train / valid / test
    # are split names in that column (e.g. AN4's transcripts.tsv: train_nodev / train_dev / test)
    split_column: str = ""
    # corpus tsv: every training recording is played at each of these speeds (tempo and pitch together, as
    # sox's `speed`; resampled), e.g. [0.9, 1.0, 1.1] triples the training set; [] = as recorded
    speed_copies: list[float] = field(default_factory=list)
    tokenizer: TokenizerKind = "word"  # how transcripts become output tokens (word | char | spm)
    spm_vocab_size: int = 200
    lowercase: bool = False
    sample_rate: int = 16000  # audio is resampled to this rate (Hz)
    n_mels: int = 40  # mel bands per frame
    fmin: float = 0.0  # the mel filterbank's lowest edge (Hz): bands below it are left out (hum, rumble)
    win_ms: float = 25.0  # analysis window
    hop_ms: float = 10.0  # frame step
    # > 0: y[n] = x[n] - preemphasis * x[n - 1] before the spectrum (0.97 as in Kaldi and HTK): lifts the
    # high frequencies and takes out a DC offset and low rumble (-28 dB at 30 Hz, 8 kHz audio); 0 = off
    preemphasis: float = 0.0
    normalize: Literal["global", "utterance"] = "global"  # per-bin statistics of the training set, or of each utterance
    max_seconds: float = 30.0  # longer recordings are skipped in training and refused when transcribing
    # SpecAugment (training only): frequency bands of up to freq_width bins, time spans of up to
    # time_width of the utterance, each set to the (normalized) mean
    freq_masks: int = 0
    freq_width: int = 8
    time_masks: int = 0
    time_width: float = 0.05
    split_seed: int = 0  # seeds generated strings and splits
    train_strings: int = 6000  # fsdd: generated training utterances; yesno: extra ones made of cut words (0 = none)
    valid_strings: int = 300
    test_strings: int = 500
    min_clips: int = 1  # clips (digits, words) per generated string
    max_clips: int = 7
    silence_ms: list[float] = field(default_factory=lambda: [50.0, 300.0])  # pause between clips, [min, max]
    edge_ms: list[float] = field(default_factory=lambda: [0.0, 300.0])  # silence before and after a string, [min, max]
    # generated training strings: each clip's speed (tempo and pitch together, as sox's `speed`) drawn
    # uniformly from [min, max], e.g. [0.9, 1.1]; [] = as recorded. Valid and test strings never are.
    speed_perturb: list[float] = field(default_factory=list)
    # generated training strings: the share with no silence before them (and, drawn apart, after them),
    # as a clip on its own starts and ends with the voice
    bare_edge: float = 0.0
    # generated training strings: the share that open with a short burst of sound (a 20-150 ms faded piece
    # of a training clip at 3-15% of the string's loudest 10 ms), as a recording can open with a bump or click
    opening_burst: float = 0.0
    held_out_speaker: str = ""  # fsdd: train without this speaker, test on that speaker only
    train_count: int = 31  # yesno: recordings (sorted by name) that train ...
    valid_count: int = 4  # ... of which the last this many validate

    ranges: ClassVar[dict[str, Range]] = {
        "spm_vocab_size": (lambda v: v >= 8, "at least 8"),
        "sample_rate": (lambda v: 1000 <= v <= 192000, "in [1000, 192000]"),
        "n_mels": AT_LEAST_1,
        "fmin": NOT_NEGATIVE,
        "win_ms": POSITIVE,
        "hop_ms": POSITIVE,
        "preemphasis": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (0.97 is the usual value; 0 = off)"),
        "max_seconds": POSITIVE,
        "freq_masks": NOT_NEGATIVE,
        "freq_width": NOT_NEGATIVE,
        "time_masks": NOT_NEGATIVE,
        "time_width": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "train_strings": NOT_NEGATIVE,
        "valid_strings": AT_LEAST_1,
        "test_strings": NOT_NEGATIVE,
        "min_clips": AT_LEAST_1,
        "max_clips": AT_LEAST_1,
        "train_count": AT_LEAST_1,
        "valid_count": AT_LEAST_1,
    }


@dataclass
class SpeechModelConfig(ModelConfig):
    """task: speech. Listen, Attend and Spell (SPEC 6.4): a pyramidal bidirectional listener of
    `enc_layers` layers, each after the first joining neighbouring frames (halving the time axis),
    then the attention decoder of SPEC 2 or 4 spelling the transcript's tokens."""

    frame_stack: int = 1  # join this many frames (and keep every this-many-th) before the first layer
    emb_size: int = 64
    enc_layers: int = 3
    max_src_len: int = 1024  # location attention: listener positions it can score
    # > 0: a CTC layer on the listener, trained with the decoder: loss (1 - w) attention + w CTC
    # (modules/ctc.py); decoding uses the attention decoder alone
    ctc_weight: float = 0.0

    ranges: ClassVar[dict[str, Range]] = {
        **ModelConfig.ranges,
        "ctc_weight": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (the attention decoder keeps 1 - w)"),
        "frame_stack": AT_LEAST_1,
    }


SECTIONS = {"data": SpeechDataConfig, "model": SpeechModelConfig, "decode": SpeechDecodeConfig}


def check_speech(cfg: Config, at) -> None:
    """task: speech. The rules across keys (SpeechTask.check)."""
    check_seq2seq_model(cfg, at)
    d = cfg.data
    if d.corpus == "tsv" and not (d.train and d.valid) or d.corpus != "tsv" and not d.manifest:
        need = "data.train and data.valid (manifests)" if d.corpus == "tsv" else "data.manifest"
        raise AttnseqError(f"{at('data.corpus')}: data.corpus = {d.corpus} needs {need}")
    if d.split_column and (d.corpus != "tsv" or not d.manifest):
        raise AttnseqError(f"{at('data.split_column')}: data.split_column picks rows of data.manifest for corpus "
                           "tsv; set data.manifest (the one manifest) or remove data.split_column")  # fmt: skip
    if d.speed_copies and (d.corpus != "tsv" or not all(0.5 <= s <= 2.0 for s in d.speed_copies)):
        raise AttnseqError(f"{at('data.speed_copies')}: data.speed_copies lists speeds in [0.5, 2] at which corpus "
                           f"tsv's training recordings are played, e.g. [0.9, 1.0, 1.1] (got {d.speed_copies} "
                           f"with corpus {d.corpus}; corpus fsdd / yesno use data.speed_perturb)")  # fmt: skip
    if d.min_clips > d.max_clips:
        raise AttnseqError(f"{at('data.min_clips', 'data.max_clips')}: data.min_clips ({d.min_clips}) is more "
                           f"than data.max_clips ({d.max_clips})")  # fmt: skip
    for key in ("silence_ms", "edge_ms"):
        value = getattr(d, key)
        if len(value) != 2 or not 0 <= value[0] <= value[1]:
            raise AttnseqError(f"{at('data.' + key)}: 'data.{key}' must be [min, max] with 0 <= min <= max "
                               f"(got {value})")  # fmt: skip
    speeds = d.speed_perturb
    if speeds and (len(speeds) != 2 or not 0 < speeds[0] <= speeds[1]):
        raise AttnseqError(f"{at('data.speed_perturb')}: 'data.speed_perturb' must be [min, max] with "
                           f"0 < min <= max, e.g. [0.9, 1.1], or [] (got {speeds})")  # fmt: skip
    for key in ("bare_edge", "opening_burst"):
        if not 0 <= getattr(d, key) <= 1:
            raise AttnseqError(f"{at('data.' + key)}: 'data.{key}' is a share of the training strings, "
                               f"from 0 to 1 (got {getattr(d, key):g})")  # fmt: skip
    generates = d.corpus == "fsdd" or d.corpus == "yesno" and d.train_strings > 0
    shaping = {"data.speed_perturb": speeds, "data.bare_edge": d.bare_edge, "data.opening_burst": d.opening_burst}
    if any(shaping.values()) and not generates:
        keys = [key for key, on in shaping.items() if on]
        named, verb = " and ".join(keys), "shape" if len(keys) > 1 else "shapes"
        raise AttnseqError(f"{at(*keys)}: {named} {verb} generated training strings (corpus fsdd, or yesno with "
                           f"data.train_strings > 0), and corpus {d.corpus} with data.train_strings = "
                           f"{d.train_strings} makes none; remove {named}")  # fmt: skip
    if d.corpus == "fsdd" and not d.train_strings:
        raise AttnseqError(f"{at('data.train_strings')}: corpus fsdd trains on generated strings; "
                           "data.train_strings must be at least 1")  # fmt: skip
    if d.valid_count >= d.train_count:
        raise AttnseqError(f"{at('data.valid_count', 'data.train_count')}: data.valid_count ({d.valid_count}) must "
                           f"be less than data.train_count ({d.train_count})")  # fmt: skip
    if cfg.decode.ctc_weight > 0 and cfg.model.ctc_weight <= 0:
        raise AttnseqError(f"{at('decode.ctc_weight', 'model.ctc_weight')}: decode.ctc_weight = "
                           f"{cfg.decode.ctc_weight:g} needs a model trained with a CTC layer (model.ctc_weight > 0); "
                           "set decode.ctc_weight: 0 or train with --set model.ctc_weight=0.3")  # fmt: skip
    if round(d.sample_rate * d.win_ms / 1000) < 2 or round(d.sample_rate * d.hop_ms / 1000) < 1:
        raise AttnseqError(f"{at('data.win_ms', 'data.hop_ms')}: the analysis window must span at least 2 samples "
                           "and the hop at least 1 at data.sample_rate")  # fmt: skip
    if d.fmin >= d.sample_rate / 2:
        nyquist = d.sample_rate / 2
        raise AttnseqError(f"{at('data.fmin', 'data.sample_rate')}: data.fmin = {d.fmin:g} Hz, the mel bands' "
                           f"lowest edge, must be below half the sample rate ({nyquist:g} Hz); lower it")  # fmt: skip
    check_seq2seq_model(cfg, at)
