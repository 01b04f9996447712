"""Decoders: SPEC 1.2 (init), 1.3 (every-step), 2 (Luong) and 4 (Bahdanau).

Every decoder offers the same calls, so search and training never need to know which one they drive:
  init_state(memory) -> DecoderState
  step(prev_tokens, state, memory) -> (logits (B, V), state, attn_weights (B, S) or None)
  forward(tgt_in, state, memory) -> (logits (B, T, V), attn_weights (B, T, S) or None)
  features(tgt_in, state, memory) -> (o_t for all steps (B, T, H_o), attn_weights (B, T, S) or None)
`forward` and `features` are teacher-forced. Where the wiring allows (no feedback from one step's
output into the next step's input) they run the library RNN over all steps at once; otherwise they
loop the same step function. The output layer W_y runs once over all steps (training runs it only
where the target is not padding). A test proves `forward` equal to a loop of `step` for every
decoder.

This is the reference. Faster forms of the same computations live in `attnseq.fast` and are chosen
outside this package: a fused teacher-forced loop and loss (`attnseq.fast.accelerate`), and for a
decoding copy (`attnseq.fast.decoding`) a step's RNN update through the hooks `fast_read` and
`fast_rnn_step` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnseq.modules.attention import Attention
from attnseq.modules.encoder import RNN_CLASSES, Memory, RNNState, map_state
from attnseq.modules.loss import label_smoothed_nll
from attnseq.modules.pointwise import tanh, working_dtype


@dataclass
class DecoderState:
    """The decoder's recurrent state; `index_select` lets beam search reorder it blindly."""

    hidden: RNNState  # (L, B, H) s_t per layer, or (h, c) for an LSTM
    input_feed: Tensor | None = None  # (B, H) Luong s~_{t-1} (SPEC 2.6)
    context: Tensor | None = None  # (B, Hc) the fixed context vector c (SPEC 1.3)
    attention: Tensor | None = None  # (B, S) alpha^{t-1}, for location-aware attention (SPEC 6.4)

    def index_select(self, idx: Tensor) -> DecoderState:
        return DecoderState(
            hidden=map_state(self.hidden, lambda s: s.index_select(1, idx)),
            input_feed=None if self.input_feed is None else self.input_feed.index_select(0, idx),
            context=None if self.context is None else self.context.index_select(0, idx),
            attention=None if self.attention is None else self.attention.index_select(0, idx),
        )


