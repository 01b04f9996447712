"""The teacher-forced Luong decoder with input feeding (SPEC 2.1-2.4, 2.6) as one autograd node.

Reproduces `LuongDecoder.features` (the loop of `LuongDecoder._step`) for a one-layer LSTM and a
score with a `ScoreForm` (dot, scaled dot, general, concat); held equal, outputs and every
parameter's gradient, by tests/test_fast_paths.py::test_fused_input_feeding_equals_autograd_through_steps.
`luong_lstm_features_for` says whether a decoder has this form; `attnseq.fast.accelerate` installs it.

With input feeding, s~_{t-1} enters step t, so no library RNN can run the steps at once. Left to
autograd, every step records a dozen small nodes, and every step adds its own copy of each weight
gradient. Here the forward pass runs the loop without recording it, keeping what the backward pass
needs in (B, T, .) buffers; the backward pass runs the loop in reverse with the derivatives written
out, and computes each weight gradient once, as one matrix product over all steps.

The mathematics is exactly that of `LuongDecoder._step` with torch.nn.LSTM's cell (gates i, f, g,
o, as `torch.nn.LSTM` orders them); the cell is written out here because the backward pass needs
its activations:

    gates_t = W_ih [e(y_{t-1}); s~_{t-1}] + b_ih + W_hh h_{t-1} + b_hh
    c_t = f * c_{t-1} + i * g ;  h_t = o * tanh(c_t)
    alpha_t = softmax(score(h_t, keys)) over real source positions;  a_t = sum_i alpha_ti h_i
    s~_t = tanh(W_c [a_t; h_t] + b_c)

The embedding part of the gates (and both biases) is computed outside, for all steps at once, so
its gradient is ordinary autograd. Scores as the attention describes them (`Attention.score_form`):
"dot" (dot / scaled dot / general: a scaled product with the precomputed keys) and "concat"
(w_a^T tanh(W_b h_t + keys)).

Under bf16 autocast the matrix products run in bfloat16 and the cell state, gates and softmax
in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnseq.modules.decoder import DecoderState, LuongDecoder
from attnseq.modules.encoder import Memory
from attnseq.modules.pointwise import tanh, working_dtype


def _mm(x: Tensor, w: Tensor, dtype: torch.dtype) -> Tensor:
    """x @ w computed in `dtype` (the matmul precision), returned in x's working dtype."""
    if x.dtype == dtype:
        return x @ w
    return (x.to(dtype) @ w.to(dtype)).to(x.dtype)


def _bmm(x: Tensor, y: Tensor, dtype: torch.dtype) -> Tensor:
    if x.dtype == dtype:
        return torch.bmm(x, y)
    return torch.bmm(x.to(dtype), y.to(dtype)).to(x.dtype)


