"""Translator: text in, text out, with the attention of every step. Used by the CLI, training's
validation and anything that serves a model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from attnseq import runtime
from attnseq.config import Config, shortlist_requested
from attnseq.data import collate_source, encode_source
from attnseq.decoding import Sampler, beam_search, greedy_search
from attnseq.errors import AttnseqError
from attnseq.fast.decoding import decoding_copy
from attnseq.fast.frozen import Int8Linear
from attnseq.fast.shortlist import Shortlist, Shortlisted, auto_size, shortlist_layer
from attnseq.metrics import score_translations
from attnseq.models.seq2seq import Seq2Seq
from attnseq.contracts import Prediction, SearchOption, check_count, check_inputs
from attnseq.tokenize import Tokenizer, build_tokenizers
from attnseq.vocab import EOS, Vocab


class Translation(Prediction):
    """A `Prediction` of a seq2seq model, with the names translation code reads: `source` (input),
    `text` (output, detokenized), `src_tokens` (what the model read, ending with </s>), `tokens`
    (what it wrote, ending with </s> when it finished), `n_best` (alternatives: all returned
    hypotheses, best first); attention is (len(tokens), len(src_tokens)), rows sum to 1."""

    source = property(lambda self: self.input)
    text = property(lambda self: self.output)
    src_tokens = property(lambda self: self.input_tokens)
    tokens = property(lambda self: self.output_tokens)
    n_best = property(lambda self: self.alternatives)


class Seq2SeqPredictor:
    """What every predictor over a `Seq2Seq` model shares: the search settings, the decoding copy of
    each precision and the batched search. Subclasses set model, config, tgt_vocab, device and
    _copies, and turn their inputs into (src, src_lengths) batches."""

    search_options = (
        SearchOption("beam_size", int, 1, 64, "beam width; 1 is greedy search"),
        SearchOption("n_best", int, 1, 64, "hypotheses returned, best first; at most beam_size"),
    )
    model: Seq2Seq
    config: Config
    tgt_vocab: Vocab
    device: torch.device
    _copies: dict[str, Seq2Seq]

    def search_defaults(self) -> dict:
        dec = self.config.decode
        return {"beam_size": dec.beam_size, "n_best": min(dec.n_best, dec.beam_size)}

    def search_settings(self, batch_size, beam_size, n_best) -> tuple[int, int, int]:
        """The batch size, beam size and n-best of a call (checked; None = the config's)."""
        dec = self.config.decode
        batch_size = check_count("batch_size", batch_size) or dec.batch_size
        beam_size = check_count("beam_size", beam_size) or dec.beam_size
        return batch_size, beam_size, min(check_count("n_best", n_best) or dec.n_best, beam_size)

    def refresh(self) -> None:
        """Drop the decoding copies: the next search copies the model's current weights (call it
        after changing the model's weights; a predictor that training validates is built anew)."""
        self._copies.clear()

    @property
    def precision(self) -> str:
        """decode.precision as it runs on this device (`auto` resolved); raises AttnseqError for a
        precision the device cannot run natively."""
        requested, device = self.config.decode.precision, str(self.device)
        return runtime.resolve_precision(requested, stage="decode", device=device, where="decode.precision")

    def _decoding_model(self) -> Seq2Seq:
        """The model search runs: a `decoding_copy` of the model in float32 (decode.precision fp32)
        or bfloat16 (bf16), and for int8 with its output layer W_y dynamically quantized
        (`Int8Linear`; CPU only) and the rest in bfloat16 where this CPU runs it natively, else in
        float32 with the decoder's recurrent product in int8 too (`decoding_copy`'s int8_recurrent).
        The copy of each precision is made once and kept until `refresh`. Search takes
        log-probabilities and scores in float32 either way."""
        precision = self.precision
        if precision not in self._copies:
            low = precision == "bf16" or (precision == "int8" and runtime.capabilities(str(self.device)).bf16)
            model = decoding_copy(self.model, torch.bfloat16 if low else torch.float32,
                                  int8_recurrent=precision == "int8" and not low)  # fmt: skip
            if precision == "int8":
                model.decoder.W_y = Int8Linear(self.model.decoder.W_y)
            self._copies[precision] = model
        return self._copies[precision]

    def _written(self, ids: list[int]) -> tuple[list[str], list[str]]:
        """A hypothesis's ids as tokens: (what it wrote without </s>, what it shows: with </s> when
        the search finished it)."""
        v = self.tgt_vocab
        out_tokens = v.decode(ids)
        return out_tokens, out_tokens + ([EOS] if ids and ids[-1] == v.eos_id else [])

    def limit_basis(self, src_lengths):
        """What decode.max_len_a multiplies: the source lengths (source tokens for text)."""
        return src_lengths

    def prefix_scorer(self, model: Seq2Seq):
        """What beam search adds to the decoder's scores (`beam_search(prefix_scorer=...)`): None for
        text; a speech model with a CTC layer can decode jointly with it (`Transcriber`)."""
        return None

    def _search(self, model: Seq2Seq, src, src_lengths, beam_size: int, n_best: int, sampler=None):
        """For each input of the batch: a list of (ids, score, rank_score, attention (T, S) or None).
        With a `Sampler`, one draw per input instead of a search."""
        v, dec = self.tgt_vocab, self.config.decode
        max_len = (
            (self.limit_basis(src_lengths).float() * dec.max_len_a + dec.max_len_b).long().clamp(min=1).to(self.device)
        )
        specials = dict(bos_id=v.bos_id, eos_id=v.eos_id, pad_id=v.pad_id, max_len=max_len,
                        block_ngram_repeat=dec.block_ngram_repeat)  # fmt: skip
        scorer = self.prefix_scorer(model)
        if (beam_size > 1 or scorer is not None) and sampler is None:
            found = beam_search(model, src.to(self.device), src_lengths, beam_size=beam_size, n_best=n_best,
                                penalty=dec.length_penalty, alpha=dec.alpha, prefix_scorer=scorer,
                                **specials)  # fmt: skip
            return [
                [
                    (h.tokens, h.score, h.rank_score, None if h.attention is None else h.attention.cpu().numpy())
                    for h in hyps
                ]  # fmt: skip
                for hyps in found
            ]
        hyp = greedy_search(model, src.to(self.device), src_lengths, choose=sampler, **specials)
        tokens, lengths, scores = hyp.tokens.cpu(), hyp.lengths.cpu(), hyp.scores.cpu()
        attn = None if hyp.attn_weights is None else hyp.attn_weights.float().cpu().numpy()
        return [
            [
                (
                    tokens[row, : lengths[row]].tolist(),
                    float(scores[row]),
                    float(scores[row]),
                    None if attn is None else attn[row, : lengths[row]],
                )
            ]  # fmt: skip
            for row in range(src.size(0))
        ]


SAMPLING_OPTIONS = (
    SearchOption("sample", bool, help="draw each output token from the model's distribution instead of searching"),
    SearchOption("temperature", float, 0.05, 10.0, "sampling: divides the log-probabilities (below 1: surer)"),
    SearchOption("top_k", int, 0, 100000, "sampling: draw among the k most probable tokens only (0: all)"),
    SearchOption("top_p", float, 0.01, 1.0, "sampling: draw within the most probable tokens of this total probability"),
    SearchOption("seed", int, 0, 2**63 - 1, "sampling: the same seed, the same draws (default: fresh draws)"),
)


def sampler_for(sample: bool, temperature, top_k, top_p, seed, *, device) -> Sampler | None:
    """The `Sampler` of a call's sampling options (checked), or None when it does not sample."""
    if not sample:
        return None
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise AttnseqError(f"temperature = {temperature!r}: must be a number above 0")
    check_count("top_k", top_k, minimum=0)
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise AttnseqError(f"top_p = {top_p!r}: must be a number in (0, 1]")
    generator = torch.Generator(device=device)
    generator.manual_seed(check_count("seed", seed, minimum=0)) if seed is not None else generator.seed()
    return Sampler(float(temperature), int(top_k or 0), float(top_p), generator)


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
        """Load a model directory (or a training run directory, taking its best model)."""
        from attnseq.checkpoint import load

        return load(path, device=device, expect=cls, what="a translation model")

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
        hyps = [tr.text for tr in self.translate(sources, **search)]
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
            for i, hyps in zip(index, self._search(searched, src, src_lengths, beam_size, n_best, sampler)):
                if searched is not model:  # the shortlist's positions back to target vocabulary ids
                    hyps = [(searched.words(ids), *rest) for ids, *rest in hyps]
                shown = [self._translation(sentences[i], src_tokens[i], *h) for h in hyps]
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

    def _translation(self, source: str, src_tokens: list[str], ids, score, rank_score, attention) -> Translation:
        out_tokens, shown = self._written(ids)
        n_src = len(src_tokens) + 1
        return Translation(
            input=source,
            output=self.tgt_tok.detokenize(out_tokens),
            input_tokens=[*src_tokens, EOS],
            output_tokens=shown,
            score=score,
            attention=None if attention is None else attention[: len(shown), :n_src],
            rank_score=rank_score,
        )
