"""Speech-to-text (SPEC 6.4): Listen, Attend and Spell models (a `PyramidalListener` under the
attention decoders of SPEC 2 / 4), WER / CER through jiwer (`speech_scores`), the `Transcriber`, the
`SpeechTask` and the held-out report.

The corpora (data.corpus: tsv, fsdd, yesno) are read and generated in `attnseq.audio.corpus`; the
featurizer, the dataset and the model directory's files in `attnseq.audio.dataset`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from attnseq.audio import FeatureStats, read_wav
from attnseq.audio.corpus import Utterance, read_split
from attnseq.audio.corpus import tsv_corpus as tsv_corpus  # re-exported: cli.py reads it from here
from attnseq.audio.dataset import SPM, STATS, VOCAB, Featurizer, SpeechAssets, SpeechDataset
from attnseq.checkpoint import load_predictor
from attnseq.contracts import Prediction, Task, TaskData
from attnseq.decoding import Hypothesis
from attnseq.decoding.ctc_prefix import CTCPrefixScorer
from attnseq.errors import AttnseqError
from attnseq.schema import Config
from attnseq.tasks.speech_config import SECTIONS, SpeechDataConfig, check_speech
from attnseq.tokenize import Tokenizer, build_tokenizer, train_sentencepiece
from attnseq.translate import SEARCH_KEYS, Seq2SeqPredictor
from attnseq.vocab import Vocab


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
        return load_predictor(path, task=SpeechTask(), device=device)

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
                shown = [self._prediction(names[i], n_pos, h) for h in hyps]
                results[i] = shown[0]
                shown[0].alternatives = shown
        return results  # type: ignore[return-value]

    def model_scorers(self, model) -> list:
        """decode.ctc_weight > 0: beam search ranks by the attention decoder and the CTC layer
        together (`decoding/ctc_prefix.py`), also at beam size 1."""
        weight = self.config.decode.ctc_weight
        if weight <= 0:
            return []
        if model.ctc is None:
            raise AttnseqError("decode.ctc_weight > 0 needs a model trained with a CTC layer (model.ctc_weight > 0); "
                               "decode with --ctc-weight 0")  # fmt: skip
        eos = self.tgt_vocab.eos_id
        return [lambda memory: CTCPrefixScorer(model.ctc.log_probs(memory), memory.src_mask.sum(dim=1), eos_id=eos,
                                               weight=weight)]  # fmt: skip

    def limit_basis(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """decode.max_len_a counts listener positions for a speech model (not frames)."""
        return self.model.encoder.reduced_lengths(src_lengths)

    def _prediction(self, name: str, n_positions: int, hyp: Hypothesis) -> Prediction:
        """One hypothesis of a recording of `n_positions` listener positions as a Prediction."""
        out_tokens, shown = self._written(hyp.tokens)
        step = self.seconds_per_position
        attention = None if hyp.attention is None else hyp.attention.numpy()[: len(shown), :n_positions]
        return Prediction(input=name, output=self.assets.tokenizer.detokenize(out_tokens),
                          input_tokens=[f"{j * step:.2f}s" for j in range(n_positions)], output_tokens=shown,
                          score=hyp.score, rank_score=hyp.rank_score, attention=attention)  # fmt: skip

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
    sections = SECTIONS
    unit = "tok"
    examples = "recordings"
    decode_options = (*SEARCH_KEYS, "ctc_weight")

    def check(self, cfg: Config, at) -> None:
        check_speech(cfg, at)

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

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None) -> dict | None:
        """WER, CER and exact matches on the test split or --data (a manifest with file and text columns);
        each output is `FILE<TAB>TEXT`."""
        if src or ref:
            raise AttnseqError("evaluate: a speech model is scored on its config's test split or --data MANIFEST")
        d = predictor.config.data
        if not data and d.corpus == "tsv" and not d.test:
            return None
        given = dataclasses.replace(d, test=data, audio_dir="", split_column="")  # --data: a manifest of its own
        utterances = tsv_corpus(given, "test") if data else None
        found: list[Prediction] = []
        report = held_out_report(predictor, utterances=utterances, predictions=found)
        report.update(beam_size=predictor.config.decode.beam_size, precision=predictor.precision)
        if outputs is not None:
            outputs.extend(f"{p.input}\t{p.output}" for p in found)
        return report

    def report_lines(self, report: dict, cfg) -> list[str]:
        r = report
        lines = [f"WER {100 * r['wer']:.2f}% ({r['errors']} errors in {r['words']} words)  CER {100 * r['cer']:.2f}%  "
                 f"exact {100 * r['exact']:.1f}% of {r['n']} recordings"]  # fmt: skip
        for row in r.get("published", []):
            wer = "" if row["wer"] is None else f"  WER {row['wer']:.1f}%"
            lines.append(f"  published: CER {row['cer']:.1f}%{wer}  {row['system']}")
        if "isolated" in r:
            iso = r["isolated"]
            lines.append(f"isolated test clips: accuracy {100 * iso['accuracy']:.1f}% of {iso['n']} "
                         f"(speakers: {r['speaker']})")  # fmt: skip
        return lines

    def plot(self, predictor, text: str, out: Path) -> tuple[str, Path]:
        """The recording's log-mel frames with the attention of each output token over them (`text`
        is the audio file)."""
        from attnseq.plotting import plot_speech

        wave = read_wav(text, predictor.config.data.sample_rate)  # read once: transcribed and drawn
        p = predictor.transcribe([wave], names=[text])[0]
        frames = predictor.featurizer.raw(wave)
        return p.output, plot_speech(frames.numpy(), p.attention, p.output_tokens, out,
                                     seconds_per_frame=predictor.featurizer.frontend.seconds_per_frame,
                                     seconds_per_position=predictor.seconds_per_position,
                                     title=f"{Path(text).name} -> {p.output}")  # fmt: skip


# Published results on a benchmark's test split, by the manifest a config reads (CER / WER in %; None
# where not reported), shown beside the model's in the held-out table
PUBLISHED = {
    "data:an4/transcripts.tsv": [
        ("ESPnet BLSTMP + location attention + CTC 0.5, no LM (egs/an4)", 17.7, None),
        ("ESPnet BLSTMP + location attention + CTC 0.5, word LM (egs/an4)", 11.3, None),
        ("ESPnet CTC only, no LM (egs/an4)", 10.1, None),
        ("ESPnet VGG-BLSTMP + location attention + CTC, word LM (egs/an4)", 4.1, 7.9),
        ("ESPnet Transformer, BPE, speed perturbation, no LM (egs2/an4)", 3.6, 7.6),
    ],
}


def published(d: SpeechDataConfig) -> list[dict]:
    """The published results on the config's test split, where it is a benchmark's (`PUBLISHED`)."""
    if not d.split_column or d.manifest not in PUBLISHED:
        return []
    return [{"system": system, "cer": cer, "wer": wer} for system, cer, wer in PUBLISHED[d.manifest]]


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
    if utterances is None and published(d):
        out["published"] = published(d)
    if utterances is None and d.corpus == "fsdd":
        clips = read_split(d, "test_isolated")
        _, iso = transcriber.evaluate(clips)
        out["isolated"] = {"accuracy": iso["exact"], "n": iso["n"]}
        out["speaker"] = d.held_out_speaker or "all (official split)"
    return out