class LuongLSTMFeed(torch.autograd.Function):
    """apply(gates_x, h0, c0, W_rec, keys, values, mask, W_c, b_c, W_b, w_a, scale) -> (s~, alpha).

    gates_x (B, T, 4H): W_ih[:, :E] e(y_{t-1}) + b_ih + b_hh for every step.
    h0, c0 (B, H): the initial LSTM state.  W_rec (4H, 2H): [W_ih[:, E:], W_hh].
    keys (B, S, K), values (B, S, Hv), mask (B, S) bool (True at real tokens).
    W_c (H, Hv + H), b_c (H,).  Concat attention: W_b (A, H), w_a (A,), keys (B, S, A);
    otherwise W_b and w_a are None and score = scale * h_t . key_i.
    Returns s~ (B, T, H) and the attention weights (B, T, S).
    """

    @staticmethod
    def forward(ctx, gates_x, h0, c0, W_rec, keys, values, mask, W_c, b_c, W_b, w_a, scale):
        device_type = gates_x.device.type
        work = working_dtype(gates_x)
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else work
        with torch.autocast(device_type, enabled=False):
            gates_x, h0, c0 = gates_x.to(work), h0.to(work), c0.to(work)
            batch, steps, four_h = gates_x.shape
            hidden = four_h // 4
            hv = values.size(-1)
            concat = W_b is not None
            W_rec_t = W_rec.to(dtype).t()
            W_c_t = W_c.to(dtype).t()
            keys_c, values_c = keys.to(dtype), values.to(dtype)
            keys_t = None if concat else keys_c.transpose(1, 2)  # (B, K, S)
            neg_mask = ~mask
            # XR[:, t] = [s~_{t-1}; h_{t-1}], AH[:, t] = [a_t; h_t]: the inputs of W_rec and W_c
            XR = gates_x.new_zeros(batch, steps, 2 * hidden)
            AH = gates_x.new_empty(batch, steps, hv + hidden)
            ACT = gates_x.new_empty(batch, steps, four_h)  # i, f, g, o after their nonlinearity
            C = gates_x.new_empty(batch, steps, hidden)
            ST = gates_x.new_empty(batch, steps, hidden)
            ALPHA = gates_x.new_empty(batch, steps, mask.size(1))
            U = gates_x.new_empty(batch, steps, *keys.shape[1:]) if concat else None  # tanh(W_b h + keys)
            W_b_t = W_b.to(dtype).t() if concat else None
            XR[:, 0, hidden:] = h0
            c = c0
            for t in range(steps):
                gates = gates_x[:, t] + _mm(XR[:, t], W_rec_t, dtype)  # (B, 4H)
                act = ACT[:, t]
                torch.sigmoid(gates, out=act)
                act[:, 2 * hidden : 3 * hidden] = tanh(gates[:, 2 * hidden : 3 * hidden])
                i, f, g, o = act.chunk(4, dim=1)
                c = f * c + i * g
                C[:, t] = c
                h = o * tanh(c)
                AH[:, t, hv:] = h
                if concat:
                    u = tanh(_mm(h, W_b_t, dtype).unsqueeze(1) + keys_c)  # (B, S, A)
                    U[:, t] = u
                    e = u @ w_a.to(work)  # (B, S)
                else:
                    e = _bmm(h.unsqueeze(1), keys_t, dtype).squeeze(1) * scale  # (B, S)
                e = e.masked_fill(neg_mask, float("-inf"))
                alpha = torch.softmax(e, dim=-1)
                ALPHA[:, t] = alpha
                a = _bmm(alpha.unsqueeze(1), values_c, dtype).squeeze(1)  # (B, Hv)
                AH[:, t, :hv] = a
                s_tilde = tanh(_mm(AH[:, t], W_c_t, dtype) + b_c.to(work))
                ST[:, t] = s_tilde
                if t + 1 < steps:
                    XR[:, t + 1, :hidden] = s_tilde
                    XR[:, t + 1, hidden:] = h
        ctx.dtype, ctx.scale, ctx.concat = dtype, scale, concat
        ctx.save_for_backward(XR, AH, ACT, C, ST, ALPHA, U, c0, W_rec, keys, values, W_c, W_b, w_a)
        return ST, ALPHA

    @staticmethod
    def backward(ctx, dST, dALPHA):
        XR, AH, ACT, C, ST, ALPHA, U, c0, W_rec, keys, values, W_c, W_b, w_a = ctx.saved_tensors
        dtype, scale, concat = ctx.dtype, ctx.scale, ctx.concat
        device_type = XR.device.type
        with torch.autocast(device_type, enabled=False):
            batch, steps, _ = XR.shape
            hidden = XR.size(-1) // 2
            hv = values.size(-1)
            work = XR.dtype
            dST = torch.zeros_like(ST) if dST is None else dST.to(work)
            W_rec_c, W_c_c = W_rec.to(dtype), W_c.to(dtype)
            keys_c, values_t = keys.to(dtype), values.to(dtype).transpose(1, 2)  # (B, Hv, S)
            dG = torch.empty_like(ACT)  # d gates
            dZ = torch.empty_like(ST)  # d (W_c [a; h] + b_c)
            dE = torch.empty_like(ALPHA)  # d scores
            dA = XR.new_empty(batch, steps, hv)  # d a_t
            dUsum = XR.new_empty(batch, steps, W_b.size(0)) if concat else None  # sum over S of d (W_b h + keys)
            dkeys_concat = torch.zeros_like(keys, dtype=work) if concat else None
            dw_a = torch.zeros_like(w_a, dtype=work) if concat else None
            W_b_c = W_b.to(dtype) if concat else None
            w_a_f = w_a.to(work) if concat else None
            d_feed = XR.new_zeros(batch, hidden)  # d s~_t from step t + 1's input
            dh_next = XR.new_zeros(batch, hidden)
            dc_next = XR.new_zeros(batch, hidden)
            for t in reversed(range(steps)):
                s_tilde = ST[:, t]
                dz = (dST[:, t] + d_feed) * (1 - s_tilde * s_tilde)
                dZ[:, t] = dz
                dah = _mm(dz, W_c_c, dtype)  # (B, Hv + H)
                da = dah[:, :hv]
                dA[:, t] = da
                dh = dah[:, hv:] + dh_next
                alpha = ALPHA[:, t]
                dalpha = _bmm(da.unsqueeze(1), values_t, dtype).squeeze(1)  # (B, S)
                if dALPHA is not None:
                    dalpha = dalpha + dALPHA[:, t].to(work)
                de = alpha * (dalpha - (alpha * dalpha).sum(-1, keepdim=True))
                dE[:, t] = de
                if concat:
                    u = U[:, t]
                    du = de.unsqueeze(-1) * w_a_f * (1 - u * u)  # (B, S, A)
                    dkeys_concat += du
                    dw_a += (de.unsqueeze(-1) * u).sum((0, 1))
                    du_sum = du.sum(1)
                    dUsum[:, t] = du_sum
                    dh = dh + _mm(du_sum, W_b_c, dtype)
                else:
                    dh = dh + _bmm(de.unsqueeze(1), keys_c, dtype).squeeze(1) * scale
                i, f, g, o = ACT[:, t].chunk(4, dim=1)
                c = C[:, t]
                c_prev = C[:, t - 1] if t > 0 else c0.to(work)
                tanh_c = tanh(c)
                dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
                dgates = dG[:, t]
                dgates[:, :hidden] = dc * g * i * (1 - i)
                dgates[:, hidden : 2 * hidden] = dc * c_prev * f * (1 - f)
                dgates[:, 2 * hidden : 3 * hidden] = dc * i * (1 - g * g)
                dgates[:, 3 * hidden :] = dh * tanh_c * o * (1 - o)
                dc_next = dc * f
                dxr = _mm(dgates, W_rec_c, dtype)  # (B, 2H): d [s~_{t-1}; h_{t-1}]
                d_feed, dh_next = dxr[:, :hidden], dxr[:, hidden:]
            # weight gradients: one product over all steps each
            dW_rec = _mm(dG.reshape(-1, dG.size(-1)).t(), XR.reshape(-1, XR.size(-1)), dtype)
            dW_c = _mm(dZ.reshape(-1, hidden).t(), AH.reshape(-1, AH.size(-1)), dtype)
            db_c = dZ.sum((0, 1))
            H_all = AH[:, :, hv:]
            dvalues = _bmm(ALPHA.transpose(1, 2), dA, dtype)  # (B, S, Hv)
            if concat:
                dkeys = dkeys_concat
                dW_b = _mm(dUsum.reshape(-1, dUsum.size(-1)).t(), H_all.reshape(-1, hidden), dtype)
            else:
                dkeys = _bmm(dE.transpose(1, 2), H_all, dtype) * scale  # (B, S, K)
                dW_b = None
        return (
            dG, dh_next, dc_next, dW_rec.to(W_rec.dtype), dkeys.to(keys.dtype), dvalues.to(values.dtype), None,
            dW_c.to(W_c.dtype), db_c, None if dW_b is None else dW_b.to(W_b.dtype),
            None if dw_a is None else dw_a.to(w_a.dtype), None,
        )  # fmt: skip


