"""The decoding copy: a model made for search, equal to the trained one (SPEC 1-4) in what it
computes. Held equal by tests/test_fast_paths.py (::test_tabulated_word_gates_step_as_the_model_does,
::test_float32_decoding_copy_steps_as_the_model_and_leaves_the_rng_alone,
::test_float32_cell_step_is_the_lstm_cell, ::test_bf16_decoding_steps_keep_the_cell_state_and_softmax_in_float32)
and tests/test_translation.py (the copy is kept until `refresh`; int8 swaps the output layer).

A copy's step runs the decoder's reference step (`RNNDecoder._step`) with two of its RNN updates
replaced through the decoder's hooks:
- `fast_read` (`tabulated_read`): for a one-layer LSTM reading [e(y_{t-1}); extra], the word's
  part of the gate products comes from a table (`tabulate_word_gates`);
- `fast_rnn_step` (`float32_cell_step`): a one-layer LSTM with bfloat16 weights keeps its gates and
  cell state in float32, as the fused training loop does.
Both reproduce torch.nn.LSTM's cell (SPEC 1.1's RNN), in another order of the same sums.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from attnseq import runtime
from attnseq.fast.frozen import Int8Linear, pack_linears
from attnseq.modules.encoder import RNNState
from attnseq.modules.pointwise import tanh, working_dtype

if TYPE_CHECKING:
    from attnseq.models.seq2seq import Seq2Seq
    from attnseq.modules.decoder import RNNDecoder


def decoding_model(model: Seq2Seq, precision: str, *, device: torch.device) -> Seq2Seq:
    """The decoding copy a resolved decode precision runs: fp32 or bf16 (`decoding_copy` in that
    dtype), or int8: the output layer W_y dynamically quantized (`Int8Linear`, from the model's
    float32 weights; CPU only) and the rest in bfloat16 where `device` runs it natively, else in
    float32 with the decoder's recurrent product in int8 too (`int8_recurrent`)."""
    low = precision == "bf16" or (precision == "int8" and runtime.capabilities(str(device)).bf16)
    dtype = torch.bfloat16 if low else torch.float32
    return decoding_copy(model, dtype, int8_recurrent=precision == "int8" and not low, int8_output=precision == "int8")


def decoding_copy(
    model: Seq2Seq, dtype: torch.dtype = torch.bfloat16, *, int8_recurrent: bool = False, int8_output: bool = False
) -> Seq2Seq:
    """A copy of `model` for search only, in eval mode: weights cast to `dtype` once (not at every
    step, as autocast would cast them), the word part of the decoder's first-layer gates tabulated
    (`tabulate_word_gates`), a one-layer LSTM of a bfloat16 copy stepping with its cell in float32
    (`float32_cell_step`), the attention's keys and values held in float32 (`attention_dtype`; its
    batched products are too small to gain from bf16 on a CPU), and on a CPU every linear layer's
    weight reordered once for oneDNN (`fast.frozen.PackedLinear`). It computes what the model
    computes, in `dtype`; it must not be trained.

    `int8_recurrent` (CPU): where the gates were tabulated, their remaining product [extra;
    s_{t-1}] [W_ih[:, E:]; W_hh]^T runs dynamically quantized (`Int8Linear`), the largest product
    of a step once the output layer is int8 or shortlisted. It pays on a float32 copy as an
    AVX2-only CPU and gains nothing against a bfloat16 copy (docs/performance.md, "Measurements
    behind the fast paths"). `int8_output` (CPU): the output layer W_y as `Int8Linear`, quantized
    from `model`'s own weights."""
    fast = copy.deepcopy(model).to(dtype).eval()
    for module in fast.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()  # a copied library RNN's weights in one block again (cuDNN wants it)
    decoder = fast.decoder
    if torch.promote_types(dtype, torch.float32) != dtype and one_layer_lstm(decoder):
        decoder.fast_rnn_step = float32_cell_step
    if tabulate_word_gates(decoder) and int8_recurrent:
        decoder.recurrent = Int8Linear(decoder.recurrent)
    fast.attention_dtype = torch.promote_types(dtype, torch.float32)
    pack_linears(fast)
    if int8_output:
        decoder.W_y = Int8Linear(model.decoder.W_y)
    return fast


