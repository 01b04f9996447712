"""Typed, strict configuration: a top-level `task` and the sections `data`, `model`, `train`, `decode`.

`task` picks the data and model sections of that application (`TASK_SECTIONS`); train and decode
are shared.

Every field says why it exists. Unknown keys and values of the wrong type or outside their choices
raise `AttnseqError` naming the file, the line and the valid alternatives.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from attnseq.errors import AttnseqError
from attnseq.fileio import atomic_write_text, read_json_file, read_text_file

RNNKind = Literal["rnn", "gru", "lstm"]
DecoderKind = Literal["init", "every-step", "luong", "bahdanau"]
AttentionKind = Literal["dot", "scaled_dot", "general", "concat", "location", "location_aware"]
TokenizerKind = Literal["word", "char", "spm"]
SpmType = Literal["bpe", "unigram"]
Precision = Literal["auto", "fp32", "bf16"]
DecodePrecision = Literal["auto", "fp32", "bf16", "int8"]
LengthPenalty = Literal["none", "avg", "gnmt"]
ShortlistSize = int | Literal["auto"]
TaskName = Literal["translate", "classify", "speech", "chat", "headline"]
SpeechCorpus = Literal["tsv", "fsdd", "yesno"]
PoolingKind = Literal["attention", "mean", "max", "last"]
# train.valid_metric per task: the metrics its validation reports ("" = the task's default)
VALID_METRICS: dict[str, tuple[str, ...]] = {
    "translate": ("exact_match", "bleu", "loss"),
    "classify": ("accuracy", "macro_f1", "loss"),
    "speech": ("wer", "cer", "exact", "loss"),
    "chat": ("chrf", "bleu", "distinct_2", "loss"),
    "headline": ("rougeL", "rouge1", "rouge2", "loss"),
}


@dataclass
class DataConfig:
    """Where the pairs are and how they become tokens."""

    train: str = ""  # TSV file (source TAB target), or a prefix of parallel files (see src_suffix)
    valid: str = ""  # same form as `train`; used for validation every epoch
    test: str = ""  # optional, same form; used by `attnseq demo` / `evaluate` for held-out figures
    src_suffix: str = ""  # parallel files: source = <path><src_suffix>, e.g. ".en.gz"; "" = TSV
    tgt_suffix: str = ""  # parallel files: target = <path><tgt_suffix>, e.g. ".de.gz"
    src_tokenizer: TokenizerKind = "word"  # word: split on whitespace; char: one character; spm: subwords
    tgt_tokenizer: TokenizerKind = "word"
    spm_type: SpmType = "bpe"  # sentencepiece algorithm when a side's tokenizer is spm
    spm_vocab_size: int = 8000  # pieces per sentencepiece model (a ceiling for small corpora)
    spm_joint: bool = True  # one sentencepiece model for both sides (when both use spm)
    src_spm_model: str = ""  # an existing sentencepiece .model for the source ("" = train one)
    tgt_spm_model: str = ""  # the same for the target
    lowercase: bool = False  # lowercase both sides before tokenizing
    min_freq: int = 1  # tokens seen fewer times in training become <unk>
    max_vocab: int = 0  # keep at most this many tokens per side (0 = no limit), specials excluded
    max_src_len: int = 100  # training pairs with longer sources (tokens) are skipped, and counted
    max_tgt_len: int = 100  # same for targets


@dataclass
class ModelConfig:
    """The network: SPEC 1 (init / every-step), 2 (luong) and 4 (bahdanau) with SPEC 3's scores."""

    rnn: RNNKind = "lstm"  # cell of encoder and decoder (SPEC 1.1)
    emb_size: int = 128  # token embedding size, both sides
    enc_hidden_size: int = 256  # encoder output size h_i; each direction gets half if bidirectional
    dec_hidden_size: int = 256  # decoder state size s_t
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True  # encoder reads both ways; final states of both directions are joined
    dropout: float = 0.2  # on embeddings, between RNN layers and before the output layer
    decoder: DecoderKind = "luong"  # init (SPEC 1.2) | every-step (1.3) | luong (2) | bahdanau (4)
    attention: AttentionKind = "general"  # score function (SPEC 3); ignored by init / every-step
    attn_size: int = 0  # concat / location_aware attention's hidden size (W_b, W_c rows); 0 = dec_hidden_size
    attn_filters: int = 10  # location_aware attention: filters F convolving the previous step's weights
    attn_kernel: int = 31  # location_aware attention: width of those filters in source positions (odd)
    max_src_len: int = 128  # location attention: W_a has one output per source position up to this
    input_feeding: bool = True  # luong: feed s~_{t-1} with e(y_{t-1}) (SPEC 2.6)
    deep_output: bool = True  # bahdanau: predict from tanh(W_o [s_t; a_t; e(y_{t-1})]), else s_t
    tie_embeddings: bool = False  # W_y shares the target embedding matrix (needs emb_size == dec_hidden_size)
    param_init: float = 0.0  # > 0: every weight uniform in [-x, x] (OpenNMT-py's param_init); 0: PyTorch's defaults
    # pointer-generator (See et al. 2017): the output distribution mixes the vocabulary softmax with
    # the attention weights over the source tokens, gated by a learned p_gen (luong / bahdanau only)
    copy: bool = False


