"""Translation (and any text -> text task): pairs, tokenizers and vocabularies on both sides,
`Seq2Seq` models (SPEC 1-4), validation by greedy exact match and sacreBLEU, the `Translator`."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from attnseq.batching import PairDataset, collate_source, encode_source, tokenize_pairs
from attnseq.checkpoint import load_predictor, model_task
from attnseq.contracts import Ablation, Column, Prediction, Task, TaskData, check_inputs
from attnseq.decoding import Hypothesis
from attnseq.errors import AttnseqError
from attnseq.fast.shortlist import FILE as SHORTLIST
from attnseq.fast.shortlist import Shortlist, Shortlisted, auto_size, shortlist_layer
from attnseq.metrics import score_translations
from attnseq.models.config import ModelConfig, check_seq2seq_model, wiring_variants
from attnseq.models.seq2seq import Seq2Seq
from attnseq.readers import read_pairs, read_parallel, read_tsv
from attnseq.schema import AT_LEAST_1, NOT_NEGATIVE, Config, Range, SpmType, TokenizerKind, shortlist_requested
from attnseq.tokenize import Tokenizer, build_tokenizers, fit_tokenizers, load_tokenizers, tokenizer_files
from attnseq.translate import SEARCH_KEYS, Seq2SeqPredictor, Translation, sampler_for
from attnseq.vocab import EOS, Vocab

SRC_VOCAB, TGT_VOCAB = "src_vocab.json", "tgt_vocab.json"


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
    src_truncate: int = 0  # > 0: every source is read as its first N tokens, in training and decoding alike
    max_tgt_len: int = 100  # same for targets

    ranges: ClassVar[dict[str, Range]] = {
        "min_freq": AT_LEAST_1,
        "spm_vocab_size": (lambda v: v >= 8, "at least 8"),
        "max_vocab": NOT_NEGATIVE,
        "max_src_len": AT_LEAST_1,
        "max_tgt_len": AT_LEAST_1,
        "src_truncate": NOT_NEGATIVE,
    }


@dataclass
class TranslationAssets:
    src_vocab: Vocab
    tgt_vocab: Vocab
    tokenizers: tuple[Tokenizer, Tokenizer]
    shortlist: Shortlist | None = None  # for decode.shortlist; None in models saved before it existed

    def files(self) -> dict[str, bytes]:
        files = {SRC_VOCAB: self.src_vocab.to_bytes(), TGT_VOCAB: self.tgt_vocab.to_bytes(),
                 **tokenizer_files(self.tokenizers)}  # fmt: skip
        if self.shortlist is not None:
            files[SHORTLIST] = self.shortlist.to_bytes()
        return files

    def describe(self) -> str:
        return f"vocab {len(self.src_vocab):,}/{len(self.tgt_vocab):,}"


def load_vocabs(directory: Path) -> tuple[Vocab, Vocab]:
    return Vocab.load(Path(directory) / SRC_VOCAB), Vocab.load(Path(directory) / TGT_VOCAB)


def load_shortlist(directory: Path) -> Shortlist | None:
    path = Path(directory) / SHORTLIST
    return Shortlist.from_bytes(path.read_bytes()) if path.is_file() else None


class TranslationTask(Task):
    name = "translate"
    metrics = {"exact_match": True, "bleu": True, "chrf": True, "loss": False}
    default_metric = "exact_match"
    sections = {"data": DataConfig, "model": ModelConfig}
    shortlists = True
    unit = "tok"
    examples = "pairs"
    decode_options = SEARCH_KEYS
    reports_after_training = False  # `attnseq evaluate` scores files; the demo reports its test split

    def check(self, cfg: Config, at) -> None:
        check_seq2seq_model(cfg, at)
        m = cfg.model
        if (
            m.decoder in ("luong", "bahdanau")
            and m.attention == "location"
            and m.max_src_len < cfg.data.max_src_len + 1
        ):
            raise AttnseqError(
                f"{at('model.attention', 'model.max_src_len', 'data.max_src_len')}: location attention scores "
                f"at most model.max_src_len = {m.max_src_len} positions, but "
                f"sources may have data.max_src_len = {cfg.data.max_src_len} tokens plus </s>; raise "
                f"model.max_src_len to {cfg.data.max_src_len + 1} or lower data.max_src_len"
            )
        if bool(cfg.data.src_suffix) != bool(cfg.data.tgt_suffix):
            raise AttnseqError(
                f"{at('data.src_suffix', 'data.tgt_suffix')}: set both 'data.src_suffix' and 'data.tgt_suffix' "
                "(parallel files) or neither (TSV files)"
            )

    def describe_model(self, cfg: Config) -> str:
        return f"{cfg.model.decoder}/{cfg.model.attention} model"

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  exact {r['exact_match']:.1f}%  BLEU {r['bleu']:.1f}"

    def pairs(self, cfg: Config, split: str) -> list[tuple[str, str]]:
        """The (source, target) texts of a split ("train", "valid", "test"); [] for an unset test."""
        d = cfg.data
        if split == "test" and not d.test:
            return []
        return read_pairs(getattr(d, split), d, key=f"data.{split}")

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        """Read and encode train / valid. Tokenizers and vocabularies come from the model directory
        `saved` (resume), else they are built from the training pairs."""
        d = cfg.data
        raw_train, raw_valid = self.pairs(cfg, "train"), self.pairs(cfg, "valid")
        if saved is not None:
            tokenizers = load_tokenizers(d, saved)
        else:
            tokenizers = fit_tokenizers(d, [s for s, _ in raw_train], [t for _, t in raw_train])
        train_pairs = tokenize_pairs(raw_train, *tokenizers)
        valid_pairs = tokenize_pairs(raw_valid, *tokenizers)
        if saved is not None:
            src_vocab, tgt_vocab = load_vocabs(saved)
        else:
            # a model that copies can write every source token: its target vocabulary holds both sides'
            tgt_sides = (2, 3) if cfg.model.copy else (3,)
            src_vocab, tgt_vocab = (
                Vocab.build(
                    (p[side] for p in train_pairs for side in sides),
                    min_freq=d.min_freq,
                    max_size=d.max_vocab,
                    source=self.source(cfg, "train") + suffix,
                )  # fmt: skip
                for sides, suffix in (((2,), d.src_suffix), (tgt_sides, d.tgt_suffix))
            )
        datasets = []
        for path, pairs in ((self.source(cfg, "train"), train_pairs), (self.source(cfg, "valid"), valid_pairs)):
            dataset = PairDataset(pairs, src_vocab=src_vocab, tgt_vocab=tgt_vocab, max_src_len=d.max_src_len,
                                  max_tgt_len=d.max_tgt_len)  # fmt: skip
            if not len(dataset):
                raise AttnseqError(
                    f"{path}: no usable pair: every pair is longer than data.max_src_len / data.max_tgt_len or "
                    "tokenizes to nothing on one side; raise the limits or check the file"
                )
            datasets.append(dataset)
        if saved is not None:
            shortlist = load_shortlist(saved)
        elif cfg.model.copy:  # a copying model writes source words: no shortlist applies
            shortlist = None
        else:  # from the ids training reads (each source without its closing </s>)
            train = datasets[0]
            shortlist = Shortlist.build([ids[:-1] for ids in train.src_ids], train.tgt_ids, len(src_vocab),
                                        len(tgt_vocab))  # fmt: skip
        return TaskData(*datasets, TranslationAssets(src_vocab, tgt_vocab, tokenizers, shortlist))

    def source(self, cfg: Config, split: str) -> str:
        """Where a split's pairs come from, for messages."""
        return getattr(cfg.data, split)

    def load_assets(self, cfg: Config, directory: Path) -> TranslationAssets:
        return TranslationAssets(
            *load_vocabs(directory), load_tokenizers(cfg.data, directory), load_shortlist(directory)
        )

    def build_model(self, cfg: Config, assets: TranslationAssets):
        from attnseq.models.seq2seq import build_model
        from attnseq.modules.copy import copy_map

        src, tgt = assets.src_vocab, assets.tgt_vocab
        model = build_model(cfg.model, src_vocab_size=len(src), tgt_vocab_size=len(tgt), pad_id=tgt.pad_id,
                            copy_map=copy_map(src, tgt) if cfg.model.copy else None)  # fmt: skip
        model.label_smoothing, model.teacher_forcing = cfg.train.label_smoothing, cfg.train.teacher_forcing
        return model

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """Greedy exact match, sacreBLEU and chrF on (the first train.valid_max_sentences of) valid,
        decoded by a fresh decoding copy of the model's current weights."""
        valid = data.valid
        limit = cfg.train.valid_max_sentences or len(valid)
        translator = self.predictor(model, cfg, data.assets, device=device)
        scores = translator.score(valid.src_text[:limit], valid.tgt_text[:limit], beam_size=1)
        return {"exact_match": scores["exact_match"], "bleu": scores["bleu"], "chrf": scores["chrf"]}

    def predictor_class(self) -> type:
        """The `Translator` class this task's predictor is (a subclass for tasks that add to it)."""
        return Translator

    def predictor(self, model, cfg: Config, assets: TranslationAssets, *, device: str = "cpu"):
        return self.predictor_class()(model, cfg, assets.src_vocab, assets.tgt_vocab, device=device,
                                      tokenizers=assets.tokenizers, shortlist=assets.shortlist)  # fmt: skip

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None) -> dict | None:
        """BLEU, chrF (sacreBLEU) and exact match of the predictor's search on --data (TSV) or --src /
        --ref files, or on data.test; with the search's beam size, precision and shortlist size."""
        if data and (src or ref) or bool(src) != bool(ref):
            raise AttnseqError("evaluate: give either --data FILE.tsv or both --src FILE and --ref FILE")
        d = predictor.config.data
        if not (data or src or d.test):
            raise AttnseqError("evaluate: give either --data FILE.tsv or both --src FILE and --ref FILE")
        pairs = read_tsv(data) if data else read_parallel(src, ref) if src else read_pairs(d.test, d, key="data.test")
        hyps, scores = predictor.evaluate([s for s, _ in pairs], [r for _, r in pairs])
        scores.update(
            beam_size=predictor.config.decode.beam_size,
            precision=predictor.precision,
            shortlist=predictor.shortlist_size,
        )  # target words per source word; 0: the whole vocabulary
        if outputs is not None:
            outputs.extend(hyps)
        return scores

    def report_lines(self, report: dict, cfg) -> list[str]:
        r = report
        return [f"BLEU {r['bleu']:.2f}  ({r['bleu_signature']})", f"chrF {r['chrf']:.2f}  ({r['chrf_signature']})",
                f"BLEU lowercased, tokenized {r['bleu_lc_tok']:.2f}  ({r['bleu_lc_tok_signature']})",
                f"exact match {r['exact_match']:.1f}%  sentences {r['sentences']}  beam {r['beam_size']}  "
                f"{r['precision']}  {r['seconds']:.1f} s ({r['sent_s']:.0f} sentences/s)"]  # fmt: skip

    def plot(self, predictor, text: str, out: Path) -> tuple[str, Path]:
        """The attention heatmap of the predictor's output for `text` (SPEC 2.4's a_t, a row per output token)."""
        from attnseq.plotting import plot_attention

        if not predictor.model.has_attention:
            raise AttnseqError(f"model.decoder = {predictor.config.model.decoder} has no attention to plot; "
                               "train a luong or bahdanau model")  # fmt: skip
        tr = predictor.translate([text])[0]
        title = f"{textwrap.shorten(tr.source, 100, placeholder=' ...')} -> {tr.text}"  # an abstract is long
        return tr.text, plot_attention(tr.attention, tr.src_tokens, tr.tokens, out, title=title, copied=tr.copied)

    def ablation(self, cfg: Config, source: str) -> Ablation:
        """The variants scored on the held-out pairs (data.test, else data.valid)."""
        pairs, name = self.held_out_pairs(cfg)
        if not pairs:
            raise AttnseqError(f"{source}: no held-out pairs to score the variants on; give data.test or data.valid")
        sources, refs = [s for s, _ in pairs], [r for _, r in pairs]
        return Ablation(held_out=name, columns=self.columns, score=lambda predictor: predictor.score(sources, refs))

    def ablation_variants(self, cfg: Config) -> list[tuple[str, list[str]]]:
        """Every decoder wiring x score function (SPEC 1-4) and the no-attention baselines."""
        return wiring_variants(cfg.model, max_src_len=cfg.data.max_src_len)

    columns = [Column("bleu", "BLEU"), Column("chrf", "chrF")]

    def held_out_pairs(self, cfg: Config) -> tuple[list[tuple[str, str]], str]:
        """The pairs an ablation scores its runs on, and their name."""
        d = cfg.data
        key = "data.test" if d.test else "data.valid"
        pairs = read_pairs(d.test or d.valid, d, key=key)
        return pairs, (d.test or d.valid) + (d.src_suffix and f"{d.src_suffix} -> {d.tgt_suffix}")