def one_layer_lstm(decoder: RNNDecoder) -> bool:
    return isinstance(decoder.rnn, nn.LSTM) and decoder.layers == 1


def tabulate_word_gates(decoder: RNNDecoder) -> bool:
    """Prepare a decoding copy's decoder, whose weights no longer change: the part of a one-layer
    LSTM's gate products that the previous word alone decides, e(y) W_ih[:, :E]^T + b_ih + b_hh, is
    tabulated for every word of the vocabulary (`decoder.word_gates`, (V, 4H)), and the rest of
    W_ih is joined with W_hh (`decoder.recurrent`), so a step (`tabulated_read`) gathers one table
    row and runs one product, [extra; s_{t-1}] times [W_ih[:, E:]; W_hh]^T, where it ran the
    embedding lookup and two products. The same sums, in another order. Returns whether this
    decoder can: a one-layer LSTM whose steps read [e(y_{t-1}); extra] through `_read` (not
    Bahdanau's [a_t; e(y_{t-1})]); the table follows the weights' dtype and is not a parameter."""
    if not one_layer_lstm(decoder) or not decoder.reads_word_first:
        return False
    rnn = decoder.rnn
    with torch.no_grad():
        E = decoder.embedding.embedding_dim
        W_ih = rnn.weight_ih_l0
        decoder.word_gates = torch.addmm(rnn.bias_ih_l0 + rnn.bias_hh_l0, decoder.embedding.weight, W_ih[:, :E].t())
        joined = torch.cat([W_ih[:, E:], rnn.weight_hh_l0], dim=1)  # (4H, extra + H)
        shape = dict(bias=False, device=joined.device, dtype=joined.dtype)  # no init: the RNG stays untouched
        decoder.recurrent = nn.utils.skip_init(nn.Linear, joined.size(1), joined.size(0), **shape)
        decoder.recurrent.weight.copy_(joined)
    decoder.fast_read = tabulated_read
    return True


def tabulated_read(
    decoder: RNNDecoder, prev_tokens: Tensor, extra: Tensor | None, hidden: RNNState
) -> tuple[Tensor, RNNState]:
    """`RNNDecoder._read` from the tabulated word gates (`tabulate_word_gates`)."""
    h, c = hidden[0][0], hidden[1][0]
    xh = h if extra is None else torch.cat([extra, h], dim=-1)
    gates = decoder.word_gates.index_select(0, prev_tokens).add_(decoder.recurrent(xh))
    return lstm_cell(gates, c, h.dtype)


def float32_cell_step(decoder: RNNDecoder, x: Tensor, hidden: RNNState) -> tuple[Tensor, RNNState]:
    """`RNNDecoder._rnn_step` of a one-layer LSTM whose input (and weights) are in a lower precision
    than float32: the products run in that precision, the gates and the cell state in float32."""
    rnn = decoder.rnn
    h, c = hidden[0][0], hidden[1][0]
    if x.dtype == working_dtype(x):
        h, c = torch.lstm_cell(x, (h, c), rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        return h, (h.unsqueeze(0), c.unsqueeze(0))
    gates = torch.addmm(rnn.bias_ih_l0, x, rnn.weight_ih_l0.t())
    return lstm_cell(gates.addmm_(h, rnn.weight_hh_l0.t()).add_(rnn.bias_hh_l0), c, x.dtype)


def lstm_cell(gates: Tensor, c: Tensor, dtype: torch.dtype) -> tuple[Tensor, RNNState]:
    """The LSTM's pointwise part from its gate pre-activations (B, 4H), in float32 at least:
    c_t = sigmoid(f) c + sigmoid(i) tanh(g), h_t = sigmoid(o) tanh(c_t); h_t in `dtype`."""
    i, f, g, o = gates.to(working_dtype(gates)).chunk(4, dim=1)  # as torch.nn.LSTM orders them
    c = torch.sigmoid(f) * c.to(i.dtype) + torch.sigmoid(i) * tanh(g)
    h = (torch.sigmoid(o) * tanh(c)).to(dtype)
    return h, (h.unsqueeze(0), c.unsqueeze(0))
