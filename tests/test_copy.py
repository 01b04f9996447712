"""The copy mechanism (pointer-generator, modules/copy.py): the mixed distribution against a NumPy
transcription, sums to 1, is the vocabulary softmax when p_gen = 1 and the attention when
p_gen = 0; a copy model's teacher-forced log P equals its loop of steps, padding changes nothing,
and the loss is the NLL of that distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnseq.config import ModelConfig
from attnseq.errors import AttnseqError
from attnseq.models.seq2seq import build_model
from attnseq.modules.copy import CopyGenerator, copy_map
from attnseq.modules.loss import label_smoothed_nll
from attnseq.vocab import Vocab
from tests.test_models import V_SRC, V_TGT, batch, loop_of_steps, targets, tiny

MAP = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 1, 8, 9, 10, 4])  # source id -> target id (8 is <unk> = 1)


def generator_inputs(seed=0, n=4, s=5, h=6, e=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, V_TGT, generator=g, dtype=torch.float64)
    features = torch.randn(n, h, generator=g, dtype=torch.float64)
    emb = torch.randn(n, e, generator=g, dtype=torch.float64)
    attn = torch.softmax(torch.randn(n, s, generator=g, dtype=torch.float64), -1)
    attn[0, 3:] = 0  # padding has weight 0
    attn[0] /= attn[0].sum()
    src_ids = torch.randint(4, V_SRC, (n, s), generator=g)
    return logits, features, emb, attn, src_ids


def make_generator(h=6, e=3):
    torch.manual_seed(5)
    return CopyGenerator(h, e, MAP).double()


def test_mixed_distribution_matches_a_numpy_transcription():
    gen = make_generator()
    logits, features, emb, attn, src_ids = generator_inputs()
    with torch.no_grad():
        P = gen(logits, features, emb, attn, src_ids).exp().numpy()
    w, b = gen.W_p.weight.detach().numpy()[0], gen.W_p.bias.detach().numpy()[0]
    for n in range(logits.size(0)):
        p_gen = 1 / (1 + np.exp(-(w @ np.concatenate([features[n].numpy(), emb[n].numpy()]) + b)))
        vocab = np.exp(logits[n].numpy()) / np.exp(logits[n].numpy()).sum()
        expect = p_gen * vocab
        for i, sid in enumerate(src_ids[n].tolist()):
            expect[MAP[sid]] += (1 - p_gen) * attn[n, i].item()
        np.testing.assert_allclose(P[n], expect, rtol=1e-6, atol=1e-12)
        assert 0 < p_gen < 1


def test_distribution_sums_to_one():
    gen = make_generator()
    with torch.no_grad():
        P = gen(*generator_inputs(seed=1)).exp()
    torch.testing.assert_close(P.sum(-1), torch.ones(P.size(0), dtype=P.dtype), rtol=0, atol=1e-6)


def test_p_gen_one_is_the_vocabulary_softmax_and_zero_is_the_attention():
    gen = make_generator()
    logits, features, emb, attn, src_ids = generator_inputs(seed=2)
    with torch.no_grad():
        gen.W_p.weight.zero_()
        gen.W_p.bias.fill_(100.0)  # p_gen = sigmoid(100) = 1 in float32
        P = gen(logits, features, emb, attn, src_ids).exp()
        torch.testing.assert_close(P, torch.softmax(logits, -1).float(), rtol=1e-6, atol=1e-7)
        gen.W_p.bias.fill_(-100.0)  # p_gen = 0: only copies
        P = gen(logits, features, emb, attn, src_ids).exp()
    copied = torch.zeros_like(P).scatter_add(1, MAP[src_ids], attn.float())
    torch.testing.assert_close(P, copied, rtol=1e-6, atol=1e-7)
    outside = torch.ones_like(P, dtype=torch.bool).scatter(1, MAP[src_ids], False)
    assert (P[outside] < 1e-30).all()  # a word not in the source gets (almost) nothing


def test_copy_map_sends_each_source_token_to_the_same_target_token():
    src = Vocab.build([["der", "hund", "bellt"]], min_freq=1)
    tgt = Vocab.build([["the", "hund", "barks"]], min_freq=1)
    mapped = copy_map(src, tgt).tolist()
    assert tgt.itos[mapped[src.stoi["hund"]]] == "hund"
    assert mapped[src.stoi["der"]] == tgt.stoi["<unk>"]
    assert [tgt.itos[mapped[src.stoi[s]]] for s in ("<pad>", "<s>", "</s>")] == ["<pad>", "<s>", "</s>"]


@pytest.fixture(params=[("luong", "general"), ("bahdanau", "concat")])
def copy_model(request):
    decoder, attention = request.param
    torch.manual_seed(3)
    cfg = tiny(decoder, attention, copy=True)
    return build_model(cfg, src_vocab_size=V_SRC, tgt_vocab_size=V_TGT, copy_map=MAP).double().eval()


def test_copy_model_forward_equals_loop_of_steps_and_padding_changes_nothing(copy_model):
    src, src_lengths, tgt_in, lengths = batch()
    with torch.no_grad():
        logp, attn = copy_model.logits(src, src_lengths, tgt_in)
        stepped, step_attn = loop_of_steps(copy_model, src, src_lengths, tgt_in)
        torch.testing.assert_close(logp, stepped)
        torch.testing.assert_close(attn, step_attn)
        torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2], dtype=logp.dtype), atol=1e-6, rtol=0)
        for i, (n, m) in enumerate(zip(src_lengths.tolist(), lengths)):
            alone, _ = copy_model.logits(src[i : i + 1, :n], src_lengths[i : i + 1], tgt_in[i : i + 1, :m])
            torch.testing.assert_close(alone[0], logp[i, :m])


def test_copy_model_loss_is_the_nll_of_its_distribution(copy_model):
    src, src_lengths, tgt_in, lengths = batch()
    tgt_out = targets(tgt_in, lengths)
    with torch.no_grad():
        logp, _ = copy_model.logits(src, src_lengths, tgt_in)
        keep = tgt_out != 0
        expect = -logp[keep].gather(1, tgt_out[keep].unsqueeze(1)).sum()
        loss = copy_model.loss(src, src_lengths, tgt_in, tgt_out, pad_id=0)
        torch.testing.assert_close(loss, expect.float() if loss.dtype == torch.float32 else expect)
        # smoothing as torch's cross-entropy applies it (logp is normalized, so log_softmax(logp) == logp)
        theirs = torch.nn.functional.cross_entropy(logp[keep], tgt_out[keep], label_smoothing=0.1, reduction="sum")
        torch.testing.assert_close(label_smoothed_nll(logp[keep], tgt_out[keep], 0.1), theirs)


def test_copy_needs_attention_and_a_source_vocabulary():
    from attnseq.config import for_task, validate

    cfg = for_task("translate")
    cfg.model = ModelConfig(decoder="init", copy=True)
    with pytest.raises(AttnseqError, match="copy"):
        validate(cfg)
    with pytest.raises(AttnseqError, match="source vocabulary"):
        build_model(tiny("luong", "general", copy=True), src_vocab_size=V_SRC, tgt_vocab_size=V_TGT)


def test_beam_search_of_a_copy_model_reads_each_sentences_own_source(copy_model):
    """Beam search holds K state rows per source row: each beam must copy from its own sentence,
    so a batch searches exactly as each sentence alone (greedy too)."""
    from attnseq.decoding import beam_search, greedy_search

    src, src_lengths, _, _ = batch()
    specials = dict(bos_id=2, eos_id=3, pad_id=0, max_len=6)
    with torch.no_grad():
        together = beam_search(copy_model, src, src_lengths, beam_size=3, n_best=3, **specials)
        greedy = greedy_search(copy_model, src, src_lengths, **specials)
        for i in range(src.size(0)):
            n = int(src_lengths[i])
            (alone,) = beam_search(copy_model, src[i : i + 1, :n], src_lengths[i : i + 1], beam_size=3, n_best=3,
                                   **specials)  # fmt: skip
            assert [h.tokens for h in together[i]] == [h.tokens for h in alone]
            for a, b in zip(together[i], alone):
                assert a.score == pytest.approx(b.score, abs=1e-4)
            ((one,),) = greedy_search(copy_model, src[i : i + 1, :n], src_lengths[i : i + 1], **specials)
            assert greedy[i][0].tokens == one.tokens
