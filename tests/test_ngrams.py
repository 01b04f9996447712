"""Hashed n-gram embeddings (modules/ngrams.py, model.ngrams of task classify): the hash against a
plain-Python transcription, zero at padding, a text read the same alone and in a padded batch, the
tables saved and loaded with the model, and the settings checked."""

from __future__ import annotations

import pytest
import torch

import attnseq
from attnseq.config import ClassifierConfig, load_config
from attnseq.errors import AttnseqError
from attnseq.models.classifier import AttentionClassifier
from attnseq.modules.ngrams import HASH_BASE, HashedNgrams, ngram_ids
from attnseq.trainer import Trainer
from tests.classify_data import tiny_classify_config
from tests.conftest import ROOT

TOKENS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 0, 0, 0]])
LENGTHS = torch.tensor([5, 2])


def python_hash(ids: list[int], buckets: int) -> int:
    value = ids[0]
    for t in ids[1:]:
        value = (value * HASH_BASE + t) % buckets
    return value % buckets


@pytest.mark.parametrize("n", [2, 3, 4])
def test_each_position_reads_the_hash_of_the_ngram_starting_there(n):
    buckets = 97
    rows = TOKENS.tolist()
    expected = [[python_hash((row + [0] * n)[i : i + n], buckets) for i in range(len(row))] for row in rows]
    assert ngram_ids(TOKENS, n, buckets).tolist() == expected
    big = torch.tensor([[123_456, 654_321, 999_999]])  # products beyond 32 bits stay exact in int64
    assert ngram_ids(big, n, 1 << 20).tolist() == [[python_hash((big[0].tolist() + [0] * n)[i : i + n], 1 << 20)
                                                     for i in range(3)]]  # fmt: skip


def test_the_embedding_sums_the_orders_tables_and_is_zero_at_padding():
    torch.manual_seed(0)
    grams = HashedNgrams([2, 3], 97, 6)
    out = grams(TOKENS)
    expected = grams.tables[0].weight[ngram_ids(TOKENS, 2, 97)] + grams.tables[1].weight[ngram_ids(TOKENS, 3, 97)]
    assert out.shape == (2, 5, 6)
    assert torch.allclose(out[0], expected[0]) and torch.allclose(out[1, :2], expected[1, :2])
    assert torch.all(out[1, 2:] == 0)
    assert all(0.05 < float(t.weight.detach().std()) < 0.15 for t in grams.tables)  # starts small: N(0, 0.1^2)


def test_a_text_is_read_the_same_alone_and_in_a_padded_batch():
    torch.manual_seed(1)
    cfg = ClassifierConfig(emb_size=8, hidden_size=8, units=4, ngrams=[2, 3], ngram_buckets=50)
    model = AttentionClassifier(cfg, vocab_size=30, num_classes=3).eval()
    probs, weights = model.probabilities(TOKENS, LENGTHS)
    alone, alone_weights = model.probabilities(TOKENS[1:, :2], LENGTHS[1:])
    assert torch.allclose(probs[1], alone[0], atol=1e-6)
    assert torch.allclose(weights[1, :2], alone_weights[0], atol=1e-6)
    # and the n-grams take part: without them the same weights give other probabilities
    model.encoder.ngrams = None
    assert not torch.allclose(model.probabilities(TOKENS, LENGTHS)[0], probs, atol=1e-4)


def test_without_ngrams_a_model_draws_the_same_weights_as_before():
    torch.manual_seed(2)
    plain = AttentionClassifier(ClassifierConfig(emb_size=8, hidden_size=8), vocab_size=30, num_classes=2)
    torch.manual_seed(2)
    grams = AttentionClassifier(ClassifierConfig(emb_size=8, hidden_size=8, ngrams=[2]), vocab_size=30, num_classes=2)
    assert plain.encoder.ngrams is None
    extra = {k for k in grams.state_dict() if k.startswith("encoder.ngrams.")}
    assert extra == {"encoder.ngrams.tables.0.weight"}
    assert all(torch.equal(v, grams.state_dict()[k]) for k, v in plain.state_dict().items())  # tables drawn last


def test_a_classifier_with_ngrams_trains_saves_and_loads(synthetic, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_classify_config(synthetic, "model.ngrams=[2]", "model.ngram_buckets=512", "train.max_epochs=3")
    Trainer(cfg, out, progress_bar=False).fit()
    loaded = attnseq.load(out)
    assert loaded.model.encoder.ngrams.orders == (2,) and loaded.model.encoder.ngrams.buckets == 512
    texts = ["the food was really awful", "quite a lovely phone it is"]
    trainer = Trainer(cfg, out, resume=True, progress_bar=False)
    direct = trainer.task.predictor(trainer.model.eval(), trainer.cfg, trainer.data.assets)
    a, b = loaded.predict(texts), direct.predict(texts)
    assert [(p.output, p.score) for p in a] == [(p.output, p.score) for p in b]
    assert [p.output for p in a] == ["neg", "pos"]


@pytest.mark.parametrize("value", ["[1]", "[6]", "[2, 2]"])
def test_ngram_orders_are_checked(value):
    with pytest.raises(AttnseqError, match="'model.ngrams' = .* must list different orders from 2 to 5"):
        load_config(ROOT / "configs" / "sentiment.yaml", [f"model.ngrams={value}"])
    with pytest.raises(AttnseqError, match="'model.ngram_buckets' must be at least 1"):
        load_config(ROOT / "configs" / "sentiment.yaml", ["model.ngram_buckets=0"])