def luong_lstm_features_for(decoder: nn.Module) -> Callable | None:
    """`luong_lstm_features` where `decoder` has its form: Luong with input feeding over a one-layer
    LSTM, with an attention that describes its score (`Attention.score_form`; location and
    location-aware attention do not); else None."""
    if not isinstance(decoder, LuongDecoder) or not decoder.input_feeding:
        return None
    if not isinstance(decoder.rnn, nn.LSTM) or decoder.layers != 1 or decoder.attention.score_form() is None:
        return None
    return luong_lstm_features


def luong_lstm_features(decoder: LuongDecoder, tgt_in: Tensor, state: DecoderState, memory: Memory):
    """`decoder.features(tgt_in, state, memory)` through `LuongLSTMFeed`: s~ (B, T, H), alpha (B, T, S)."""
    emb = decoder._embed(tgt_in)  # (B, T, E)
    rnn = decoder.rnn
    E = emb.size(-1)
    gates_x = nn.functional.linear(emb, rnn.weight_ih_l0[:, :E], rnn.bias_ih_l0 + rnn.bias_hh_l0)
    gates_x = gates_x.to(working_dtype(gates_x))  # float32 under bf16 autocast
    W_rec = torch.cat([rnn.weight_ih_l0[:, E:], rnn.weight_hh_l0], dim=1)  # (4H, 2H)
    h0, c0 = (s[0] for s in state.hidden)  # (B, H) each
    form = decoder.attention.score_form()
    W_b, w_a = (form.W_b, form.w_a) if form.kind == "concat" else (None, None)
    W_c = decoder.W_c
    s_tilde, alpha = LuongLSTMFeed.apply(
        gates_x, h0, c0, W_rec, memory.keys, memory.outputs, memory.src_mask, W_c.weight, W_c.bias, W_b, w_a,
        form.scale,
    )  # fmt: skip
    return s_tilde, alpha