@dataclass
class TrainConfig:
    """The optimisation loop."""

    seed: int = 1234  # seeds data order, initialisation, dropout and teacher-forcing draws
    batch_size: int = 64  # sentences per batch; batches are bucketed by length
    accumulate: int = 1  # batches per update (gradient accumulation); under torchrun, per process
    max_epochs: int = 30
    max_steps: int = 0  # stop after this many updates (0 = no limit); a stopped run can --resume
    max_minutes: float = 0.0  # wall-clock budget for training (0 = no limit)
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay (0: Adam)
    clip: float = 1.0  # max global gradient norm (0 = no clipping)
    teacher_forcing: float = 1.0  # probability of feeding the reference y_{t-1} (1 = always)
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # validate and keep best/ with an exponential moving average of the weights (0 = off)
    lr_factor: float = 0.5  # ReduceLROnPlateau: multiply the LR by this ...
    lr_patience: int = 1  # ... after this many validations without improvement
    min_lr: float = 1e-5
    patience: int = 5  # early stopping: validations without improvement (0 = never stop early)
    # selects the best model and drives the schedule: translate exact_match | bleu | loss, classify
    # accuracy | macro_f1 | loss; "" = the task's first
    valid_metric: str = ""
    valid_max_sentences: int = 0  # greedy-decode at most this many validation pairs (0 = all)
    snapshot_minutes: float = 0.0  # also keep OUT/best_at_<N>min: the model a run with max_minutes = N returns
    save_every: int = 0  # also save a resumable checkpoint every N steps (0 = each epoch only)
    log_every: int = 50  # steps between training-loss lines in metrics.jsonl
    max_nonfinite: int = 10  # an update whose loss or gradient is inf / nan is skipped; stop after this many in a row
    device: str = "cpu"  # "cpu" or "cuda"
    # auto: bf16 where this device runs it natively, else fp32 (attnseq.runtime.resolve_precision);
    # bf16: autocast matrix products and RNNs to bfloat16 (fp32 master weights); fp32: no autocast
    precision: Precision = "auto"
    num_threads: int = 0  # torch CPU threads (0 = torch's default)


@dataclass
class DecodeConfig:
    """Generation: maximum length is max_len_a * source_length + max_len_b tokens."""

    max_len_a: float = 1.5
    max_len_b: int = 10
    batch_size: int = 128  # sentences per decoding batch
    beam_size: int = 1  # 1 = greedy search
    n_best: int = 1  # hypotheses returned per sentence (at most beam_size)
    length_penalty: LengthPenalty = "gnmt"  # how beam search ranks hypotheses of different lengths
    alpha: float = 0.6  # GNMT length penalty ((5 + length) / 6) ** alpha
    block_ngram_repeat: int = 0  # n > 0: no output repeats an n-gram of itself (0 = off)
    max_src_tokens: int = 1024  # a longer input is refused (its attention and search memory grow with it)
    # auto: the fastest this device runs natively (CPU: int8 where a quantized engine runs, GPU: fp32);
    # bf16: decode with a bfloat16 copy of the model; int8: the copy (bfloat16 where native, else
    # float32, where the decoder's recurrent product is int8 too) with its output layer W_y
    # dynamically quantized to int8 (CPU only); scores stay float32
    precision: DecodePrecision = "auto"
    # > 0: the output layer and search cover a lexical shortlist only (fast/shortlist.py): this many
    # target words per source word that co-occur with it most in the training pairs, plus the
    # `shortlist_frequent` most frequent target words (text -> text models; 0 = the whole vocabulary);
    # auto: 10 on a CPU for word-level target vocabularies of 4,000 words or more, else 0
    shortlist: ShortlistSize = "auto"
    shortlist_frequent: int = 100


