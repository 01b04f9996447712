"""On a CUDA GPU (skipped without one): the model, its fused training loop, bf16 autocast, search,
training and the command line compute there what they compute on the CPU.

The float32 references run on the CPU; on the GPU the products are float32 too (torch leaves TF32
off for matrix products), so logits and gradients agree to float32 rounding, and the searched
tokens are the same.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from attnseq.cli import main
from attnseq.decoding import beam_search, greedy_search
from attnseq.errors import AttnseqError
from attnseq.fast.decoding import decoding_copy
from attnseq.predict import load_model_dir
from attnseq.tasks.translation import Translator
from attnseq.trainer import Trainer
from tests.test_models import V_TGT, batch, targets, tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
WIRINGS = [("luong", "general", True), ("luong", "concat", True), ("bahdanau", "concat", True),
           ("every-step", "general", False), ("luong", "location", True)]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_tf32():
    """cuDNN may run float32 RNNs in TF32; the comparisons here are of float32 with float32."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


def cpu_and_cuda(decoder: str, attention: str, input_feeding: bool):
    from attnseq.fast.accelerate import accelerate
    from attnseq.models.seq2seq import build_model

    torch.manual_seed(3)
    cfg = tiny(decoder, attention, input_feeding=input_feeding, emb_size=16, enc_hidden_size=24, dec_hidden_size=24)
    cpu = accelerate(build_model(cfg, src_vocab_size=13, tgt_vocab_size=V_TGT)).float().train()  # the fused paths too
    return cpu, copy.deepcopy(cpu).to(CUDA)


def loss_and_grads(model, device, src, src_lengths, tgt_in, tgt_out, precision="fp32"):
    model.zero_grad()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model.loss(src.to(device), src_lengths, tgt_in.to(device), tgt_out.to(device), pad_id=0,
                          label_smoothing=0.1)  # fmt: skip
    loss.backward()
    return loss.detach().cpu(), {n: p.grad.detach().cpu() for n, p in model.named_parameters()}


@pytest.mark.parametrize(("decoder", "attention", "input_feeding"), WIRINGS)
def test_loss_and_gradients_on_cuda_equal_the_cpu(decoder, attention, input_feeding):
    cpu, gpu = cpu_and_cuda(decoder, attention, input_feeding)
    for model in (cpu, gpu):
        for m in model.modules():  # dropout off, training-mode code paths on
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    src, src_lengths, tgt_in, lengths = batch()
    tgt_out = targets(tgt_in, lengths)
    ref_loss, ref_grads = loss_and_grads(cpu, torch.device("cpu"), src, src_lengths, tgt_in, tgt_out)
    loss, grads = loss_and_grads(gpu, CUDA, src, src_lengths, tgt_in, tgt_out)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    assert any(g.abs().sum() > 0 for g in grads.values())

    bf16_loss, bf16_grads = loss_and_grads(gpu, CUDA, src, src_lengths, tgt_in, tgt_out, precision="bf16")
    torch.testing.assert_close(bf16_loss, ref_loss, rtol=2e-2, atol=2e-2)
    assert all(torch.isfinite(g).all() for g in bf16_grads.values())


@pytest.mark.parametrize(("decoder", "attention", "input_feeding"), WIRINGS)
def test_search_on_cuda_finds_what_the_cpu_finds(decoder, attention, input_feeding):
    cpu, gpu = cpu_and_cuda(decoder, attention, input_feeding)
    src, src_lengths, _, _ = batch()
    specials = dict(bos_id=2, eos_id=3, pad_id=0, max_len=torch.tensor([9, 6, 4]))
    with torch.inference_mode():
        copies = {"cpu": decoding_copy(cpu, torch.float32), "cuda": decoding_copy(gpu, torch.float32)}
        at = {"cpu": src, "cuda": src.to(CUDA)}
        g = {d: greedy_search(m, at[d], src_lengths, **specials) for d, m in copies.items()}
        b = {d: beam_search(m, at[d], src_lengths, beam_size=3, n_best=3, penalty="gnmt", alpha=0.6, **specials)
             for d, m in copies.items()}  # fmt: skip
        bf16 = greedy_search(decoding_copy(gpu, torch.bfloat16), src.to(CUDA), src_lengths, **specials)
    assert [h.tokens for (h,) in g["cuda"]] == [h.tokens for (h,) in g["cpu"]]
    assert [h.score for (h,) in g["cuda"]] == pytest.approx([h.score for (h,) in g["cpu"]], abs=1e-4)
    for hyps_gpu, hyps_cpu in zip(b["cuda"], b["cpu"], strict=True):
        assert [h.tokens for h in hyps_gpu] == [h.tokens for h in hyps_cpu]
        assert [h.score for h in hyps_gpu] == pytest.approx([h.score for h in hyps_cpu], abs=1e-4)
    assert all(h.attention is None or h.attention.device.type == "cuda" for (h,) in bf16)
    assert [h.score for (h,) in bf16] == pytest.approx([h.score for (h,) in g["cpu"]], rel=5e-2, abs=5e-2)


def test_training_on_cuda_in_bf16_end_to_end(tmp_path, tiny_config):
    """A bf16 run on the GPU learns and saves; its model loads on the CPU and translates as on the GPU."""
    cfg = tiny_config("train.device=cuda", "train.precision=bf16", "train.max_steps=60", "train.lr=0.005",
                      "train.valid_max_sentences=30", "decode.precision=bf16")  # fmt: skip
    result = Trainer(cfg, tmp_path / "run", progress_bar=False).fit()
    assert result.losses[-1] < 0.6 * result.losses[0]
    model, config, assets = load_model_dir(tmp_path / "run" / "last")
    src_vocab, tgt_vocab = assets.src_vocab, assets.tgt_vocab
    assert next(model.parameters()).device.type == "cpu"
    sources = ["march 3, 2001", "12/24/1999", "tuesday, 5 june 1979"]
    config.decode.precision = "fp32"
    on_cpu = Translator(model, config, src_vocab, tgt_vocab)
    on_gpu = Translator.from_pretrained(tmp_path / "run" / "last", device="cuda")
    on_gpu.config.decode.precision = "fp32"
    expected = [t.text for t in on_cpu.translate(sources, beam_size=3)]
    assert [t.text for t in on_gpu.translate(sources, beam_size=3)] == expected
    on_gpu.config.decode.precision = "int8"
    with pytest.raises(AttnseqError, match="CPU only"):
        on_gpu.translate(sources)


def test_cli_translates_on_cuda(tmp_path, tiny_config, capsys):
    cfg = tiny_config("train.device=cuda", "train.max_steps=5")
    Trainer(cfg, tmp_path / "run", progress_bar=False).fit()
    src = tmp_path / "src.txt"
    src.write_text("march 3, 2001\n12/24/1999\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["translate", "--model", str(tmp_path / "run" / "best"), "--input", str(src), "--device", "cuda",
                 "--precision", "bf16", "--beam-size", "2", "--json"]) == 0  # fmt: skip
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in records] == ["march 3, 2001", "12/24/1999"]
    assert all(r["tokens"] and r["score"] <= 0 and len(r["attention"]) == len(r["tokens"]) for r in records)
