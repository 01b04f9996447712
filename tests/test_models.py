"""The four decoder wirings with every score function: teacher-forced forward equals a loop of step,
padding changes nothing at real positions, the encoder packs, shapes and errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attnseq.batching import pad
from attnseq.config import ModelConfig, for_task, validate
from attnseq.errors import AttnseqError
from attnseq.models.seq2seq import build_model

V_SRC, V_TGT = 13, 11
COMBINATIONS = [("init", "general"), ("every-step", "general")] + [
    (d, a)
    for d in ("luong", "bahdanau")
    for a in ("dot", "scaled_dot", "general", "concat", "location", "location_aware")
]


def tiny(decoder: str, attention: str, **kw) -> ModelConfig:
    base = dict(
        rnn="lstm",
        emb_size=6,
        enc_hidden_size=8,
        dec_hidden_size=8,
        dropout=0.0,
        decoder=decoder,
        attention=attention,
        max_src_len=12,
    )
    return ModelConfig(**{**base, **kw})


def make_model(cfg: ModelConfig):
    torch.manual_seed(3)
    model = build_model(cfg, src_vocab_size=V_SRC, tgt_vocab_size=V_TGT).double().eval()
    return model


def batch():
    """Three sources of lengths 7, 4, 1 (with </s> = 3 last) and targets of lengths 5, 3, 2."""
    gen = torch.Generator().manual_seed(4)
    src = [torch.randint(4, V_SRC, (n,), generator=gen).tolist() + [3] for n in (6, 3, 0)]
    tgt = [[2] + torch.randint(4, V_TGT, (n - 1,), generator=gen).tolist() for n in (5, 3, 2)]
    return pad(src, 0), torch.tensor([len(s) for s in src]), pad(tgt, 0), [len(t) for t in tgt]


def targets(tgt_in, lengths):
    """tgt_out for `batch`: tgt_in shifted left, </s> (3) after the last real token, padding after it."""
    out = torch.zeros_like(tgt_in)
    for row, n in enumerate(lengths):
        out[row, : n - 1] = tgt_in[row, 1:n]
        out[row, n - 1] = 3
    return out


def loop_of_steps(model, src, src_lengths, tgt_in):
    memory = model.encode(src, src_lengths)
    state = model.init_state(memory)
    logits, attns = [], []
    for t in range(tgt_in.size(1)):
        step_logits, state, attn = model.step(tgt_in[:, t], state, memory)
        logits.append(step_logits)
        attns.append(attn)
    return torch.stack(logits, 1), None if attns[0] is None else torch.stack(attns, 1)


def forced_equals_steps(model):
    """The teacher-forced logits and attention of `batch` (asserted equal to a loop of `step`)."""
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        logits, attn = model.logits(src, src_lengths, tgt_in)
        ref_logits, ref_attn = loop_of_steps(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(attn, ref_attn, rtol=1e-10, atol=1e-10)
    return logits, attn


@pytest.mark.parametrize("rnn", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("decoder", "attention"), COMBINATIONS)
def test_forward_equals_loop_of_step(decoder, attention, rnn):
    model = make_model(tiny(decoder, attention, rnn=rnn))
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        logits, attn = model.logits(src, src_lengths, tgt_in)
        ref_logits, ref_attn = loop_of_steps(model, src, src_lengths, tgt_in)
    assert logits.shape == (3, tgt_in.size(1), V_TGT)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)
    if decoder in ("init", "every-step"):
        assert attn is None and ref_attn is None
    else:
        assert attn.shape == (3, tgt_in.size(1), src.size(1))
        torch.testing.assert_close(attn, ref_attn, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("attention", ["general", "concat"])
def test_luong_without_input_feeding_fast_path_equals_steps(attention):
    model = make_model(tiny("luong", attention, input_feeding=False))
    assert model.decoder.rnn.input_size == 6  # the embedding alone
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        logits, attn = model.logits(src, src_lengths, tgt_in)
        ref_logits, ref_attn = loop_of_steps(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(attn, ref_attn)


@pytest.mark.parametrize(("decoder", "attention"), COMBINATIONS)
@pytest.mark.parametrize("layers", [1, 2])
def test_padding_invariance(decoder, attention, layers):
    """Each sentence alone gives the same logits and attention as inside a padded batch."""
    model = make_model(tiny(decoder, attention, enc_layers=layers, dec_layers=layers))
    src, src_lengths, tgt_in, tgt_lengths = batch()
    with torch.no_grad():
        logits, attn = model.logits(src, src_lengths, tgt_in)
        for i in range(3):
            n, m = int(src_lengths[i]), tgt_lengths[i]
            alone, alone_attn = model.logits(src[i : i + 1, :n], src_lengths[i : i + 1], tgt_in[i : i + 1, :m])
            torch.testing.assert_close(logits[i, :m], alone[0], rtol=1e-10, atol=1e-10)
            if attn is not None:
                torch.testing.assert_close(attn[i, :m, :n], alone_attn[0], rtol=1e-10, atol=1e-10)
                assert torch.all(attn[i, :, n:] == 0.0)


def test_bidirectional_final_state_joins_both_directions():
    model = make_model(tiny("init", "general", bidirectional=True, rnn="gru"))
    src, src_lengths, _, _ = batch()
    memory = model.encode(src, src_lengths)
    half = 4
    for i, n in enumerate(src_lengths.tolist()):
        # forward direction ends at the last real token, backward direction at the first
        torch.testing.assert_close(memory.final[-1, i, :half], memory.outputs[i, n - 1, :half])
        torch.testing.assert_close(memory.final[-1, i, half:], memory.outputs[i, 0, half:])
        assert torch.all(memory.outputs[i, n:] == 0)


def test_bridge_only_when_sizes_differ():
    same = make_model(tiny("init", "general"))
    assert isinstance(same.decoder.bridge, torch.nn.Identity)
    differ = make_model(tiny("luong", "general", enc_hidden_size=10, dec_hidden_size=8))
    assert differ.decoder.bridge.weight.shape == (8, 10)


def test_every_step_feeds_the_context_vector():
    model = make_model(tiny("every-step", "general"))
    assert model.decoder.rnn.input_size == 6 + 8  # [e(y); c]


def test_bahdanau_deep_output_switch():
    deep = make_model(tiny("bahdanau", "concat"))
    shallow = make_model(tiny("bahdanau", "concat", deep_output=False))
    assert deep.decoder.W_o.weight.shape == (8, 8 + 8 + 6)  # [s_t; a_t; e(y_{t-1})]
    assert shallow.decoder.W_o is None


def test_teacher_forcing_below_one_is_seeded_and_differs_from_forcing():
    model = make_model(tiny("luong", "general"))
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        forced, _ = model.logits(src, src_lengths, tgt_in)
        torch.manual_seed(9)
        free_a, _ = model.logits(src, src_lengths, tgt_in, teacher_forcing=0.0)
        torch.manual_seed(9)
        free_b, _ = model.logits(src, src_lengths, tgt_in, teacher_forcing=0.5)
        torch.manual_seed(9)
        free_c, _ = model.logits(src, src_lengths, tgt_in, teacher_forcing=0.5)
    torch.testing.assert_close(forced[:, 0], free_a[:, 0])  # step 1 always reads <s>
    assert not torch.allclose(forced, free_a)
    assert torch.equal(free_b, free_c)


def test_dot_attention_with_unequal_sizes_is_a_config_error():
    cfg = dataclasses.replace(for_task("translate"), model=tiny("luong", "dot", enc_hidden_size=10))
    with pytest.raises(AttnseqError, match="dec_hidden_size \\(8\\) must equal model.enc_hidden_size \\(10\\)"):
        validate(cfg)


# ----------------------------------------------------------------------------- one step, by the SPEC


def lstm_cell(rnn, x, h, c):
    """One LSTM step written out from the layer's weights (gate order i, f, g, o)."""
    gates = x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def masked_softmax(e, mask):
    return torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)


