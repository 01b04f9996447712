"""Every fast path (attnseq.fast) computes what the reference in modules/ and models/ computes.

- `accelerate` installs exactly the forms a model's pieces have, and nothing else changes: no
  parameter, no draw from the RNG.
- Luong with input feeding (LSTM) runs as one hand-differentiated node (fast/fused.py): its
  outputs and every parameter's gradient equal autograd through the loop of `step`, and through
  the reference `features`.
- The loss: `cross_entropy_sum` and `linear_cross_entropy_sum` equal `label_smoothed_nll` of the
  softmax (modules/loss.py) and torch's cross-entropy with label smoothing, value and gradient;
  an accelerated `Seq2Seq.loss` equals the reference one, value and gradients, and the
  cross-entropy of `forward`'s logits at the real target positions.
- A decoding copy with its word gates tabulated steps exactly as the model does; in float32, with
  its linear layers packed for oneDNN, it steps as the model does and draws nothing from the RNG;
  the float32 LSTM cell of a bfloat16 copy is the LSTM cell.
- bf16 decoding (a bfloat16 copy of the model) keeps the LSTM cell state, the attention's keys and
  values and its softmax in float32 and stays close to float32 decoding.
- The tanh of decoding and of the fused loop (2 sigmoid(2x) - 1 outside autograd) equals torch.tanh.
"""

from __future__ import annotations

import copy

import pytest
import torch

from attnseq.fast.accelerate import accelerate
from attnseq.fast.decoding import decoding_copy, float32_cell_step, lstm_cell, tabulate_word_gates
from attnseq.fast.frozen import PackedLinear, can_pack, pack_weight
from attnseq.fast.fused import luong_lstm_features, luong_lstm_features_for
from attnseq.fast.loss import cross_entropy_sum, linear_cross_entropy_sum, readout_loss
from attnseq.modules.loss import label_smoothed_nll
from attnseq.modules.pointwise import tanh
from tests.conftest import needs_native_bf16
from tests.test_models import V_TGT, batch, loop_of_steps, make_model, targets, tiny

FUSED = ["dot", "scaled_dot", "general", "concat"]
HOOKS = ("fast_features", "fast_loss", "fast_logits_loss")


def reference(model):
    """A copy of `model` with no fast form installed: what modules/ and models/ compute alone."""
    plain = copy.deepcopy(model)
    for hook in HOOKS:
        setattr(plain, hook, None)
    return plain


def test_accelerate_installs_what_the_model_has():
    fused = make_model(tiny("luong", "general", input_feeding=True))
    rng = torch.get_rng_state()
    before = {k: v.clone() for k, v in fused.state_dict().items()}
    assert accelerate(reference(fused)).fast_features is luong_lstm_features
    assert torch.equal(rng, torch.get_rng_state())
    after = accelerate(fused).state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    for kw in (dict(decoder="bahdanau"), dict(decoder="luong", input_feeding=False), dict(decoder="init")):
        model = accelerate(reference(make_model(tiny(attention="general", **kw))))
        assert model.fast_features is None, kw
        assert (model.fast_loss, model.fast_logits_loss) == (readout_loss, cross_entropy_sum)
    plain = torch.nn.Linear(2, 2)  # a model without fast forms (a classifier) comes back as it was
    assert accelerate(plain) is plain and not any(hasattr(plain, hook) for hook in HOOKS)


def grads_of(model, fn):
    model.zero_grad()
    logits, attn = fn()
    # a loss on the attention weights too, so their gradient path is checked
    (logits.sin().sum() + (attn**2).sum()).backward()
    return logits.detach(), attn.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("attention", FUSED)