@dataclass
class SpeechDecodeConfig(DecodeConfig):
    """task: speech. Generation as for text, and for a model trained with a CTC layer
    (model.ctc_weight > 0) joint CTC / attention decoding (`decoding/ctc_prefix.py`)."""

    # beam search ranks (1 - w) log P_attention + w log P_CTC(prefix): the CTC layer counts every word
    # of the recording in order, so a hypothesis that drops or adds one loses; 0 = attention alone
    ctc_weight: float = 0.0


@dataclass
class RecordsDataConfig(DataConfig):
    """task: chat, headline. Text pairs as records of a CSV file (a header naming `src_field` and
    `tgt_field`) or a JSON Lines file (one object a line, those keys): either `files` pooled and
    split by a seeded shuffle (`split`, `split_seed`), or ready-made `train` / `valid` / `test` files
    of that format. Records with an empty side are dropped and counted."""

    files: list[str] = field(default_factory=list)  # files split into train / valid / test (each in the same shares)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / valid / test shares
    split_seed: int = 0  # seeds the split (the same seed, the same split on every machine)
    format: Literal["csv", "jsonl"] = "csv"
    src_field: str = "Q"  # the column (csv) or key (jsonl) of the source text
    tgt_field: str = "A"  # ... and of the target text


@dataclass
class ClassifyDataConfig:
    """task: classify. Labelled texts: either `files` split by a seeded shuffle (`split`,
    `split_seed`), or ready-made `train` / `valid` / `test` files. TSV lines are TEXT TAB LABEL;
    CSV files have a header naming `text_column` and `label_column`."""

    files: list[str] = field(default_factory=list)  # files pooled and split; each is one domain
    domains: list[str] = field(default_factory=list)  # a name per file for per-domain figures (default: file stems)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / valid / test shares of each file
    split_seed: int = 0  # seeds the split (the same seed, the same split on every machine)
    train: str = ""  # ready-made splits instead of `files`
    valid: str = ""
    test: str = ""
    format: Literal["tsv", "csv"] = "tsv"
    text_column: str = "text"  # csv: the header of the text column
    label_column: str = "label"  # csv: the header of the label column
    tokenizer: TokenizerKind = "word"  # word | char | spm (sentencepiece trained on the training texts)
    spm_type: SpmType = "unigram"
    spm_vocab_size: int = 4000
    spm_model: str = ""  # an existing sentencepiece .model ("" = train one)
    lowercase: bool = True
    strip_punctuation: bool = False  # word tokenizer: split punctuation off words ("great!" -> "great !")
    min_freq: int = 1
    max_vocab: int = 0
    max_len: int = 200  # longer texts are cut to this many tokens


@dataclass
class ClassifierConfig:
    """task: classify. SPEC 5: a (bi)LSTM reads the text; attention pooling (or an ablation)
    makes one vector; Dense(head_size, relu) -> Dropout -> Dense(1, sigmoid) or Dense(K, softmax)."""

    rnn: RNNKind = "lstm"
    emb_size: int = 128
    hidden_size: int = 128  # RNN output size; each direction gets half if bidirectional
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3  # on the embeddings and between RNN layers
    word_dropout: float = 0.0  # training: each token is read as <unk> with this probability
    spatial_dropout: float = 0.0  # training: each embedding feature of a text is dropped at all its positions
    state_dropout: float = 0.0  # training: each feature of a text's RNN states (and query) is dropped at all positions
    pooling: PoolingKind = "attention"  # SPEC 5.2 | mean | max | last (the final state, no pooling)
    units: int = 64  # attention pooling's W1 / W2 output size (the notes' `units`)
    head_size: int = 20  # the hidden Dense layer of the head
    head_dropout: float = 0.5
    # e.g. [2] or [2, 3]: each position also reads a hashed embedding of the n-gram of tokens that
    # starts there, for each n listed (2 to 5; modules/ngrams.py); [] = tokens only
    ngrams: list[int] = field(default_factory=list)
    ngram_buckets: int = 32768  # rows of each order's hashed n-gram table
    # > 1: an ensemble of this many such classifiers, trained side by side on the same batches (each
    # its own initial weights and dropout draws); a prediction averages their probabilities and weights
    members: int = 1


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


@dataclass
class Config:
    data: DataConfig | RecordsDataConfig | ClassifyDataConfig | SpeechDataConfig = field(default_factory=DataConfig)
    model: ModelConfig | ClassifierConfig | SpeechModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    task: TaskName = "translate"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def valid_metric(self) -> str:
        """train.valid_metric, or the task's default when it is empty."""
        return self.train.valid_metric or VALID_METRICS[self.task][0]