def top_layer(state: RNNState) -> Tensor:
    """(B, H) output of the last layer: h of an LSTM state, the state itself otherwise."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


class RNNDecoder(nn.Module):
    """What all four wirings share: embedding, RNN, the bridge from the encoder, W_y.

    Subclasses say what the RNN reads (`input_extra` added to the embedding size), what a step
    computes (`_step`), and, when they can, a teacher-forced `features` over all steps at once.

    A decoding copy (`attnseq.fast.decoding`) may set two hooks, each computing what the method
    it stands in for computes (tests/test_fast_paths.py): `fast_read(decoder, prev_tokens, extra,
    hidden)` for `_read` (used in eval mode only) and `fast_rnn_step(decoder, x, hidden)` for
    `_rnn_step`. Left None, the reference runs.
    """

    reads_word_first = True  # steps read [e(y_{t-1}); extra] through `_read`
    fast_read: Callable | None = None
    fast_rnn_step: Callable | None = None

    def __init__(
        self,
        vocab_size: int,
        *,
        emb_size: int,
        hidden_size: int,
        enc_hidden_size: int,
        rnn: str = "lstm",
        layers: int = 1,
        dropout: float = 0.0,
        pad_id: int = 0,
        input_extra: int = 0,
        output_size: int | None = None,
    ) -> None:
        super().__init__()
        self.attention: Attention | None = None  # set by the attention wirings
        self.hidden_size = hidden_size
        self.layers = layers
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CLASSES[rnn](
            emb_size + input_extra,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        # SPEC 1.2: a learned bridge maps the encoder's final state when the sizes differ.
        self.bridge: nn.Module = (
            nn.Identity() if enc_hidden_size == hidden_size else nn.Linear(enc_hidden_size, hidden_size)
        )
        self.W_y = nn.Linear(output_size or hidden_size, vocab_size)  # SPEC 1.4 / 2.5

    # ----------------------------------------------------------------------------------------
    def init_state(self, memory: Memory) -> DecoderState:
        """s_0 from the encoder's final states: layer by layer, or the top layer for every layer
        when the layer counts differ; through the bridge when sizes differ."""

        def per_layer(s: Tensor) -> Tensor:  # (Le, B, He) -> (Ld, B, Hd)
            if s.size(0) != self.layers:
                s = s[-1:].expand(self.layers, -1, -1)
            return self.bridge(s).contiguous()

        state = DecoderState(hidden=map_state(memory.final, per_layer))
        if self.attention is not None and self.attention.reads_previous:  # alpha^0 (SPEC 6.4), or c^1 = 0
            state.attention = self.attention.initial_weights(memory.src_mask, memory.keys.dtype)
        return state

    def _previous(self, state: DecoderState, alpha: Tensor) -> Tensor | None:
        """What the next step's state keeps of this step's weights: alpha^t (location-aware) or the
        coverage c^{t+1} = c^t + alpha^t where the attention reads them, else nothing."""
        return self.attention.carry(state.attention, alpha)

    def readout(self, features: Tensor) -> Tensor:
        """Logits W_y o + b_y. features (..., H) -> (..., V)."""
        return self.W_y(self.dropout(features))

    def loss(self, features: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Summed (label-smoothed) cross-entropy of readout(features) (N, H) against target (N,):
        `label_smoothed_nll` of the softmax over the vocabulary, in float32 at least."""
        logits = self.readout(features)
        logp = F.log_softmax(logits.to(working_dtype(logits)), dim=-1)
        return label_smoothed_nll(logp, target, label_smoothing)

    def _step(self, prev_tokens: Tensor, state: DecoderState, memory: Memory):
        """One step before the output layer: (o_t (B, H_o), new state, attn (B, S) or None)."""
        raise NotImplementedError

    def step(self, prev_tokens: Tensor, state: DecoderState, memory: Memory):
        """One decoding step.

        Args:
            prev_tokens: (B,) y_{t-1}.
            state: the state after step t-1.
            memory: the encoder's Memory.
        Returns:
            logits (B, V), the new state, attention weights (B, S) (None without attention).
        """
        features, state, attn = self._step(prev_tokens, state, memory)
        return self.readout(features), state, attn

    def forward(self, tgt_in: Tensor, state: DecoderState, memory: Memory):
        """Teacher-forced decoding of all steps. tgt_in (B, T) -> logits (B, T, V), attn (B, T, S)."""
        features, attns = self.features(tgt_in, state, memory)
        return self.readout(features), attns

    def features(self, tgt_in: Tensor, state: DecoderState, memory: Memory):
        """Teacher-forced decoding up to the output layer: o_t for all steps (B, T, H_o), attention
        (B, T, S) or None. Training applies `readout` only where the target is not padding."""
        features, attns = [], []
        for t in range(tgt_in.size(1)):
            o, state, attn = self._step(tgt_in[:, t], state, memory)
            features.append(o)
            attns.append(attn)
        return torch.stack(features, dim=1), None if attns[0] is None else torch.stack(attns, dim=1)

    def _read(self, prev_tokens: Tensor, extra: Tensor | None, hidden: RNNState) -> tuple[Tensor, RNNState]:
        """s_t = RNN(s_{t-1}, [e(y_{t-1}); extra]): the top layer's output (B, H) and the new state."""
        if self.fast_read is not None and not self.training:
            return self.fast_read(self, prev_tokens, extra, hidden)
        x = self._embed(prev_tokens)
        return self._rnn_step(x if extra is None else torch.cat([x, extra], dim=-1), hidden)

    def _rnn_step(self, x: Tensor, hidden: RNNState) -> tuple[Tensor, RNNState]:
        """One RNN step: x (B, I) -> top-layer output (B, H) and the new state. A one-layer RNN
        runs as the library's single-step cell (one call, no sequence bookkeeping)."""
        if self.fast_rnn_step is not None:
            return self.fast_rnn_step(self, x, hidden)
        rnn = self.rnn
        if self.layers > 1:
            out, hidden = rnn(x.unsqueeze(1), hidden)
            return out.squeeze(1), hidden
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if isinstance(rnn, nn.LSTM):
            h, c = torch.lstm_cell(x, (hidden[0][0], hidden[1][0]), *weights)
            return h, (h.unsqueeze(0), c.unsqueeze(0))
        h = (torch.gru_cell if isinstance(rnn, nn.GRU) else torch.rnn_tanh_cell)(x, hidden[0], *weights)
        return h, h.unsqueeze(0)

    def _embed(self, tokens: Tensor) -> Tensor:
        return self.dropout(self.embedding(tokens))


class InitDecoder(RNNDecoder):
    """SPEC 1.2: c is only s_0; the RNN reads e(y_{t-1}); o_t = s_t."""

    def _step(self, prev_tokens, state, memory):
        out, hidden = self._read(prev_tokens, None, state.hidden)  # (B, H)
        return out, DecoderState(hidden=hidden), None

    def features(self, tgt_in, state, memory):
        out, _ = self.rnn(self._embed(tgt_in), state.hidden)  # fused over T: (B, T, H)
        return out, None


