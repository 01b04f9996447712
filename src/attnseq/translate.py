"""What every predictor over a `Seq2Seq` model shares (`Seq2SeqPredictor`): search settings, the
decoding copy of each precision, batched search (greedy, beam, sampling, joint CTC) and the
`Translation` result. The text predictor (`tasks.translation.Translator`) and the speech one
(`tasks.speech.Transcriber`) build on it."""

from __future__ import annotations

from dataclasses import replace

import torch

from attnseq import runtime
from attnseq.batching import pad
from attnseq.contracts import MAX_BEAM, Prediction, SearchOption, check_count
from attnseq.decoding import Hypothesis, Sampler, attention_to_cpu, beam_search, greedy_search
from attnseq.decoding.fusion import Chain, LMFusion, token_map
from attnseq.errors import AttnseqError
from attnseq.fast.decoding import decoding_model
from attnseq.fast.shortlist import Shortlisted
from attnseq.models.seq2seq import Seq2Seq
from attnseq.schema import Config
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


# the decode keys the command line's search options set on a seq2seq predictor (--beam-size, ...)
SEARCH_KEYS = (
    "beam_size",
    "length_penalty",
    "alpha",
    "batch_size",
    "precision",
    "n_best",
    "shortlist",
    "lm",
    "lm_weight",
)


class Seq2SeqPredictor:
    """What every predictor over a `Seq2Seq` model shares: the search settings, the decoding copy of
    each precision and the batched search. Subclasses set model, config, tgt_vocab, device and
    _copies, and turn their inputs into (src, src_lengths) batches."""

    search_options = (
        SearchOption("beam_size", int, 1, MAX_BEAM, "beam width; 1 is greedy search"),
        SearchOption("n_best", int, 1, MAX_BEAM, "hypotheses returned, best first; at most beam_size"),
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
        """The batch size, beam size and n-best of a call (checked; None = the config's). An n-best
        above the beam is refused, as on the command line: a beam of K returns at most K."""
        dec = self.config.decode
        batch_size = check_count("batch_size", batch_size) or dec.batch_size
        beam_size = check_count("beam_size", beam_size, maximum=MAX_BEAM) or dec.beam_size
        given = check_count("n_best", n_best, maximum=MAX_BEAM)
        if given is not None and given > beam_size:
            raise AttnseqError(f"n_best = {given} is more than beam_size = {beam_size}: a beam of {beam_size} returns "
                               f"at most {beam_size} hypotheses; lower n_best or raise beam_size")  # fmt: skip
        return batch_size, beam_size, min(given or dec.n_best, beam_size)

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
        """The model search runs: the decoding copy of the model for this precision
        (`fast.decoding.decoding_model`: fp32, bf16, or int8 with its output layer W_y dynamically
        quantized). The copy of each precision is made once and kept until `refresh`. Search takes
        log-probabilities and scores in float32 either way."""
        precision = self.precision
        if precision not in self._copies:
            self._copies[precision] = decoding_model(self.model, precision, device=self.device)
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

    # the language model fused into beam search: (its directory, an RNNLanguageModel, the LM id of
    # each output id); set by `attach_lm`, used while decode.lm names that directory
    lm: tuple[str, torch.nn.Module, torch.Tensor] | None = None

    def attach_lm(self, path: str, lm: torch.nn.Module, lm_tokens: list[str]) -> None:
        """Fuse the language model `lm` (directory `path`, vocabulary `lm_tokens` in id order) into beam
        search while decode.lm is `path` (`predict.attach_lm` loads it). Raises AttnseqError when the
        LM shares too few of the model's output tokens (another tokenizer)."""
        index = {t: i for i, t in enumerate(lm_tokens)}
        words = self.tgt_vocab.itos[4:]  # the model's output tokens past the four specials
        known = sum(t in index for t in words)
        if words and known < 0.5 * len(words):
            raise AttnseqError(f"decode.lm = {path}: the language model knows {known} of the model's {len(words)} "
                               "output tokens; train it with the model's tokenizer (data.tokenizer)")  # fmt: skip
        self.lm = (path, lm.to(self.device).eval(), token_map(self.tgt_vocab.itos, index, unk_id=Vocab.unk_id))

    def model_scorers(self, model: Seq2Seq) -> list:
        """Functions of the memory giving the scorers beam search ranks by beside the decoder: none for
        text; a speech model with a CTC layer can decode jointly with it (`Transcriber`)."""
        return []

    def prefix_scorer(self, model: Seq2Seq):
        """What beam search adds to the decoder's scores (`beam_search(prefix_scorer=...)`): the
        model's own scorers (`model_scorers`), then the language model of decode.lm (shallow fusion);
        None where there are none."""
        makers = self.model_scorers(model)
        dec = self.config.decode
        if dec.lm and dec.lm_weight > 0:
            if self.lm is None or self.lm[0] != dec.lm:
                raise AttnseqError(f"decode.lm = {dec.lm}: that language model is not loaded; load the model with "
                                   "attnseq.load (or the command line), which loads decode.lm")  # fmt: skip
            _, lm, mapping = self.lm
            if isinstance(model, Shortlisted):  # it searches over the shortlist's positions: their LM ids
                mapping = mapping.to(model.ids.device)[model.ids]
            makers.append(lambda memory: LMFusion(lm, mapping.to(memory.src_mask.device), memory.src_mask.size(0),
                                                  bos_id=Vocab.bos_id, weight=dec.lm_weight))  # fmt: skip
        if not makers:
            return None
        if len(makers) == 1:
            return makers[0]
        return lambda memory: Chain([make(memory) for make in makers])

    def _search(
        self, model: Seq2Seq, src, src_lengths, beam_size: int, n_best: int, sampler=None, copies: bool = False
    ) -> list[list[Hypothesis]]:
        """Search a batch: src (B, S) ids or features, src_lengths (B,).

        Returns:
            For each input, its hypotheses best first (`Hypothesis`; attention (len(tokens), S) on
            the CPU): n_best of a beam search (or of joint CTC decoding), else one of greedy search,
            or with a `Sampler` one draw; with `copies`, a copying model's best hypotheses carry
            `copied` (`_with_copy_shares`).
        """
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
        else:
            found = greedy_search(model, src.to(self.device), src_lengths, choose=sampler, **specials)
        if copies and getattr(model, "copy", None) is not None:
            found = self._with_copy_shares(model, src, src_lengths, found)
        return attention_to_cpu(found)

    def _with_copy_shares(self, model: Seq2Seq, src, src_lengths, found: list[list[Hypothesis]]):
        """`found` with each input's best hypothesis carrying `copied` (`Seq2Seq.copy_shares`, one
        teacher-forced pass over the batch)."""
        v = self.tgt_vocab
        best = [hyps[0].tokens or [v.eos_id] for hyps in found]
        tgt_out = pad(best, v.pad_id)
        tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], v.bos_id), tgt_out[:, :-1]], dim=1)
        with torch.no_grad():
            to = self.device
            shares = model.copy_shares(src.to(to), src_lengths, tgt_in.to(to), tgt_out.to(to))
        return [[replace(hyps[0], copied=shares[i, : len(hyps[0].tokens)].cpu()), *hyps[1:]]
                for i, hyps in enumerate(found)]  # fmt: skip


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