def test_luong_step_by_the_equations():
    """SPEC 2.1-2.6 with general scores: s_t from [e(y_{t-1}); s~_{t-1}], attend with s_t."""
    model = make_model(tiny("luong", "general", enc_hidden_size=10))
    dec = model.decoder
    src, src_lengths, tgt_in, _ = batch()
    memory = model.encode(src, src_lengths)
    H, mask = memory.outputs, memory.src_mask  # (B, S, 10)
    state = model.init_state(memory)
    h, c = state.hidden[0][0], state.hidden[1][0]
    s_tilde = torch.zeros(3, 8, dtype=torch.float64)  # s~_0
    with torch.no_grad():
        for t in range(3):
            y_prev = tgt_in[:, t]
            h, c = lstm_cell(dec.rnn, torch.cat([dec.embedding(y_prev), s_tilde], -1), h, c)  # SPEC 2.6
            e = torch.einsum("bh,hk,bsk->bs", h, dec.attention.W_a.weight, H)  # SPEC 2.1 + 3.3
            alpha = masked_softmax(e, mask)  # SPEC 2.2
            a = torch.einsum("bs,bsk->bk", alpha, H)  # SPEC 2.3
            s_tilde = torch.tanh(torch.cat([a, h], -1) @ dec.W_c.weight.T + dec.W_c.bias)  # SPEC 2.4
            expected = s_tilde @ dec.W_y.weight.T + dec.W_y.bias  # SPEC 2.5
            logits, state, attn = model.step(y_prev, state, memory)
            torch.testing.assert_close(attn, alpha)
            torch.testing.assert_close(logits, expected)