class EveryStepDecoder(RNNDecoder):
    """SPEC 1.3: c is s_0 and also part of every input, [e(y_{t-1}); c]; o_t = s_t."""

    def __init__(self, vocab_size, **kw):
        super().__init__(vocab_size, input_extra=kw["enc_hidden_size"], **kw)

    def init_state(self, memory):
        state = super().init_state(memory)
        state.context = top_layer(memory.final)  # (B, He)
        return state

    def _step(self, prev_tokens, state, memory):
        out, hidden = self._read(prev_tokens, state.context, state.hidden)  # reads [e(y_{t-1}); c]
        return out, DecoderState(hidden=hidden, context=state.context), None

    def features(self, tgt_in, state, memory):
        emb = self._embed(tgt_in)  # (B, T, E)
        c = state.context.unsqueeze(1).expand(-1, emb.size(1), -1)  # (B, T, He)
        out, _ = self.rnn(torch.cat([emb, c], dim=-1), state.hidden)  # fused over T
        return out, None


class LuongDecoder(RNNDecoder):
    """SPEC 2: attend with s_t, then s~_t = tanh(W_c [a_t; s_t] + b_c) feeds W_y.

    Step (with input feeding, SPEC 2.6):
      1. x_t = [e(y_{t-1}); s~_{t-1}]
      2. s_t = RNN(s_{t-1}, x_t)
      3. a_t, alpha^t = attention(s_t, h_1..h_N)                    (SPEC 2.1-2.3)
      4. s~_t = tanh(W_c [a_t; s_t] + b_c)                           (SPEC 2.4)
      5. logits = W_y s~_t + b_y                                     (SPEC 2.5, in `readout`)
    """

    def __init__(self, vocab_size, *, attention: Attention, input_feeding: bool = True, **kw):
        hidden, enc_hidden = kw["hidden_size"], kw["enc_hidden_size"]
        super().__init__(vocab_size, input_extra=hidden if input_feeding else 0, **kw)
        self.attention = attention
        self.input_feeding = input_feeding
        self.W_c = nn.Linear(enc_hidden + hidden, hidden)

    def init_state(self, memory):
        state = super().init_state(memory)
        if self.input_feeding:
            state.input_feed = torch.zeros_like(top_layer(state.hidden))  # s~_0 = 0, (B, H)
        return state

    def _attend(self, s: Tensor, memory: Memory, previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a, alpha = self.attention(s, memory.keys, memory.outputs, memory.src_mask, previous)
        s_tilde = tanh(self.W_c(torch.cat([a, s], dim=-1)))  # SPEC 2.4
        return s_tilde, alpha

    def _step(self, prev_tokens, state, memory):
        out, hidden = self._read(prev_tokens, state.input_feed, state.hidden)  # reads [e(y_{t-1}); s~_{t-1}]
        s_tilde, alpha = self._attend(out, memory, state.attention)  # (B, H), (B, S)
        feed = s_tilde if self.input_feeding else None
        return s_tilde, DecoderState(hidden=hidden, input_feed=feed, attention=self._previous(state, alpha)), alpha

    def features(self, tgt_in, state, memory):
        if self.input_feeding or self.attention.reads_previous:
            # s~_{t-1} feeds step t, or step t's scores read alpha^{t-1} (or c^t): the steps run in turn
            return super().features(tgt_in, state, memory)
        out, _ = self.rnn(self._embed(tgt_in), state.hidden)  # fused over T: (B, T, H)
        return self._attend(out, memory)  # all steps at once: (B, T, H), (B, T, S)


class BahdanauDecoder(RNNDecoder):
    """SPEC 4: attend with the previous state s_{t-1}, then update the RNN with the context.

    Step:
      1. a_t, alpha^t = attention(s_{t-1}, h_1..h_N)                 (SPEC 4.1-4.2)
      2. s_t = RNN(s_{t-1}, [a_t; e(y_{t-1})])                        (SPEC 4.3)
      3. o_t = tanh(W_o [s_t; a_t; e(y_{t-1})]) with deep output, else o_t = s_t   (SPEC 4.4)
      4. logits = W_y o_t + b_y
    """

    reads_word_first = False  # the RNN reads [a_t; e(y_{t-1})]

    def __init__(self, vocab_size, *, attention: Attention, deep_output: bool = True, **kw):
        hidden, enc_hidden, emb = kw["hidden_size"], kw["enc_hidden_size"], kw["emb_size"]
        super().__init__(vocab_size, input_extra=enc_hidden, **kw)
        self.attention = attention
        self.W_o = nn.Linear(hidden + enc_hidden + emb, hidden) if deep_output else None

    def _step(self, prev_tokens, state, memory):
        a, alpha = self.attention(
            top_layer(state.hidden), memory.keys, memory.outputs, memory.src_mask, state.attention
        )
        emb = self._embed(prev_tokens)  # (B, E)
        s, hidden = self._rnn_step(torch.cat([a, emb], dim=-1), state.hidden)  # (B, H)
        o = s if self.W_o is None else tanh(self.W_o(torch.cat([s, a, emb], dim=-1)))
        return o, DecoderState(hidden=hidden, attention=self._previous(state, alpha)), alpha


DECODERS = {"init": InitDecoder, "every-step": EveryStepDecoder, "luong": LuongDecoder, "bahdanau": BahdanauDecoder}
