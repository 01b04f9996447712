"""Decoders: SPEC 1.2 (init), 1.3 (every-step), 2 (Luong) and 4 (Bahdanau).

Every decoder offers the same calls, so search and training never need to know which one they drive:
  init_state(memory) -> DecoderState
  step(prev_tokens, state, memory) -> (logits (B, V), state, attn_weights (B, S) or None)
  forward(tgt_in, state, memory) -> (logits (B, T, V), attn_weights (B, T, S) or None)
  features(tgt_in, state, memory) -> (o_t for all steps (B, T, H_o), attn_weights (B, T, S) or None)
`forward` and `features` are teacher-forced. Where the wiring allows (no feedback from one step's
output into the next step's input) they run the fused library RNN over all steps at once; Luong
with input feeding and an LSTM runs as one hand-differentiated node (fast/fused.py); otherwise
they loop the same step function. The output layer W_y runs once over all steps (training runs it
only where the target is not padding). A test proves `forward` equal to a loop of `step` for
every decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnseq.fast.fused import LuongLSTMFeed
from attnseq.fast.loss import linear_cross_entropy_sum
from attnseq.modules.attention import (
    Attention,
    ConcatAttention,
    DotAttention,
    GeneralAttention,
    ScaledDotAttention,
)
from attnseq.modules.encoder import RNN_CLASSES, Memory, RNNState, map_state
from attnseq.modules.pointwise import tanh, working_dtype


@dataclass
class DecoderState:
    """The decoder's recurrent state; `index_select` lets beam search reorder it blindly."""

    hidden: RNNState  # (L, B, H) s_t per layer, or (h, c) for an LSTM
    input_feed: Tensor | None = None  # (B, H) Luong s~_{t-1} (SPEC 2.6)
    context: Tensor | None = None  # (B, Hc) the fixed context vector c (SPEC 1.3)
    attention: Tensor | None = None  # (B, S) alpha^{t-1}, for location-aware attention (SPEC 3.6)

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
    computes (`_step`), and, when they can, a fused teacher-forced `forward`.
    """

    reads_word_first = True  # steps read [e(y_{t-1}); extra] through `_read`

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
        self.word_gates: Tensor | None = None  # set by `tabulate_word_gates` on a decoding copy
        self.recurrent: nn.Module | None = None  # with it: [W_ih[:, E:]; W_hh] as one linear layer

    # ----------------------------------------------------------------------------------------
    def init_state(self, memory: Memory) -> DecoderState:
        """s_0 from the encoder's final states: layer by layer, or the top layer for every layer
        when the layer counts differ; through the bridge when sizes differ."""

        def per_layer(s: Tensor) -> Tensor:  # (Le, B, He) -> (Ld, B, Hd)
            if s.size(0) != self.layers:
                s = s[-1:].expand(self.layers, -1, -1)
            return self.bridge(s).contiguous()

        state = DecoderState(hidden=map_state(memory.final, per_layer))
        if self.attention is not None and self.attention.reads_previous:  # alpha^0 (SPEC 3.6)
            state.attention = self.attention.initial_weights(memory.src_mask, memory.keys.dtype)
        return state

    def _previous(self, alpha: Tensor) -> Tensor | None:
        """What the next step's state keeps of this step's weights: alpha^t where the attention
        reads it (location-aware), else nothing."""
        return alpha if self.attention.reads_previous else None

    def readout(self, features: Tensor) -> Tensor:
        """Logits W_y o + b_y. features (..., H) -> (..., V)."""
        return self.W_y(self.dropout(features))

    def loss(self, features: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Summed cross-entropy of readout(features) (N, H) against target (N,), without holding
        the (N, V) logits (`linear_cross_entropy_sum`)."""
        W_y = self.W_y
        return linear_cross_entropy_sum(self.dropout(features), W_y.weight, W_y.bias, target, label_smoothing)

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

    def tabulate_word_gates(self) -> bool:
        """Prepare a decoding copy whose weights no longer change: the part of a one-layer LSTM's
        gate products that the previous word alone decides, e(y) W_ih[:, :E]^T + b_ih + b_hh, is
        tabulated for every word of the vocabulary (V, 4H), and the rest of W_ih is joined with
        W_hh, so a step gathers one table row and runs one product, [extra; s_{t-1}] times
        [W_ih[:, E:]; W_hh]^T, where it ran the embedding lookup and two products. The same sums,
        in another order. Returns whether this decoder can: a one-layer LSTM whose steps read
        [e(y_{t-1}); extra] through `_read` (not Bahdanau's [a_t; e(y_{t-1})]); the table
        follows the weights' dtype and is not a parameter."""
        rnn = self.rnn
        if not isinstance(rnn, nn.LSTM) or self.layers > 1 or not self.reads_word_first:
            return False
        with torch.no_grad():
            E = self.embedding.embedding_dim
            W_ih = rnn.weight_ih_l0
            self.word_gates = torch.addmm(rnn.bias_ih_l0 + rnn.bias_hh_l0, self.embedding.weight, W_ih[:, :E].t())
            joined = torch.cat([W_ih[:, E:], rnn.weight_hh_l0], dim=1)  # (4H, extra + H)
            shape = dict(bias=False, device=joined.device, dtype=joined.dtype)  # no init: the RNG stays untouched
            self.recurrent = nn.utils.skip_init(nn.Linear, joined.size(1), joined.size(0), **shape)
            self.recurrent.weight.copy_(joined)
        return True

    def _read(self, prev_tokens: Tensor, extra: Tensor | None, hidden: RNNState) -> tuple[Tensor, RNNState]:
        """s_t = RNN(s_{t-1}, [e(y_{t-1}); extra]): the top layer's output (B, H) and the new state."""
        if self.word_gates is not None and not self.training:
            h, c = hidden[0][0], hidden[1][0]
            xh = h if extra is None else torch.cat([extra, h], dim=-1)
            gates = self.word_gates.index_select(0, prev_tokens).add_(self.recurrent(xh))
            return self._lstm_cell(gates, c, h.dtype)
        x = self._embed(prev_tokens)
        return self._rnn_step(x if extra is None else torch.cat([x, extra], dim=-1), hidden)

    def _rnn_step(self, x: Tensor, hidden: RNNState) -> tuple[Tensor, RNNState]:
        """One RNN step: x (B, I) -> top-layer output (B, H) and the new state. A one-layer RNN
        runs as the library's single-step cell (one call, no sequence bookkeeping). A one-layer
        LSTM with bfloat16 weights (bf16 decoding) keeps its gates and cell state in float32, as
        the fused training loop does; only the products run in bfloat16."""
        rnn = self.rnn
        if self.layers > 1:
            out, hidden = rnn(x.unsqueeze(1), hidden)
            return out.squeeze(1), hidden
        weights = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if isinstance(rnn, nn.LSTM):
            h, c = hidden[0][0], hidden[1][0]
            if x.dtype == working_dtype(x):
                h, c = torch.lstm_cell(x, (h, c), *weights)
                return h, (h.unsqueeze(0), c.unsqueeze(0))
            gates = torch.addmm(rnn.bias_ih_l0, x, rnn.weight_ih_l0.t())
            return self._lstm_cell(gates.addmm_(h, rnn.weight_hh_l0.t()).add_(rnn.bias_hh_l0), c, x.dtype)
        h = (torch.gru_cell if isinstance(rnn, nn.GRU) else torch.rnn_tanh_cell)(x, hidden[0], *weights)
        return h, h.unsqueeze(0)

    @staticmethod
    def _lstm_cell(gates: Tensor, c: Tensor, dtype: torch.dtype) -> tuple[Tensor, RNNState]:
        """The LSTM's pointwise part from its gate pre-activations (B, 4H), in float32 at least:
        c_t = sigmoid(f) c + sigmoid(i) tanh(g), h_t = sigmoid(o) tanh(c_t); h_t in `dtype`."""
        i, f, g, o = gates.to(working_dtype(gates)).chunk(4, dim=1)  # as torch.nn.LSTM orders them
        c = torch.sigmoid(f) * c.to(i.dtype) + torch.sigmoid(i) * tanh(g)
        h = (torch.sigmoid(o) * tanh(c)).to(dtype)
        return h, (h.unsqueeze(0), c.unsqueeze(0))

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
        return s_tilde, DecoderState(hidden=hidden, input_feed=feed, attention=self._previous(alpha)), alpha

    def fused_loop(self) -> bool:
        """Whether teacher forcing with input feeding runs as one fused node (`LuongLSTMFeed`):
        a one-layer LSTM with a dot, scaled dot, general or concat score (location and
        location-aware attention run the loop of steps)."""
        return (
            self.input_feeding
            and isinstance(self.rnn, nn.LSTM)
            and self.layers == 1
            and isinstance(self.attention, (DotAttention, ScaledDotAttention, GeneralAttention, ConcatAttention))
        )

    def features(self, tgt_in, state, memory):
        if self.input_feeding:  # s~_{t-1} feeds step t: the steps must run in turn
            if not self.fused_loop():
                return super().features(tgt_in, state, memory)
            return self._features_fused(tgt_in, state, memory)
        if self.attention.reads_previous:  # each step's scores read the previous step's weights
            return super().features(tgt_in, state, memory)
        out, _ = self.rnn(self._embed(tgt_in), state.hidden)  # fused over T: (B, T, H)
        return self._attend(out, memory)  # all steps at once: (B, T, H), (B, T, S)

    def _features_fused(self, tgt_in, state, memory):
        emb = self._embed(tgt_in)  # (B, T, E)
        rnn, att = self.rnn, self.attention
        E = emb.size(-1)
        gates_x = nn.functional.linear(emb, rnn.weight_ih_l0[:, :E], rnn.bias_ih_l0 + rnn.bias_hh_l0)
        gates_x = gates_x.to(working_dtype(gates_x))  # float32 under bf16 autocast
        W_rec = torch.cat([rnn.weight_ih_l0[:, E:], rnn.weight_hh_l0], dim=1)  # (4H, 2H)
        h0, c0 = (s[0] for s in state.hidden)  # (B, H) each
        if isinstance(att, ConcatAttention):
            W_b, w_a, scale = att.W_b.weight, att.W_a.weight[0], 1.0
        else:
            W_b, w_a, scale = None, None, getattr(att, "scale", 1.0)
        W_c = self.W_c
        s_tilde, alpha = LuongLSTMFeed.apply(
            gates_x, h0, c0, W_rec, memory.keys, memory.outputs, memory.src_mask, W_c.weight, W_c.bias, W_b, w_a, scale
        )  # fmt: skip
        return s_tilde, alpha


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
        return o, DecoderState(hidden=hidden, attention=self._previous(alpha)), alpha


DECODERS = {"init": InitDecoder, "every-step": EveryStepDecoder, "luong": LuongDecoder, "bahdanau": BahdanauDecoder}