# The sections of each task; train and decode are the same for all
TASK_SECTIONS: dict[str, dict[str, type]] = {
    "translate": {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig},
    "classify": {"data": ClassifyDataConfig, "model": ClassifierConfig, "train": TrainConfig, "decode": DecodeConfig},
    "speech": {
        "data": SpeechDataConfig,
        "model": SpeechModelConfig,
        "train": TrainConfig,
        "decode": SpeechDecodeConfig,
    },
    "chat": {"data": RecordsDataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig},
    "headline": {"data": RecordsDataConfig, "model": ModelConfig, "train": TrainConfig, "decode": DecodeConfig},
}
SECTIONS: dict[str, type] = TASK_SECTIONS["translate"]


def for_task(task: str) -> Config:
    """A default config of `task`."""
    sections = TASK_SECTIONS[task]
    return Config(data=sections["data"](), model=sections["model"](), decode=sections["decode"](), task=task)


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map dotted key paths ("model.attention") to 1-based line numbers in the YAML source."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path + "."))
    return lines


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field's annotation; ints are accepted where floats are expected."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # e.g. a whole number or "auto"
        for member in typing.get_args(annotation):
            try:
                return _coerce(value, member, where)
            except AttnseqError:
                pass
        kinds = [f"{typing.get_args(m)[0]}" if typing.get_origin(m) is Literal else "a whole number"
                 for m in typing.get_args(annotation)]  # fmt: skip
        raise AttnseqError(f"{where}: expected {' or '.join(kinds)}, got {value!r}")
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        if value not in choices:
            raise AttnseqError(
                f"{where}: {value!r} is not allowed; choose one of {', '.join(map(str, choices))}"
                + _suggest(str(value), [str(c) for c in choices])
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise AttnseqError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AttnseqError(f"{where}: expected a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AttnseqError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            value = [value] if value is not None else []
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise AttnseqError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r}")  # a bug in this module, not user error


def _apply(cfg: Config, raw: dict[str, Any], source: str, lines: dict[str, int]) -> Config:
    """Apply a nested mapping to `cfg`; a `task` key first switches the config to that task's
    sections (those of another task are not carried over). Returns the config."""

    def where(path: str) -> str:
        line = lines.get(path)
        return f"{source}:{line}: '{path}'" if line else f"{source}: '{path}'"

    if "task" in raw:
        task = _coerce(raw["task"], TaskName, where("task"))
        if task != cfg.task:
            decode = {f.name: getattr(cfg.decode, f.name) for f in dataclasses.fields(DecodeConfig)}
            cfg = dataclasses.replace(for_task(task), train=cfg.train)
            cfg.decode = dataclasses.replace(cfg.decode, **decode)  # the shared keys set so far, kept
    sections = TASK_SECTIONS[cfg.task]
    for section, values in raw.items():
        if section == "task":
            continue
        if section not in sections:
            valid = [*sections, "task"]
            raise AttnseqError(
                f"{where(section)} is not a config section; valid sections: "
                f"{', '.join(sections)}, and the key task{_suggest(section, valid)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise AttnseqError(f"{where(section)} must be a mapping of keys to values")
        cls = sections[section]
        hints = typing.get_type_hints(cls)
        target = getattr(cfg, section)
        for key, value in values.items():
            path = f"{section}.{key}"
            if key not in hints:
                valid = sorted(hints)
                raise AttnseqError(
                    f"{where(path)} is not a known key{_suggest(str(key), valid)}; "
                    f"valid keys in '{section}': {', '.join(valid)}"
                )
            setattr(target, key, _coerce(value, hints[key], where(path)))
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """`"model.attention=concat"` -> ("model.attention", "concat"); the value is parsed as YAML."""
    if "=" not in text:
        raise AttnseqError(f"--set {text!r}: expected KEY=VALUE, e.g. --set model.attention=concat")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def _nest(dotted: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        if key == "task":
            nested["task"] = value
            continue
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise AttnseqError(
                f"{source}: '{key}' must be SECTION.KEY, e.g. model.attention (sections: {', '.join(SECTIONS)})"
            )
        nested.setdefault(section, {})[name] = value
    return nested


# Allowed ranges: key -> (test, what the key must be). One table, checked by `validate`.
_AT_LEAST_1 = (lambda v: v >= 1, "at least 1")
_NOT_NEGATIVE = (lambda v: v >= 0, "0 or more")
_POSITIVE = (lambda v: v > 0, "more than 0")
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "train.seed": (lambda v: 0 <= v < 2**63, "in [0, 2^63)"),
    "data.min_freq": _AT_LEAST_1,
    "data.spm_vocab_size": (lambda v: v >= 8, "at least 8"),
    "data.max_vocab": _NOT_NEGATIVE,
    "data.max_src_len": _AT_LEAST_1,
    "data.max_tgt_len": _AT_LEAST_1,
    "model.emb_size": _AT_LEAST_1,
    "model.enc_hidden_size": _AT_LEAST_1,
    "model.dec_hidden_size": _AT_LEAST_1,
    "model.enc_layers": _AT_LEAST_1,
    "model.dec_layers": _AT_LEAST_1,
    "model.dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "model.attn_size": _NOT_NEGATIVE,
    "model.attn_filters": _AT_LEAST_1,
    "model.attn_kernel": (lambda v: v >= 1 and v % 2 == 1, "an odd number (the filters centre on a position)"),
    "model.param_init": _NOT_NEGATIVE,
    "model.max_src_len": _AT_LEAST_1,
    "model.hidden_size": _AT_LEAST_1,  # classify
    "model.layers": _AT_LEAST_1,
    "model.units": _AT_LEAST_1,
    "model.head_size": _AT_LEAST_1,
    "model.ngram_buckets": _AT_LEAST_1,
    "model.members": _AT_LEAST_1,
    "model.head_dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "model.word_dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "model.spatial_dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "model.state_dropout": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "model.ctc_weight": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (the attention decoder keeps 1 - w)"),
    "decode.ctc_weight": (lambda v: 0.0 <= v <= 1.0, "in [0, 1] (1: the CTC layer alone ranks what beam search finds)"),
    "train.weight_decay": _NOT_NEGATIVE,
    "data.max_len": _AT_LEAST_1,
    "data.sample_rate": (lambda v: 1000 <= v <= 192000, "in [1000, 192000]"),
    "data.n_mels": _AT_LEAST_1,
    "data.fmin": _NOT_NEGATIVE,
    "data.win_ms": _POSITIVE,
    "data.hop_ms": _POSITIVE,
    "data.preemphasis": (lambda v: 0.0 <= v < 1.0, "in [0, 1) (0.97 is the usual value; 0 = off)"),
    "data.max_seconds": _POSITIVE,
    "data.freq_masks": _NOT_NEGATIVE,
    "data.freq_width": _NOT_NEGATIVE,
    "data.time_masks": _NOT_NEGATIVE,
    "data.time_width": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "data.train_strings": _NOT_NEGATIVE,
    "data.valid_strings": _AT_LEAST_1,
    "data.test_strings": _NOT_NEGATIVE,
    "data.min_clips": _AT_LEAST_1,
    "data.max_clips": _AT_LEAST_1,
    "data.train_count": _AT_LEAST_1,
    "data.valid_count": _AT_LEAST_1,
    "model.frame_stack": _AT_LEAST_1,
    "train.batch_size": _AT_LEAST_1,
    "train.accumulate": _AT_LEAST_1,
    "train.max_nonfinite": _AT_LEAST_1,
    "train.max_epochs": _AT_LEAST_1,
    "train.max_steps": _NOT_NEGATIVE,
    "train.max_minutes": _NOT_NEGATIVE,
    "train.lr": _POSITIVE,
    "train.clip": _NOT_NEGATIVE,
    "train.teacher_forcing": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    "train.label_smoothing": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "train.ema_decay": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    "train.lr_factor": (lambda v: 0.0 < v < 1.0, "in (0, 1)"),
    "train.lr_patience": _NOT_NEGATIVE,
    "train.min_lr": _NOT_NEGATIVE,
    "train.patience": _NOT_NEGATIVE,
    "train.valid_max_sentences": _NOT_NEGATIVE,
    "train.save_every": _NOT_NEGATIVE,
    "train.snapshot_minutes": _NOT_NEGATIVE,
    "train.log_every": _NOT_NEGATIVE,
    "train.num_threads": _NOT_NEGATIVE,
    "decode.max_len_a": (lambda v: 0 <= v <= 100, "in [0, 100]"),
    "decode.max_len_b": (lambda v: 1 <= v <= 100_000, "in [1, 100000]"),
    "decode.batch_size": _AT_LEAST_1,
    "decode.beam_size": _AT_LEAST_1,
    "decode.n_best": _AT_LEAST_1,
    "decode.alpha": _NOT_NEGATIVE,
    "decode.block_ngram_repeat": _NOT_NEGATIVE,
    "decode.max_src_tokens": _AT_LEAST_1,
    "decode.shortlist": (lambda v: v == "auto" or 0 <= v <= 50, "auto or in [0, 50]"),
    "decode.shortlist_frequent": _NOT_NEGATIVE,
}


def shortlist_requested(value: int | str) -> bool:
    """Whether decode.shortlist asks for a shortlist explicitly (a size > 0): auto asks only where
    the model has one and it pays (`Translator.shortlist_size`), 0 never."""
    return value not in (0, "auto")


def validate(cfg: Config, source: str = "config", origins: dict[str, str] | None = None) -> Config:
    """Range checks (`RANGES`) and cross-field checks that single fields cannot express.

    `origins` maps a dotted key to where its value came from ("file.yaml:12", "--set"); errors
    name that place, or `source` for keys left at their defaults.
    """

    def at(*keys: str) -> str:
        """Where the check's values came from: --set (applied last) before the file's lines."""
        places = [origins[k] for k in keys if origins and k in origins]
        return "--set" if "--set" in places else next(iter(places), source)

    for section, cls in TASK_SECTIONS[cfg.task].items():  # numbers must be finite: inf / nan break training later
        for f in dataclasses.fields(cls):
            value = getattr(getattr(cfg, section), f.name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise AttnseqError(f"{at(f'{section}.{f.name}')}: '{section}.{f.name}' must be a finite number")
    for key, (ok, allowed) in RANGES.items():
        section, name = key.split(".")
        if not hasattr(getattr(cfg, section), name):  # a key of another task's section
            continue
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise AttnseqError(f"{at(key)}: '{key}' must be {allowed} (got {value!r})")
    metrics = VALID_METRICS[cfg.task]
    if cfg.train.valid_metric and cfg.train.valid_metric not in metrics:
        raise AttnseqError(
            f"{at('train.valid_metric')}: 'train.valid_metric': {cfg.train.valid_metric!r} is not allowed with "
            f"task {cfg.task}; choose one of {', '.join(metrics)}" + _suggest(cfg.train.valid_metric, list(metrics))
        )
    if shortlist_requested(cfg.decode.shortlist) and cfg.task not in ("translate", "chat", "headline"):
        raise AttnseqError(f"{at('decode.shortlist')}: a shortlist of target words per source word is for text -> "
                           f"text models (task translate, chat, headline), not task {cfg.task}; "
                           "set decode.shortlist: 0")  # fmt: skip
    if cfg.task == "classify":
        return _validate_classify(cfg, at)
    if cfg.task == "speech":
        _validate_speech(cfg, at)
    if cfg.task in ("chat", "headline"):
        _validate_split(cfg.data, at)
        if not cfg.data.files and not (cfg.data.train and cfg.data.valid):
            raise AttnseqError(f"{at('data.files')}: task {cfg.task} needs data.files (split by data.split) "
                               "or data.train and data.valid")  # fmt: skip
    m = cfg.model
    if m.copy and m.decoder not in ("luong", "bahdanau"):
        raise AttnseqError(
            f"{at('model.copy', 'model.decoder')}: model.copy copies through the attention weights; it needs "
            f"model.decoder luong or bahdanau (got {m.decoder})"
        )
    if m.bidirectional and m.enc_hidden_size % 2:
        raise AttnseqError(
            f"{at('model.enc_hidden_size')}: 'model.enc_hidden_size' = {m.enc_hidden_size} must be even with a "
            "bidirectional encoder (each direction gets half)"
        )
    attends = m.decoder in ("luong", "bahdanau")
    if attends and m.attention in ("dot", "scaled_dot") and m.enc_hidden_size != m.dec_hidden_size:
        raise AttnseqError(
            f"{at('model.attention', 'model.dec_hidden_size', 'model.enc_hidden_size')}: "
            f"'{m.attention}' attention compares s_t with h_i directly, so "
            f"model.dec_hidden_size ({m.dec_hidden_size}) must equal model.enc_hidden_size "
            f"({m.enc_hidden_size}); make them equal or use attention 'general' or 'concat'"
        )
    text_source = cfg.task in ("translate", "chat", "headline")
    if attends and m.attention == "location" and text_source and m.max_src_len < cfg.data.max_src_len + 1:
        raise AttnseqError(
            f"{at('model.attention', 'model.max_src_len', 'data.max_src_len')}: location attention scores "
            f"at most model.max_src_len = {m.max_src_len} positions, but "
            f"sources may have data.max_src_len = {cfg.data.max_src_len} tokens plus </s>; raise "
            f"model.max_src_len to {cfg.data.max_src_len + 1} or lower data.max_src_len"
        )
    if m.tie_embeddings and m.emb_size != m.dec_hidden_size:
        raise AttnseqError(
            f"{at('model.tie_embeddings', 'model.emb_size', 'model.dec_hidden_size')}: model.tie_embeddings needs "
            f"model.emb_size ({m.emb_size}) equal to model.dec_hidden_size ({m.dec_hidden_size}), since W_y reads "
            "decoder states; make them equal or set model.tie_embeddings: false"
        )
    if shortlist_requested(cfg.decode.shortlist) and getattr(m, "copy", False):
        raise AttnseqError(f"{at('decode.shortlist', 'model.copy')}: a model that copies (model.copy) writes "
                           "source words that no shortlist holds; set decode.shortlist: 0")  # fmt: skip
    if cfg.decode.n_best > cfg.decode.beam_size:
        raise AttnseqError(
            f"{at('decode.n_best', 'decode.beam_size')}: decode.n_best = {cfg.decode.n_best} is more than "
            f"decode.beam_size = {cfg.decode.beam_size}; beam search keeps only beam_size hypotheses"
        )
    if cfg.task in ("translate", "chat", "headline") and bool(cfg.data.src_suffix) != bool(cfg.data.tgt_suffix):
        raise AttnseqError(
            f"{at('data.src_suffix', 'data.tgt_suffix')}: set both 'data.src_suffix' and 'data.tgt_suffix' "
            "(parallel files) or neither (TSV files)"
        )
    return cfg


def _validate_speech(cfg: Config, at) -> None:
    d = cfg.data
    if d.corpus == "tsv" and not (d.train and d.valid) or d.corpus != "tsv" and not d.manifest:
        need = "data.train and data.valid (manifests)" if d.corpus == "tsv" else "data.manifest"
        raise AttnseqError(f"{at('data.corpus')}: data.corpus = {d.corpus} needs {need}")
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


def _validate_split(d, at) -> None:
    """data.files split by data.split, or ready-made data.train / data.valid (classify, chat, headline)."""
    if d.files and (d.train or d.valid or d.test):
        raise AttnseqError(
            f"{at('data.files', 'data.train')}: give either data.files (split by data.split) or "
            "data.train / data.valid / data.test, not both"
        )
    if d.files:
        if len(d.split) != 3 or any(share < 0 for share in d.split) or not 0.999 < sum(d.split) < 1.001:
            raise AttnseqError(
                f"{at('data.split')}: 'data.split' must be three shares (train, valid, test) that sum to 1, "
                f"e.g. [0.8, 0.1, 0.1] (got {d.split})"
            )
        if min(d.split[:2]) <= 0:
            raise AttnseqError(f"{at('data.split')}: 'data.split' needs a train and a valid share above 0")


def _validate_classify(cfg: Config, at) -> Config:
    d, m = cfg.data, cfg.model
    if m.bidirectional and m.hidden_size % 2:
        raise AttnseqError(
            f"{at('model.hidden_size')}: 'model.hidden_size' = {m.hidden_size} must be even with a bidirectional "
            "RNN (each direction gets half)"
        )
    if any(not 2 <= n <= 5 for n in m.ngrams) or len(set(m.ngrams)) != len(m.ngrams):
        raise AttnseqError(
            f"{at('model.ngrams')}: 'model.ngrams' = {m.ngrams} must list different orders from 2 to 5 (the tokens "
            "themselves are order 1, always read), e.g. [2] or [2, 3]"
        )
    _validate_split(d, at)
    if d.files:
        if d.domains and len(d.domains) != len(d.files):
            raise AttnseqError(
                f"{at('data.domains')}: 'data.domains' names {len(d.domains)} domains for {len(d.files)} "
                "data.files; give one name per file or none"
            )
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "config", lines: dict | None = None) -> Config:
    return _apply(Config(), raw, source, lines or {})


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults when `path` is None) and apply `--set` overrides.

    Raises:
        AttnseqError: missing file, invalid YAML, unknown section/key, wrong type or choice.
    """
    cfg = Config()
    origins: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise AttnseqError(f"{path}: config file not found; check the path (configs/ has examples)")
        text = read_text_file(path)
        try:
            node = yaml.compose(text)
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]  # one line, for every kind
            raise AttnseqError(f"{path}{line}: invalid YAML ({problem})") from None
        if not isinstance(raw, dict):
            raise AttnseqError(f"{path}: expected sections data / model / train / decode at top level")
        lines = _key_lines(node)
        cfg = _apply(cfg, raw, str(path), lines)
        origins.update({key: f"{path}:{line}" for key, line in lines.items()})
    if overrides:
        dotted = dict(parse_override(o) for o in overrides)
        cfg = _apply(cfg, _nest(dotted, "--set"), "--set", {})
        origins.update({key: "--set" for key in dotted})
    return validate(cfg, str(path) if path else "config", origins)


# config.json's record of how the model was trained (e.g. {"train.precision": "bf16"}): what `auto`
# resolved to on the training machine; written for people and tools, not read back into the Config
RESOLVED = "resolved"
# config.json's SHA-256 of every other file of its model directory, checked when the model loads
CHECKSUMS = "files"
# config.json's format: a saved config must hold every key its format had (a missing key is an
# error, never a silent default); a key added later goes into ADDED_KEYS with the next format
FORMAT_KEY = "format"
FORMAT = 9  # 9: model.members; 8: decode.shortlist may be "auto"; model.ngrams, model.ngram_buckets
ADDED_KEYS: dict[str, int] = {
    "train.accumulate": 2,
    "train.max_nonfinite": 2,
    "decode.max_src_tokens": 2,
    "model.spatial_dropout": 2,
    "model.state_dropout": 2,
    "model.attn_filters": 2,
    "model.attn_kernel": 2,
    "model.ctc_weight": 3,
    "decode.ctc_weight": 3,
    "data.speed_perturb": 4,
    "data.bare_edge": 4,
    "decode.shortlist": 5,
    "decode.shortlist_frequent": 5,
    "data.opening_burst": 6,
    "data.preemphasis": 7,
    "data.fmin": 7,
    "model.ngrams": 8,
    "model.ngram_buckets": 8,
    "model.members": 9,
}


def save_config_json(
    cfg: Config, path: Path, *, resolved: dict[str, str] | None = None, checksums: dict[str, str] | None = None
) -> None:
    record = {FORMAT_KEY: FORMAT, **cfg.to_dict()}
    if resolved:
        record[RESOLVED] = resolved
    if checksums:
        record[CHECKSUMS] = checksums
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def read_config_record(path: Path) -> dict:
    """config.json as written by `save_config_json`: a JSON object (its records included)."""
    if not path.is_file():
        raise AttnseqError(f"{path}: not found; a model directory holds config.json")
    raw = read_json_file(path)
    if not isinstance(raw, dict):
        raise AttnseqError(
            f"{path}: expected a JSON object (task, data, model, train, decode), found a JSON "
            f"{type(raw).__name__ if raw is not None else 'null'}; the model directory is damaged, copy it whole again"
        )
    return raw


def load_config_json(path: Path) -> Config:
    """A model directory's config, read strictly: every key of its format must be there."""
    raw = dict(read_config_record(path))
    for record in (RESOLVED, CHECKSUMS):
        raw.pop(record, None)
    version = raw.pop(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT:
        raise AttnseqError(
            f"{path}: '{FORMAT_KEY}' = {version!r} is not a config format this attnseq reads (1 to {FORMAT}); "
            "a newer attnseq wrote it: upgrade attnseq"
        )
    if "task" not in raw:
        raise AttnseqError(f"{path}: 'task' is missing; a saved model's config names its task (restore the key)")
    cfg = config_from_dict(raw, str(path))
    for section, cls in TASK_SECTIONS[cfg.task].items():
        values = raw.get(section)
        if not isinstance(values, dict):
            raise AttnseqError(
                f"{path}: section '{section}' is missing; a saved model's config.json holds every section and key "
                "it was trained with (restore it from a copy of the model directory)"
            )
        missing = [f"{section}.{f.name}" for f in dataclasses.fields(cls)
                   if f.name not in values and ADDED_KEYS.get(f"{section}.{f.name}", 1) <= version]  # fmt: skip
        if missing:
            raise AttnseqError(
                f"{path}: '{missing[0]}' is missing{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                "a saved model's config.json holds every key it was trained with, and a default could give wrong "
                "output (restore it from a copy of the model directory)"
            )
    return validate(cfg, str(path))
