"""The CTC layer on the listener (modules/ctc.py): its loss against a NumPy sum over every path,
padding invariance, the joint loss of training, and a speech model that carries one saved and
loaded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from attnseq.config import load_config
from attnseq.modules.ctc import CTCHead
from attnseq.modules.encoder import Memory


def collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    out, prev = [], None
    for p in path:
        if p != prev and p != blank:
            out.append(p)
        prev = p
    return tuple(out)


def brute_force_nll(logp: np.ndarray, target: tuple[int, ...], blank: int) -> float:
    """-log sum over every path of length T that collapses to `target` of prod_t P(pi_t)."""
    steps, classes = logp.shape
    total = 0.0
    for path in itertools.product(range(classes), repeat=steps):
        if collapse(path, blank) == target:
            total += float(np.exp(sum(logp[t, k] for t, k in enumerate(path))))
    return -np.log(total)


def memory_of(outputs: torch.Tensor, lengths: list[int]) -> Memory:
    mask = torch.arange(outputs.size(1))[None, :] < torch.tensor(lengths)[:, None]
    return Memory(outputs=outputs, keys=None, src_mask=mask, final=None)


def test_ctc_loss_equals_the_sum_over_every_path():
    torch.manual_seed(0)
    head = CTCHead(6, vocab_size=3)  # ids 0-2 (0 is padding in the targets' tensor), blank = 3
    outputs = torch.randn(2, 5, 6)
    memory = memory_of(outputs, [5, 4])
    tgt_out = torch.tensor([[1, 1, 2, 9], [2, 9, 0, 0]])  # y then </s> (any id: it is cut off) then padding
    tgt_lengths = torch.tensor([4, 2])
    got = head.loss_sum(memory, tgt_out, tgt_lengths).item()
    logp = head.log_probs(memory).detach().numpy()
    want = brute_force_nll(logp[0, :5], (1, 1, 2), head.blank) + brute_force_nll(logp[1, :4], (2,), head.blank)
    assert got == pytest.approx(want, rel=1e-5)


def test_ctc_loss_ignores_padding_positions():
    torch.manual_seed(1)
    head = CTCHead(4, vocab_size=5)
    alone = torch.randn(1, 6, 4)
    padded = torch.cat([alone, torch.randn(1, 3, 4)], dim=1)  # three positions past its length
    other = torch.randn(1, 9, 4)
    tgt = torch.tensor([[2, 3, 1]])
    one = head.loss_sum(memory_of(alone, [6]), tgt, torch.tensor([3]))
    both = head.loss_sum(memory_of(torch.cat([padded, other]), [6, 9]), torch.cat([tgt, tgt]), torch.tensor([3, 3]))
    two = head.loss_sum(memory_of(other, [9]), tgt, torch.tensor([3]))
    assert both.item() == pytest.approx(one.item() + two.item(), rel=1e-5)


def test_a_transcript_longer_than_the_listener_adds_nothing_rather_than_infinity():
    head = CTCHead(4, vocab_size=5)
    loss = head.loss_sum(memory_of(torch.randn(1, 2, 4), [2]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([4]))
    assert torch.isfinite(loss) and loss.item() == 0.0


def speech_model(ctc_weight: float):
    from attnseq.audio import FeatureStats
    from attnseq.tasks.speech import SpeechAssets, SpeechTask, fit_tokenizer
    from attnseq.vocab import Vocab

    cfg = load_config(None, overrides=[
        "task=speech", "data.train=t.tsv", "data.valid=v.tsv", "data.tokenizer=word", "data.n_mels=8",
        "model.enc_hidden_size=16", "model.dec_hidden_size=16",
        "model.emb_size=8", "model.enc_layers=2", f"model.ctc_weight={ctc_weight}", "model.dropout=0.0",
    ])  # fmt: skip
    tokenizer = fit_tokenizer(cfg.data, ["yes no"])
    assets = SpeechAssets(Vocab.build([["YES", "NO"]], source="test"), tokenizer, FeatureStats.identity(8))
    torch.manual_seed(3)
    return SpeechTask().build_model(cfg, assets), cfg, assets


def a_batch(model):
    from attnseq.batching import Batch

    src = torch.randn(2, 20, 8)
    tgt = [[4, 5, 4], [5]]
    tgt_in = torch.tensor([[1, 4, 5, 4], [1, 5, 0, 0]])
    tgt_out = torch.tensor([[4, 5, 4, 2], [5, 2, 0, 0]])
    lengths = torch.tensor([len(t) + 1 for t in tgt])
    return Batch(src=src, src_lengths=torch.tensor([20, 13]), tgt_in=tgt_in, tgt_out=tgt_out, index=[0, 1],
                 tgt_lengths=lengths, n_tgt_tokens=int(lengths.sum()))  # fmt: skip


def test_training_loss_mixes_attention_and_ctc_and_validation_scores_attention_alone():
    model, cfg, _ = speech_model(0.3)
    assert model.ctc is not None and model.ctc_weight == 0.3
    batch = a_batch(model)
    model.train()
    out = model(batch)
    joint = out.loss_sum
    attention = model.loss(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, pad_id=model.pad_id)
    ctc = model.ctc.loss_sum(model.encode(batch.src, batch.src_lengths), batch.tgt_out, batch.tgt_lengths)
    assert joint.item() == pytest.approx(0.7 * attention.item() + 0.3 * ctc.item(), rel=1e-5)
    assert out.logs == pytest.approx({"attention": attention.item(), "ctc": ctc.item()}, rel=1e-5)  # the parts
    joint.backward()
    assert model.ctc.W_ctc.weight.grad is not None and model.ctc.W_ctc.weight.grad.abs().sum() > 0
    model.eval()
    assert model(batch).loss_sum.item() == pytest.approx(attention.item(), rel=1e-5) and model(batch).logs == {}
    plain, _, _ = speech_model(0.0)
    assert plain.ctc is None


def test_a_speech_model_with_ctc_saves_and_loads_identically(tmp_path):
    from attnseq.checkpoint import save_model_dir
    from attnseq.predict import load_model_dir

    model, cfg, assets = speech_model(0.3)
    model.eval()
    save_model_dir(tmp_path / "m", model=model, config=cfg, assets=assets)
    loaded = load_model_dir(tmp_path / "m")[0]
    assert loaded.ctc is not None
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("beam_size", [1, 3])
def test_joint_decoding_scores_each_hypothesis_by_both_decoders(beam_size):
    """A Transcriber with decode.ctc_weight: each hypothesis's score is (1 - lam) log P_attention of
    its tokens + lam log P_CTC(exactly its words), computed here from the model's own outputs."""
    from attnseq.tasks.speech import Transcriber

    model, cfg, assets = speech_model(0.3)
    model.eval()
    cfg.decode.ctc_weight, cfg.decode.precision, cfg.decode.max_len_a, cfg.decode.max_len_b = 0.4, "fp32", 0.0, 5
    transcriber = Transcriber(model, cfg, assets)
    feats = [torch.randn(20, 8), torch.randn(13, 8)]
    found = transcriber.transcribe_features(feats, ["a", "b"], beam_size=beam_size, n_best=beam_size)
    vocab = assets.vocab
    for f, p in zip(feats, found):
        for alt in p.alternatives:
            ids = vocab.encode(alt.output_tokens)  # the words, then </s> where the search ended it
            words = [i for i in ids if i != vocab.eos_id]
            batch_src, lengths = f.unsqueeze(0), torch.tensor([f.size(0)])
            tgt_in = torch.tensor([[vocab.bos_id, *ids[:-1]]])
            with torch.no_grad():
                logits, _ = model.logits(batch_src, lengths, tgt_in)
                attention = torch.log_softmax(logits.float(), -1)[0].gather(1, torch.tensor(ids).unsqueeze(1)).sum()
                memory = model.encode(batch_src, lengths)
                logp = model.ctc.log_probs(memory).transpose(0, 1)
                ctc = -torch.nn.functional.ctc_loss(logp, torch.tensor([words or [0]]), memory.src_mask.sum(1),
                                                    torch.tensor([len(words)]), blank=model.ctc.blank,
                                                    reduction="sum")  # fmt: skip
            if ids[-1] == vocab.eos_id:
                assert alt.score == pytest.approx(0.6 * attention.item() + 0.4 * ctc.item(), abs=1e-3)
    scores = [[a.rank_score for a in p.alternatives] for p in found]
    assert all(s == sorted(s, reverse=True) for s in scores)


def test_joint_decoding_needs_a_ctc_layer():
    from attnseq.config import validate
    from attnseq.errors import AttnseqError

    _, cfg, _ = speech_model(0.0)
    cfg.decode.ctc_weight = 0.5
    with pytest.raises(AttnseqError, match=r"decode.ctc_weight = 0.5 needs a model trained with a CTC layer"):
        validate(cfg)