def test_fused_input_feeding_equals_autograd_through_steps(attention):
    """fast/fused.py against SPEC 2.1-2.4, 2.6 as `LuongDecoder._step` and `features` compute it."""
    model = accelerate(make_model(tiny("luong", attention, input_feeding=True, attn_size=5)))
    assert model.fast_features is luong_lstm_features
    plain = reference(model)
    src, src_lengths, tgt_in, _ = batch()
    fused = grads_of(model, lambda: model.logits(src, src_lengths, tgt_in))
    stepped = grads_of(model, lambda: loop_of_steps(model, src, src_lengths, tgt_in))
    featured = grads_of(plain, lambda: plain.logits(src, src_lengths, tgt_in))
    for other in (stepped, featured):
        torch.testing.assert_close(fused[0], other[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(fused[1], other[1], rtol=1e-10, atol=1e-10)
        assert fused[2].keys() == other[2].keys()
        for name in fused[2]:
            torch.testing.assert_close(fused[2][name], other[2][name], rtol=1e-9, atol=1e-10, msg=name)
    assert any(g.abs().sum() > 0 for g in fused[2].values())


@pytest.mark.parametrize(
    "kw", [dict(attention="location"), dict(attention="general", rnn="gru"), dict(attention="general", dec_layers=2)]
)
def test_other_wirings_keep_the_step_loop(kw):
    model = make_model(tiny("luong", input_feeding=True, **{"attention": "general", **kw}))
    assert luong_lstm_features_for(model.decoder) is None and accelerate(model).fast_features is None


def test_fused_input_feeding_under_bf16_autocast_stays_close():
    model = make_model(tiny("luong", "general", input_feeding=True)).float()
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        ref, _ = model.logits(src, src_lengths, tgt_in)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, attn = model.logits(src, src_lengths, tgt_in)
    assert fast.dtype == torch.bfloat16 and torch.allclose(attn.float().sum(-1), torch.ones(3, tgt_in.size(1)))
    assert (fast.float() - ref).abs().max() < 0.05
    assert not torch.equal(fast.float(), ref)  # the products did run in bfloat16


@needs_native_bf16
@pytest.mark.parametrize("attention", ["general", "concat", "scaled_dot"])
def test_bf16_decoding_steps_keep_the_cell_state_and_softmax_in_float32(attention):
    model = make_model(tiny("luong", attention, input_feeding=True, attn_size=5)).float()
    src, src_lengths, tgt_in, _ = batch()
    fast = decoding_copy(model, torch.bfloat16)  # what decode.precision bf16 runs
    assert fast.decoder.word_gates is not None and fast.attention_dtype == torch.float32
    with torch.no_grad():
        ref, _ = loop_of_steps(model, src, src_lengths, tgt_in)
        low, attn = loop_of_steps(fast, src, src_lengths, tgt_in)
        memory = fast.encode(src, src_lengths)
        _, state, _ = fast.step(tgt_in[:, 0], fast.init_state(memory), memory)
    h, c = state.hidden
    assert (h.dtype, c.dtype, attn.dtype, low.dtype) == (torch.bfloat16, torch.float32, torch.float32, torch.bfloat16)
    assert memory.keys.dtype == memory.outputs.dtype == torch.float32 and state.input_feed.dtype == torch.bfloat16
    assert torch.allclose(attn.sum(-1), torch.ones(3, tgt_in.size(1)))
    assert (low.float() - ref).abs().max() < 0.05
    assert not torch.equal(low.float(), ref)  # the products did run in bfloat16


def assert_steps_alike(model, other, tol):
    """A loop of `step` gives the same logits and attention with both models."""
    src, src_lengths, tgt_in, _ = batch()
    with torch.no_grad():
        pairs = zip(loop_of_steps(model, src, src_lengths, tgt_in), loop_of_steps(other, src, src_lengths, tgt_in))
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "kw",
    [
        dict(decoder="init"),
        dict(decoder="every-step"),
        dict(decoder="luong", input_feeding=True),
        dict(decoder="luong", input_feeding=False),
    ],  # fmt: skip
)
def test_tabulated_word_gates_step_as_the_model_does(kw):
    model = make_model(tiny(attention="general", **kw))
    copied = copy.deepcopy(model)
    assert tabulate_word_gates(copied.decoder) and copied.decoder.word_gates.shape == (V_TGT, 4 * 8)
    assert_steps_alike(model, copied, tol=1e-12)
    assert not any(k.startswith("decoder.word_gates") for k in copied.state_dict())  # not a parameter


@pytest.mark.parametrize(
    "kw", [dict(decoder="bahdanau"), dict(decoder="luong", rnn="gru"), dict(decoder="luong", dec_layers=2)]
)
def test_word_gates_only_for_a_one_layer_lstm_reading_the_word_first(kw):
    model = make_model(tiny(attention="general", **kw))
    assert not tabulate_word_gates(model.decoder) and model.decoder.fast_read is None
    assert not hasattr(model.decoder, "word_gates")


@pytest.mark.parametrize("attention", ["general", "concat"])
def test_float32_decoding_copy_steps_as_the_model_and_leaves_the_rng_alone(attention):
    model = make_model(tiny("luong", attention, input_feeding=True, attn_size=5)).float()
    rng = torch.get_rng_state()
    fast = decoding_copy(model, torch.float32)  # what decode.precision fp32 runs
    assert torch.equal(rng, torch.get_rng_state())  # training's random stream goes on as without it
    packed = [m for m in fast.modules() if isinstance(m, PackedLinear)]
    assert len(packed) == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) + 1  # + the recurrent layer
    assert_steps_alike(model, fast, tol=1e-5)


