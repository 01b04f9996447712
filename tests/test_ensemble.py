"""model.members (task classify): an ensemble of attention-pooling classifiers trained side by side.
Member 0 draws a single model's initial weights, the others their own; a prediction is the mean of
the members' probabilities and pooling weights; the loss is the mean of theirs; an ensemble trains,
saves and loads like one model."""

from __future__ import annotations

import json

import pytest
import torch

import attnseq
from attnseq.cli import main
from attnseq.config import ClassifierConfig, load_config
from attnseq.errors import AttnseqError
from attnseq.models.classifier import AttentionClassifier, ClassifierEnsemble, LabelBatch
from attnseq.tasks.classify import ClassifyAssets, ClassifyTask
from attnseq.trainer import Trainer
from attnseq.vocab import SPECIALS, Vocab
from tests.classify_data import tiny_classify_config
from tests.conftest import ROOT

CFG = ClassifierConfig(emb_size=8, hidden_size=8, units=4, ngrams=[2], ngram_buckets=64)
TOKENS = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 0, 0, 0]])
LENGTHS = torch.tensor([5, 2])


def test_member_0_draws_the_weights_of_a_single_model_of_the_same_seed():
    torch.manual_seed(4)
    single = AttentionClassifier(CFG, vocab_size=30, num_classes=3)
    torch.manual_seed(4)
    ensemble = ClassifierEnsemble(CFG, members=3, vocab_size=30, num_classes=3)
    first, second = ensemble.members[0].state_dict(), ensemble.members[1].state_dict()
    assert all(torch.equal(v, first[k]) for k, v in single.state_dict().items())
    assert not torch.equal(first["encoder.embedding.weight"], second["encoder.embedding.weight"])


@pytest.mark.parametrize("classes", [2, 3])
def test_a_prediction_is_the_mean_of_the_members(classes):
    ensemble = ClassifierEnsemble(CFG, members=3, vocab_size=30, num_classes=classes).eval()
    probs, weights = ensemble.probabilities(TOKENS, LENGTHS)
    each = [m.probabilities(TOKENS, LENGTHS) for m in ensemble.members]
    assert not torch.allclose(each[0][0], each[1][0])  # the members differ, so the mean is not one of them
    assert torch.allclose(probs, sum(p for p, _ in each) / 3) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.allclose(weights, sum(w for _, w in each) / 3)
    assert torch.allclose(weights.sum(-1), torch.ones(2)) and torch.all(weights[1, 2:] == 0)
    alone, alone_weights = ensemble.probabilities(TOKENS[1:, :2], LENGTHS[1:])  # padding changes nothing
    assert torch.allclose(probs[1], alone[0], atol=1e-6) and torch.allclose(weights[1, :2], alone_weights[0])


def test_the_loss_is_the_mean_of_the_members_and_each_member_gets_its_own_gradient():
    ensemble = ClassifierEnsemble(CFG, members=2, vocab_size=30, num_classes=3).eval()  # eval: no dropout draws
    batch = LabelBatch(TOKENS, LENGTHS, torch.tensor([2, 0]), [0, 1])
    out = ensemble(batch)
    losses = [m(batch).loss_sum for m in ensemble.members]
    assert out.units == 2 and torch.allclose(out.loss_sum, (losses[0] + losses[1]) / 2)
    out.loss_sum.backward()
    member = ensemble.members[1]
    got = member.out.weight.grad.clone()
    member.zero_grad()
    (member(batch).loss_sum / 2).backward()
    assert torch.allclose(got, member.out.weight.grad)


def test_one_member_is_the_plain_classifier():
    cfg = load_config(ROOT / "configs" / "sentiment.yaml", [])
    assert cfg.model.members == 1
    assets = ClassifyAssets(Vocab([*SPECIALS, "a", "b"]), ["0", "1"], tokenizer=None)
    assert type(ClassifyTask().build_model(cfg, assets)) is AttentionClassifier
    assert ClassifyTask().describe_model(cfg) == "attention-pooling classifier"
    cfg.model.members = 2
    assert len(ClassifyTask().build_model(cfg, assets).members) == 2
    assert ClassifyTask().describe_model(cfg) == "ensemble of 2 attention-pooling classifiers"
    with pytest.raises(AttnseqError, match="'model.members' must be at least 1"):
        load_config(ROOT / "configs" / "sentiment.yaml", ["model.members=0"])


def test_an_ensemble_trains_saves_and_loads(synthetic, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_classify_config(synthetic, "model.members=2", "train.max_epochs=3")
    Trainer(cfg, out, progress_bar=False).fit()
    assert json.loads((out / "best" / "config.json").read_text())["model"]["members"] == 2
    loaded = attnseq.load(out)
    assert isinstance(loaded.model, ClassifierEnsemble) and len(loaded.model.members) == 2
    texts = ["the food was really awful", "quite a lovely phone it is", "so dull and very poor"]
    trainer = Trainer(cfg, out, resume=True, progress_bar=False)  # last/, rebuilt from its files
    direct = trainer.task.predictor(trainer.model.eval(), trainer.cfg, trainer.data.assets)
    a, b = attnseq.load(out / "last").predict(texts), direct.predict(texts)
    assert [(p.output, p.score) for p in a] == [(p.output, p.score) for p in b]
    assert [p.output for p in loaded.predict(texts)] == ["neg", "pos", "neg"]
    assert main(["evaluate", "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.95
    assert main(["evaluate", "--model", str(out)]) == 0
    assert capsys.readouterr().out.startswith("ensemble of 2 attention-pooling classifiers | TF-IDF")