def test_bahdanau_step_by_the_equations():
    """SPEC 4.1-4.4 with concat scores: attend with s_{t-1}, RNN reads [a_t; e(y_{t-1})], deep output."""
    model = make_model(tiny("bahdanau", "concat", enc_hidden_size=10, attn_size=5))
    dec, att = model.decoder, model.decoder.attention
    src, src_lengths, tgt_in, _ = batch()
    memory = model.encode(src, src_lengths)
    H, mask = memory.outputs, memory.src_mask
    state = model.init_state(memory)
    h, c = state.hidden[0][0], state.hidden[1][0]  # s_0
    with torch.no_grad():
        for t in range(3):
            y_prev = tgt_in[:, t]
            hidden = torch.tanh((h @ att.W_b.weight.T)[:, None, :] + H @ att.W_c.weight.T)  # (B, S, A)
            alpha = masked_softmax((hidden @ att.W_a.weight.T).squeeze(-1), mask)  # SPEC 4.1-4.2, s_{t-1}
            a = torch.einsum("bs,bsk->bk", alpha, H)
            emb = dec.embedding(y_prev)
            h, c = lstm_cell(dec.rnn, torch.cat([a, emb], -1), h, c)  # SPEC 4.3
            o = torch.tanh(torch.cat([h, a, emb], -1) @ dec.W_o.weight.T + dec.W_o.bias)  # SPEC 4.4
            expected = o @ dec.W_y.weight.T + dec.W_y.bias
            logits, state, attn = model.step(y_prev, state, memory)
            torch.testing.assert_close(attn, alpha)
            torch.testing.assert_close(logits, expected)


def test_init_and_every_step_by_the_equations():
    """SPEC 1.2 / 1.3: s_0 = bridge(c); every-step reads [e(y_{t-1}); c] at each step; o_t = s_t."""
    for decoder in ("init", "every-step"):
        model = make_model(tiny(decoder, "general", enc_hidden_size=10))
        dec = model.decoder
        src, src_lengths, tgt_in, _ = batch()
        memory = model.encode(src, src_lengths)
        c_vec = memory.final[0][-1]  # the context vector c: final h of both directions, (B, 10)
        state = model.init_state(memory)
        with torch.no_grad():
            bridged = c_vec @ dec.bridge.weight.T + dec.bridge.bias  # the learned bridge 10 -> 8
            torch.testing.assert_close(state.hidden[0][0], bridged)
            h, cell = state.hidden[0][0], state.hidden[1][0]
            for t in range(3):
                x = dec.embedding(tgt_in[:, t])
                if decoder == "every-step":
                    x = torch.cat([x, c_vec], -1)
                h, cell = lstm_cell(dec.rnn, x, h, cell)
                logits, state, attn = model.step(tgt_in[:, t], state, memory)
                assert attn is None
                torch.testing.assert_close(logits, h @ dec.W_y.weight.T + dec.W_y.bias)


def test_param_init_draws_every_weight_uniformly_and_keeps_padding_zero():
    torch.manual_seed(0)
    model = build_model(tiny("luong", "general", param_init=0.05), src_vocab_size=V_SRC, tgt_vocab_size=V_TGT)
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.05, name
    assert model.decoder.W_y.bias.abs().max() > 0.02  # drawn, not left at PyTorch's default
    for emb in (model.encoder.embedding, model.decoder.embedding):
        assert not emb.weight[emb.padding_idx].any()
    with pytest.raises(AttnseqError, match="model.param_init"):
        validate(dataclasses.replace(for_task("translate"), model=tiny("luong", "general", param_init=-0.1)))