def test_float32_cell_step_is_the_lstm_cell():
    """The step of a bfloat16 copy's LSTM (fast/decoding.py): products in bfloat16, gates and cell
    state in float32, equal to torch's LSTM cell on the same bfloat16 numbers; a full-precision
    input takes torch's cell itself."""
    model = make_model(tiny("bahdanau", "general"))
    decoder = model.decoder
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, decoder.rnn.input_size, generator=gen, dtype=torch.float64)
    h, c = (torch.randn(1, 3, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    weights = (decoder.rnn.weight_ih_l0, decoder.rnn.weight_hh_l0, decoder.rnn.bias_ih_l0, decoder.rnn.bias_hh_l0)
    with torch.no_grad():
        want_h, want_c = torch.lstm_cell(x, (h[0], c[0]), *weights)
        out, (h1, c1) = float32_cell_step(decoder, x, (h, c))  # float64: torch's cell
        assert torch.equal(out, want_h) and torch.equal(c1[0], want_c)
        low = copy.deepcopy(decoder).bfloat16()
        xb, hb = x.bfloat16(), h.bfloat16()
        out, (h1, c1) = float32_cell_step(low, xb, (hb, c.float()))
        assert (out.dtype, c1.dtype) == (torch.bfloat16, torch.float32)
        up = [w.double() for w in (low.rnn.weight_ih_l0, low.rnn.weight_hh_l0, low.rnn.bias_ih_l0, low.rnn.bias_hh_l0)]
        want_h, want_c = torch.lstm_cell(xb.double(), (hb[0].double(), c[0].float().double()), *up)
        torch.testing.assert_close(c1[0].double(), want_c, rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(out.double(), want_h, rtol=2e-2, atol=2e-2)
        gates = torch.randn(3, 32, generator=gen, dtype=torch.float64)
        i, f, g, o = gates.chunk(4, dim=1)
        cell = torch.sigmoid(f) * c[0] + torch.sigmoid(i) * torch.tanh(g)
        got_h, (_, got_c) = lstm_cell(gates, c[0], torch.float64)
        torch.testing.assert_close(got_c[0], cell, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_h, torch.sigmoid(o) * torch.tanh(cell), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=needs_native_bf16)])
def test_packed_linear_equals_linear(dtype):
    linear = torch.nn.Linear(7, 5).to(dtype)
    packed = PackedLinear(linear)
    x = torch.randn(2, 3, 7).to(dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(packed(x), linear(x), rtol=tol, atol=tol)
    assert packed(x).dtype == dtype and not list(packed.parameters())
    with pytest.raises(ValueError, match="cannot pack"):
        PackedLinear(torch.nn.Linear(7, 5).double())


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk_rows", [0, 1, 7, 1000])
def test_fused_losses_equal_the_reference(eps, chunk_rows):
    """fast/loss.py against `label_smoothed_nll` of the softmax (modules/loss.py), which is torch's
    label-smoothed cross-entropy: value and gradients."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(23, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(17, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(17, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randint(0, 17, (23,), generator=gen)
    ref = label_smoothed_nll(torch.log_softmax(x @ w.T + b, dim=-1), y, eps)
    torch_ref = torch.nn.functional.cross_entropy(x @ w.T + b, y, label_smoothing=eps, reduction="sum")
    torch.testing.assert_close(ref, torch_ref, rtol=1e-12, atol=1e-12)
    ref_grads = torch.autograd.grad(2.5 * ref, (x, w, b))
    for got, want in zip(torch.autograd.grad(2.5 * torch_ref, (x, w, b)), ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    fused = linear_cross_entropy_sum(x, w, b, y, eps, chunk_rows=chunk_rows)
    torch.testing.assert_close(fused, ref)
    for got, want in zip(torch.autograd.grad(2.5 * fused, (x, w, b)), ref_grads):
        torch.testing.assert_close(got, want)
    logits = (x @ w.T + b).detach().requires_grad_()
    plain = cross_entropy_sum(logits, y, eps)
    torch.testing.assert_close(plain, ref)
    (g,) = torch.autograd.grad(2.5 * plain, logits)
    (want,) = torch.autograd.grad(2.5 * label_smoothed_nll(torch.log_softmax(logits, -1), y, eps), logits)
    torch.testing.assert_close(g, want)


@pytest.mark.skipif(not can_pack(torch.empty(1, 1)), reason="oneDNN packs no float32 weights on this CPU")
def test_the_packed_output_product_equals_the_plain_one(monkeypatch):
    """On a CPU whose oneDNN packs float32, a step of at least two chunks takes each chunk's logits
    from the weight reordered once (fast.loss._output_product); loss and gradients equal the float64
    reference. A step of one chunk keeps the plain product (the reorder would cost more)."""
    import attnseq.fast.loss as loss_module

    packed = []
    monkeypatch.setattr(loss_module, "pack_weight", lambda w: packed.append(w.shape) or pack_weight(w))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 64, dtype=torch.float64, generator=gen).requires_grad_()
    w = (torch.randn(500, 64, dtype=torch.float64, generator=gen) * 0.1).requires_grad_()
    b = torch.randn(500, dtype=torch.float64, generator=gen).requires_grad_()
    y = torch.randint(0, 500, (300,), generator=gen)
    ref = torch.nn.functional.cross_entropy(x @ w.T + b, y, label_smoothing=0.1, reduction="sum")
    ref_grads = torch.autograd.grad(ref, (x, w, b))
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, w, b))
    fused = linear_cross_entropy_sum(x32, w32, b32, y, 0.1, chunk_rows=64)
    torch.testing.assert_close(fused.double(), ref, rtol=1e-5, atol=1e-3)
    for got, want in zip(torch.autograd.grad(fused, (x32, w32, b32)), ref_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    assert packed == [(500, 64)]
    linear_cross_entropy_sum(x32, w32, b32, y, 0.1, chunk_rows=200)  # 300 rows: fewer than two chunks
    assert packed == [(500, 64)]


@pytest.mark.parametrize("teacher_forcing", [1.0, 0.5])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize(
    ("decoder", "attention"), [("luong", "general"), ("luong", "concat"), ("bahdanau", "concat"), ("init", "dot")]
)
def test_accelerated_loss_equals_the_reference_loss(decoder, attention, eps, teacher_forcing):
    """`Seq2Seq.loss` through every fast form `accelerate` installs equals it through the reference
    (`decoder.features`, `decoder.loss`, `label_smoothed_nll`): value and every gradient."""
    model = accelerate(make_model(tiny(decoder, attention, input_feeding=True, attn_size=5)))
    plain = reference(model)
    src, src_lengths, tgt_in, tgt_lengths = batch()
    tgt_out = targets(tgt_in, tgt_lengths)
    results = []
    for m in (model, plain):
        m.zero_grad()
        torch.manual_seed(5)  # teacher forcing < 1 draws which steps read the reference
        loss = m.loss(src, src_lengths, tgt_in, tgt_out, pad_id=0, label_smoothing=eps, teacher_forcing=teacher_forcing)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    (fast, fast_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize(("decoder", "attention"), [("luong", "general"), ("bahdanau", "concat"), ("init", "dot")])
def test_model_loss_scores_only_real_positions(decoder, attention):
    model = make_model(tiny(decoder, attention))
    src, src_lengths, tgt_in, tgt_lengths = batch()
    tgt_out = targets(tgt_in, tgt_lengths)
    logits, _ = model.logits(src, src_lengths, tgt_in)
    want = torch.nn.functional.cross_entropy(
        logits.reshape(-1, V_TGT), tgt_out.reshape(-1), ignore_index=0, label_smoothing=0.1, reduction="sum"
    )
    got = model.loss(src, src_lengths, tgt_in, tgt_out, pad_id=0, label_smoothing=0.1)
    torch.testing.assert_close(got, want)


def test_pointwise_tanh_equals_torch_tanh():
    """Decoding's tanh (2 sigmoid(2x) - 1 outside autograd on a CPU) equals torch.tanh to float32
    rounding, rounds bfloat16 once, saturates at +-1, and under autograd is torch.tanh itself."""
    x = torch.cat([torch.linspace(-30, 30, 20001), torch.tensor([0.0, 1e-30, -1e-8, 88.0, -88.0, 1e4, -1e4])])
    with torch.no_grad():
        torch.testing.assert_close(tanh(x), torch.tanh(x), rtol=0, atol=3e-7)
        torch.testing.assert_close(tanh(x.double()), torch.tanh(x.double()), rtol=0, atol=1e-15)
        assert tanh(x.bfloat16()).dtype == torch.bfloat16
        torch.testing.assert_close(tanh(x.bfloat16()).float(), torch.tanh(x.bfloat16()).float(), rtol=8e-3, atol=1e-6)
        assert tanh(torch.tensor([1e4, -1e4])).tolist() == [1.0, -1.0]
    y = x.clone().requires_grad_()
    tanh(y).sum().backward()
    torch.testing.assert_close(y.grad, 1 - torch.tanh(x) ** 2)