class Translator(Seq2SeqPredictor):
    """Wraps a trained model with its tokenizers and vocabularies.

    A source that tokenizes to nothing (an empty line) is translated as an empty line without
    running the model, so output stays line-aligned with input.
    """

    def __init__(
        self,
        model: Seq2Seq,
        config: Config,
        src_vocab: Vocab,
        tgt_vocab: Vocab,
        *,
        device: str = "cpu",
        tokenizers: tuple[Tokenizer, Tokenizer] | None = None,
        shortlist: Shortlist | None = None,
    ) -> None:
        self.model, self.config = model, config
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.device = torch.device(device)
        self.src_tok, self.tgt_tok = tokenizers or build_tokenizers(config.data)
        self.shortlist = shortlist  # the model's lexical shortlist, used when `shortlist_size` > 0
        self._copies: dict[str, Seq2Seq] = {}  # decode precision -> decoding copy of the model's weights

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Translator:
        """Load a model directory (or a training run directory, taking its best model) of a text ->
        text task (translate, chat, headline, ...)."""
        name = model_task(path)
        family = {t.name: t for t in _subclasses(TranslationTask) if "name" in vars(t)}
        predictor = load_predictor(path, task=family[name](), device=device) if name in family else None
        if not isinstance(predictor, cls):
            raise AttnseqError(f"{path}: holds a {name} model, not a translation model")
        return predictor

    def predict(self, inputs: list[str], **search) -> list[Prediction]:
        """The `Predictor` face of `translate`."""
        return self.translate(inputs, **search)

    def info(self) -> dict:
        return {"vocab": {"source": len(self.src_vocab), "target": len(self.tgt_vocab)}}

    def normalize_reference(self, text: str) -> str:
        """A reference as scored: lowercased when the model is trained lowercased, runs of
        whitespace as one space; nothing else changes (cased sacreBLEU sees the real text)."""
        return " ".join((text.lower() if self.config.data.lowercase else text).split())

    def evaluate(self, sources: list[str], refs: list[str], **search) -> tuple[list[str], dict]:
        """Translate `sources` and score them against `refs`: (hypotheses, scores), where scores are
        `metrics.score_translations` plus the decoding time `seconds` and `sent_s`."""
        start = time.perf_counter()
        hyps = [tr.text for tr in self.translate(sources, copies=False, **search)]
        seconds = time.perf_counter() - start
        scores = score_translations(hyps, [self.normalize_reference(r) for r in refs])
        scores.update(seconds=seconds, sent_s=len(sources) / max(seconds, 1e-9))
        return hyps, scores

    def score(self, sources: list[str], refs: list[str], **search) -> dict:
        """The scores of `evaluate`."""
        return self.evaluate(sources, refs, **search)[1]

    def translate(
        self,
        sentences: list[str],
        *,
        batch_size: int | None = None,
        beam_size: int | None = None,
        n_best: int | None = None,
        sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        copies: bool = True,  # a model that copies: each best Translation's `copied` (one more pass a batch)
    ) -> list[Translation]:
        """Decode `sentences` in length-sorted batches; results come back in input order.

        Search settings default to the config's `decode` section; beam_size 1 is greedy search.
        With beam search, each Translation is the best hypothesis and `n_best` lists the rest too.
        With `sample`, each output is drawn from the model's distribution instead (`Sampler`:
        temperature, top_k, top_p; `seed` makes the draws repeatable), and beam_size is not used.
        """
        sentences = check_inputs(sentences, what="sentences")
        batch_size, beam_size, n_best = self.search_settings(batch_size, beam_size, n_best)
        self.check_shortlist()
        sampler = sampler_for(sample, temperature, top_k, top_p, seed, device=self.device)
        if sampler is not None:
            n_best = 1
        src_tokens = [self.src_tok.tokenize(s) for s in sentences]
        limit = self.config.decode.max_src_tokens
        for i, toks in enumerate(src_tokens):
            if len(toks) > limit:  # memory for attention and search grows with the source
                raise AttnseqError(
                    f"input {i + 1}: {len(toks):,} tokens, more than decode.max_src_tokens = {limit:,}; "
                    "split it into shorter pieces (or raise decode.max_src_tokens in the model's config.json)"
                )
        src_ids = [encode_source(toks, self.src_vocab) for toks in src_tokens]
        results: list[Translation | None] = [None] * len(sentences)
        for i, toks in enumerate(src_tokens):
            if not toks:
                attention = np.zeros((0, 1), dtype=np.float32) if self.model.has_attention else None
                empty = Translation(input=sentences[i], output="", score=0.0, input_tokens=[EOS], output_tokens=[],
                                    attention=attention, rank_score=0.0)  # fmt: skip
                empty.alternatives = [empty]
                results[i] = empty
        order = sorted((i for i in range(len(sentences)) if results[i] is None), key=lambda i: len(src_ids[i]))
        model = self._decoding_model()  # a copy in eval mode: the model's own mode is left alone
        listed = self.shortlist_size
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            src, src_lengths = collate_source([src_ids[i] for i in index], self.src_vocab.pad_id)
            searched = model
            if listed:
                searched = self._shortlisted(model, src, listed, beams=1 if sampler else beam_size)
            for i, hyps in zip(index, self._search(searched, src, src_lengths, beam_size, n_best, sampler, copies)):
                if searched is not model:  # the shortlist's positions back to target vocabulary ids
                    hyps = [replace(h, tokens=searched.words(h.tokens)) for h in hyps]
                shown = [self._translation(sentences[i], src_tokens[i], h) for h in hyps]
                results[i] = shown[0]
                shown[0].alternatives = shown
        return results  # type: ignore[return-value]

    @property
    def shortlist_size(self) -> int:
        """Target words per source word that decoding lists (0: the whole vocabulary):
        decode.shortlist, with auto resolved for this model and device (`auto_size`; 0 for a model
        saved without a shortlist)."""
        size = self.config.decode.shortlist
        if size != "auto":
            return size
        if self.shortlist is None:
            return 0
        return auto_size(tgt_tokenizer=self.config.data.tgt_tokenizer, tgt_vocab_size=len(self.tgt_vocab),
                         device=self.device)  # fmt: skip

    def check_shortlist(self) -> None:
        """AttnseqError where decode.shortlist asks for a shortlist this model was saved without."""
        if shortlist_requested(self.config.decode.shortlist) and self.shortlist is None:
            raise AttnseqError(
                f"decode.shortlist = {self.config.decode.shortlist}: this model was saved without a shortlist "
                "(models saved before attnseq made one, and models that copy, have none); decode with "
                "decode.shortlist: 0 (--shortlist 0), or train the model again"
            )

    def _shortlisted(self, model: Seq2Seq, src, per_word: int, *, beams: int) -> Shortlisted:
        """The decoding copy `model` with its vocabulary cut to the shortlist of the batch `src`
        (`per_word` words per source word); its output layer in int8 for beam search at decode
        precision int8 (`shortlist_layer`)."""
        ids = self.shortlist.select(src, per_word, self.config.decode.shortlist_frequent)
        int8 = self.precision == "int8" and beams > 1
        layer = shortlist_layer(self.model.decoder.W_y, ids, int8=int8, dtype=next(model.parameters()).dtype)
        return Shortlisted(model, ids, layer)

    def _translation(self, source: str, src_tokens: list[str], hyp: Hypothesis) -> Translation:
        """One hypothesis of `source` (attention on the CPU, (len(hyp.tokens), S)) as a Translation."""
        out_tokens, shown = self._written(hyp.tokens)
        n_src = len(src_tokens) + 1
        return Translation(
            input=source,
            output=self.tgt_tok.detokenize(out_tokens),
            input_tokens=[*src_tokens, EOS],
            output_tokens=shown,
            score=hyp.score,
            attention=None if hyp.attention is None else hyp.attention.numpy()[: len(shown), :n_src],
            rank_score=hyp.rank_score,
            copied=None if hyp.copied is None else hyp.copied[: len(shown)].tolist(),
        )


def _subclasses(cls: type) -> list[type]:
    """`cls` and every subclass of it, at any depth (the registry imports every task module)."""
    return [cls] + [sub for direct in cls.__subclasses__() for sub in _subclasses(direct)]
