"""Seq2Seq: an encoder, a decoder and the glue that search and training use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

from attnseq.batching import Batch
from attnseq.contracts import LossOutput
from attnseq.errors import AttnseqError
from attnseq.models.config import ModelConfig
from attnseq.modules.attention import build_attention
from attnseq.modules.copy import CopyGenerator
from attnseq.modules.ctc import CTCHead
from attnseq.modules.decoder import DECODERS, DecoderState, RNNDecoder
from attnseq.modules.encoder import Memory, RNNEncoder
from attnseq.modules.loss import coverage_loss, label_smoothed_nll
from attnseq.modules.pointwise import working_dtype
from attnseq.runtime import autocast, resolve_device  # noqa: F401  (their home is runtime)


class Seq2Seq(nn.Module):
    """forward(batch) -> LossOutput for training; encode() once per sentence, then init_state()
    and step() for search; logits() for teacher-forced outputs.

    `label_smoothing` and `teacher_forcing` apply in training mode only (the task sets them from
    train.*); in eval mode forward() is the plain teacher-forced cross-entropy.

    The model computes the reference (SPEC 1-4, `modules/`). Faster forms of three of its
    computations may be installed from outside (`attnseq.fast.accelerate`), each computing what it
    replaces: `fast_features(decoder, tgt_in, state, memory)` for `decoder.features`,
    `fast_loss(decoder, features, target, label_smoothing)` for `decoder.loss`, and
    `fast_logits_loss(logits, target, label_smoothing)` for the cross-entropy of logits. None: the
    reference runs."""

    fast_features: Callable | None = None
    fast_loss: Callable | None = None
    fast_logits_loss: Callable | None = None

    def __init__(
        self, encoder: RNNEncoder, decoder: RNNDecoder, *, pad_id: int = 0, copy: CopyGenerator | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.copy = copy  # a pointer-generator: step / logits give log P of the mixed distribution
        self.ctc: CTCHead | None = None  # a CTC layer on the encoder, trained jointly (modules.ctc)
        self.ctc_weight = 0.0
        self.coverage_weight = 0.0  # > 0: training adds this times the coverage loss (model.coverage_loss)
        self.pad_id = pad_id
        self.label_smoothing = 0.0
        self.teacher_forcing = 1.0
        self.attention_dtype: torch.dtype | None = None  # a decoding copy: hold the attention's memory in this

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    def encode(self, src: Tensor, src_lengths: Tensor) -> Memory:
        """src (B, S), src_lengths (B,) -> Memory, with the attention keys computed once here."""
        memory = self.encoder(src, src_lengths)
        if self.decoder.attention is not None:
            memory = memory.with_keys(self.decoder.attention.precompute_keys(memory.outputs))
            if self.attention_dtype is not None:
                dtype = self.attention_dtype
                memory = replace(memory, outputs=memory.outputs.to(dtype), keys=memory.keys.to(dtype))
        if self.copy is not None:
            memory = replace(memory, src_ids=src)
        return memory

    def init_state(self, memory: Memory) -> DecoderState:
        return self.decoder.init_state(memory)

    def step(self, prev_tokens: Tensor, state: DecoderState, memory: Memory):
        """prev_tokens (B,) -> logits (B, V), new state, attention weights (B, S) or None. With the
        copy mechanism the "logits" are log P(w) of the mixed distribution (log_softmax leaves them
        as they are, so every search reads them unchanged)."""
        if self.copy is None:
            return self.decoder.step(prev_tokens, state, memory)
        features, state, attn = self.decoder._step(prev_tokens, state, memory)
        src_ids = memory.src_ids
        if src_ids.size(0) != prev_tokens.size(0):  # beam search: K consecutive state rows per memory row
            src_ids = src_ids.repeat_interleave(prev_tokens.size(0) // src_ids.size(0), dim=0)
        logp = self.copy(self.decoder.readout(features), features, self.decoder._embed(prev_tokens), attn, src_ids)
        return logp, state, attn

    def _copied(self, features: Tensor, tgt_in: Tensor, attn: Tensor, memory: Memory, keep=None) -> Tensor:
        """Teacher-forced log P(w) of the copy mechanism at every step (or only where `keep`)."""
        src_ids = memory.src_ids.unsqueeze(1).expand(-1, tgt_in.size(1), -1)  # (B, T, S)
        emb = self.decoder._embed(tgt_in)
        if keep is not None:
            features, emb, attn, src_ids = features[keep], emb[keep], attn[keep], src_ids[keep]
        return self.copy(self.decoder.readout(features), features, emb, attn, src_ids)

    def copy_shares(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """(B, T) for a model that copies: the share of each written token's probability (tgt_out,
        read after tgt_in) that copying gave (`CopyGenerator.copied_share`), step by step as search
        runs (so a decoding copy computes it as it searched)."""
        memory = self.encode(src, src_lengths)
        state, shares = self.decoder.init_state(memory), []
        for t in range(tgt_in.size(1)):
            features, state, attn = self.decoder._step(tgt_in[:, t], state, memory)
            emb = self.decoder._embed(tgt_in[:, t])
            logits = self.decoder.readout(features)
            shares.append(self.copy.copied_share(logits, features, emb, attn, memory.src_ids, tgt_out[:, t]))
        return torch.stack(shares, dim=1)

    def forward(self, batch: Batch) -> LossOutput:
        """The summed cross-entropy of a batch (`data.Batch`) over its target tokens (with the
        coverage loss and the CTC loss where the model has them; each term is also logged)."""
        smoothing, forcing = (self.label_smoothing, self.teacher_forcing) if self.training else (0.0, 1.0)
        joint = self.ctc is not None and self.training  # validation scores the attention decoder alone
        memory = self.encode(batch.src, batch.src_lengths) if joint else None
        terms = self.loss_terms(
            batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, pad_id=self.pad_id,
            label_smoothing=smoothing, teacher_forcing=forcing, memory=memory,
        )  # fmt: skip
        loss_sum = self._total(terms)
        logs = {"coverage": float(terms["coverage"].detach())} if "coverage" in terms else {}
        if not joint:
            return LossOutput(loss_sum, batch.n_tgt_tokens, logs)
        w, ctc = self.ctc_weight, self.ctc.loss_sum(memory, batch.tgt_out, batch.tgt_lengths)
        logs.update(attention=float(loss_sum.detach()), ctc=float(ctc.detach()))  # each summed over the batch
        return LossOutput((1.0 - w) * loss_sum + w * ctc, batch.n_tgt_tokens, logs)

    def logits(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, teacher_forcing: float = 1.0,
        memory: Memory | None = None,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """Logits (B, T, V) and attention (B, T, S) for a batch.

        With teacher_forcing < 1, each step feeds the reference y_{t-1} with that probability and
        the model's own argmax otherwise (per sentence, drawn from torch's seeded RNG). `memory`:
        the batch already encoded.
        """
        memory = self.encode(src, src_lengths) if memory is None else memory
        state = self.decoder.init_state(memory)
        if teacher_forcing >= 1.0:
            features, attn = self.features(tgt_in, state, memory)
            if self.copy is not None:
                return self._copied(features, tgt_in, attn, memory), attn
            return self.decoder.readout(features), attn
        logits, attns = [], []
        prev = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            step_logits, state, attn = self.step(prev, state, memory)
            logits.append(step_logits)
            attns.append(attn)
            if t + 1 < tgt_in.size(1):
                use_ref = torch.rand(prev.shape, device=prev.device) < teacher_forcing
                prev = torch.where(use_ref, tgt_in[:, t + 1], step_logits.argmax(-1))
        return torch.stack(logits, 1), None if attns[0] is None else torch.stack(attns, 1)

    def loss(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor, *, pad_id: int,
        label_smoothing: float = 0.0, teacher_forcing: float = 1.0, memory: Memory | None = None,
    ) -> Tensor:  # fmt: skip
        """Summed cross-entropy of a batch over the real (non-padding) positions of tgt_out, plus
        coverage_weight times the coverage loss where the model has coverage (`loss_terms`)."""
        terms = self.loss_terms(src, src_lengths, tgt_in, tgt_out, pad_id=pad_id, label_smoothing=label_smoothing,
                                teacher_forcing=teacher_forcing, memory=memory)  # fmt: skip
        return self._total(terms)

    def _total(self, terms: dict[str, Tensor]) -> Tensor:
        """The loss of `loss_terms`: nll, plus coverage_weight times the coverage loss where it is there."""
        return terms["nll"] + self.coverage_weight * terms["coverage"] if "coverage" in terms else terms["nll"]

    def loss_terms(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor, *, pad_id: int,
        label_smoothing: float = 0.0, teacher_forcing: float = 1.0, memory: Memory | None = None,
    ) -> dict[str, Tensor]:  # fmt: skip
        """The loss terms of a batch, each summed: "nll", the cross-entropy over the real
        (non-padding) positions of tgt_out, and "coverage" (`modules.loss.coverage_loss`) where
        coverage_weight > 0.

        Under full teacher forcing the output layer runs only at those positions (`RNNDecoder.loss`,
        or `fast_loss`); with teacher_forcing < 1 the steps' logits are scored. The loss is
        `label_smoothed_nll` of the softmax (of the copy mechanism's mixture, with model.copy).
        """
        keep = tgt_out != pad_id
        if teacher_forcing >= 1.0:
            memory = self.encode(src, src_lengths) if memory is None else memory
            features, attn = self.features(tgt_in, self.decoder.init_state(memory), memory)
            if self.copy is not None:
                nll = label_smoothed_nll(self._copied(features, tgt_in, attn, memory, keep), tgt_out[keep],
                                         label_smoothing)  # fmt: skip
            elif self.fast_loss is not None:
                nll = self.fast_loss(self.decoder, features[keep], tgt_out[keep], label_smoothing)
            else:
                nll = self.decoder.loss(features[keep], tgt_out[keep], label_smoothing)
        else:
            logits, attn = self.logits(src, src_lengths, tgt_in, teacher_forcing=teacher_forcing, memory=memory)
            if self.copy is not None:  # the copy mechanism's logits are log P(w) already
                nll = label_smoothed_nll(logits[keep], tgt_out[keep], label_smoothing)
            elif self.fast_logits_loss is not None:
                nll = self.fast_logits_loss(logits[keep], tgt_out[keep], label_smoothing)
            else:
                logits = logits[keep]
                logp = torch.log_softmax(logits.to(working_dtype(logits)), dim=-1)
                nll = label_smoothed_nll(logp, tgt_out[keep], label_smoothing)
        if self.coverage_weight > 0 and attn is not None:
            return {"nll": nll, "coverage": coverage_loss(attn.to(working_dtype(attn)), keep)}
        return {"nll": nll}

    def features(self, tgt_in: Tensor, state: DecoderState, memory: Memory):
        """The decoder's teacher-forced `features` (o_t (B, T, H_o), attention (B, T, S) or None),
        through `fast_features` where one is installed."""
        if self.fast_features is not None:
            return self.fast_features(self.decoder, tgt_in, state, memory)
        return self.decoder.features(tgt_in, state, memory)


def build_model(
    cfg: ModelConfig, *, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0, copy_map: Tensor | None = None
) -> Seq2Seq:
    """Build the model a config describes (SPEC 1-4); with model.copy, `copy_map` gives each source
    id its target id (`modules.copy.copy_map`)."""
    encoder = RNNEncoder(
        src_vocab_size,
        emb_size=cfg.emb_size,
        hidden_size=cfg.enc_hidden_size,
        rnn=cfg.rnn,
        layers=cfg.enc_layers,
        bidirectional=cfg.bidirectional,
        dropout=cfg.dropout,
        pad_id=pad_id,
    )
    return assemble(cfg, encoder, tgt_vocab_size=tgt_vocab_size, pad_id=pad_id, copy_map=copy_map)


def assemble(
    cfg: ModelConfig, encoder: nn.Module, *, tgt_vocab_size: int, pad_id: int = 0, copy_map: Tensor | None = None
) -> Seq2Seq:
    """A Seq2Seq of `encoder` (anything whose forward(src, src_lengths) returns a `Memory` of
    cfg.enc_hidden_size states) and the decoder the config describes."""
    common = dict(
        emb_size=cfg.emb_size,
        hidden_size=cfg.dec_hidden_size,
        enc_hidden_size=cfg.enc_hidden_size,
        rnn=cfg.rnn,
        layers=cfg.dec_layers,
        dropout=cfg.dropout,
        pad_id=pad_id,
    )
    if cfg.decoder in ("init", "every-step"):
        decoder = DECODERS[cfg.decoder](tgt_vocab_size, **common)
    else:
        try:
            attention = build_attention(
                cfg.attention,
                query_size=cfg.dec_hidden_size,
                key_size=cfg.enc_hidden_size,
                attn_size=cfg.attn_size,
                max_src_len=cfg.max_src_len,
                attn_filters=cfg.attn_filters,
                attn_kernel=cfg.attn_kernel,
                coverage=getattr(cfg, "coverage", False),
            )
        except ValueError as exc:
            raise AttnseqError(f"model.attention: {exc}") from None
        extra = {"input_feeding": cfg.input_feeding} if cfg.decoder == "luong" else {"deep_output": cfg.deep_output}
        decoder = DECODERS[cfg.decoder](tgt_vocab_size, attention=attention, **extra, **common)
    if cfg.tie_embeddings:  # Press & Wolf 2017: one matrix embeds target tokens and scores them
        decoder.W_y.weight = decoder.embedding.weight
    copy = None
    if getattr(cfg, "copy", False):
        if copy_map is None:
            raise AttnseqError("model.copy needs a source vocabulary to copy from (a text source)")
        copy = CopyGenerator(decoder.W_y.in_features, cfg.emb_size, copy_map)
    model = Seq2Seq(encoder, decoder, pad_id=pad_id, copy=copy)
    if getattr(cfg, "coverage", False):
        model.coverage_weight = cfg.coverage_loss
    if cfg.param_init > 0:  # every weight uniform in [-x, x]; padding embeddings stay zero
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-cfg.param_init, cfg.param_init)
            for emb in (getattr(encoder, "embedding", None), decoder.embedding):
                if emb is not None:
                    emb.weight[emb.padding_idx].zero_()
    return model
