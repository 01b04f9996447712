"""The classifier's regularizers: shared-mask dropout on the embeddings (model.spatial_dropout) and
on the RNN states (model.state_dropout), label smoothing (train.label_smoothing), all training-only
and off by default without changing what a checkpoint holds."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from attnseq.config import ClassifierConfig, load_config
from attnseq.errors import AttnseqError
from attnseq.models.classifier import AttentionClassifier, LabelBatch, SharedDropout
from attnseq.modules.loss import label_smoothed_nll
from attnseq.tasks.classify import ClassifyTask
from attnseq.vocab import Vocab

TOKENS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [14, 15, 16, 17, 0, 0]])
LENGTHS = torch.tensor([6, 3, 4])


def model(classes: int = 2, **cfg) -> AttentionClassifier:
    torch.manual_seed(0)
    cfg = ClassifierConfig(emb_size=12, hidden_size=16, units=4, **{"dropout": 0.0, **cfg})
    return AttentionClassifier(cfg, vocab_size=30, num_classes=classes)


def assert_whole_features_dropped(x: torch.Tensor, lengths: torch.Tensor, reference: torch.Tensor, p: float) -> None:
    """x (B, S, F) is reference times a (B, 1, F) mask of 0 and 1 / (1 - p) over the real positions."""
    for b, n in enumerate(lengths.tolist()):
        ratio = x[b, :n] / reference[b, :n]
        dropped = (x[b, :n] == 0).all(0)
        assert dropped.any() and not dropped.all(), "p = 0.5 drops some features of a text and keeps others"
        assert torch.all(x[b, :n][:, dropped] == 0)  # a dropped feature is dropped at every position
        assert torch.allclose(ratio[:, ~dropped], torch.full_like(ratio[:, ~dropped], 1 / (1 - p)))


def test_shared_dropout_drops_whole_features_of_a_text_in_training_only():
    torch.manual_seed(1)
    x = torch.randn(4, 7, 32) + 3
    layer = SharedDropout(0.5).train()
    assert_whole_features_dropped(layer(x), torch.full((4,), 7), x, 0.5)
    masks = torch.stack([layer.mask(x) for _ in range(200)])
    assert masks.shape == (200, 4, 1, 32) and abs(float((masks == 0).float().mean()) - 0.5) < 0.02
    assert layer.eval()(x) is x
    assert SharedDropout(0.0).train()(x) is x


def capture(module: torch.nn.Module, store: dict, key: str, *, output: bool):
    def hook(_, args, result):
        store[key] = result if output else args

    return module.register_forward_hook(hook)


def test_spatial_dropout_drops_embedding_features_at_every_position():
    seen: dict = {}
    m = model(spatial_dropout=0.5).train()
    capture(m.encoder.embedding, seen, "emb", output=True)
    capture(m.encoder.dropout, seen, "dropped", output=True)
    m.logits(TOKENS, LENGTHS)
    assert_whole_features_dropped(seen["dropped"], LENGTHS, seen["emb"], 0.5)
    assert set(m.state_dict()) == set(model().state_dict())  # a checkpoint holds the same weights


def test_state_dropout_drops_the_same_features_of_values_and_query():
    seen: dict = {}
    plain, m = model().train(), model(state_dropout=0.5).train()
    capture(plain.pooling, seen, "plain", output=False)
    capture(m.pooling, seen, "dropped", output=False)
    torch.manual_seed(2)
    plain.logits(TOKENS, LENGTHS)
    torch.manual_seed(2)
    m.logits(TOKENS, LENGTHS)
    (values, mask, query), (kept_values, _, kept_query) = seen["plain"], seen["dropped"]
    assert_whole_features_dropped(kept_values, LENGTHS, values, 0.5)
    assert torch.all(kept_values[~mask] == 0)  # padding stays zero
    for b, n in enumerate(LENGTHS.tolist()):
        dropped = (kept_values[b, :n] == 0).all(0)
        assert torch.all(kept_query[b, dropped] == 0) and torch.allclose(
            kept_query[b, ~dropped], 2 * query[b, ~dropped]
        )


@pytest.mark.parametrize("classes", [2, 3])
def test_the_regularizers_change_nothing_in_evaluation(classes):
    plain, m = model(classes).eval(), model(classes, spatial_dropout=0.4, state_dropout=0.4).eval()
    m.label_smoothing = 0.2
    m.load_state_dict(plain.state_dict())
    batch = LabelBatch(TOKENS, LENGTHS, torch.tensor([1, 0, 1]), [0, 1, 2])
    assert torch.equal(m.probabilities(TOKENS, LENGTHS)[0], plain.probabilities(TOKENS, LENGTHS)[0])
    assert torch.equal(m(batch).loss_sum, plain(batch).loss_sum)  # validation loss is unsmoothed


@pytest.mark.parametrize("classes", [2, 3])
def test_label_smoothing_moves_targets_towards_uniform(classes):
    m = model(classes, head_dropout=0.0).train()
    m.label_smoothing = 0.2
    labels = torch.tensor([1, 0, classes - 1])
    loss = m(LabelBatch(TOKENS, LENGTHS, labels, [0, 1, 2])).loss_sum
    logits = m.logits(TOKENS, LENGTHS)[0].float()
    if classes == 2:
        target = torch.tensor([0.9, 0.1, 0.9])  # eps / 2 + (1 - eps) * y
        expected = -(target * F.logsigmoid(logits[:, 0]) + (1 - target) * F.logsigmoid(-logits[:, 0])).sum()
    else:
        target = F.one_hot(labels, classes).float() * 0.8 + 0.2 / classes
        expected = -(target * logits.log_softmax(-1)).sum()
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("classes", [2, 3])
def test_the_loss_is_label_smoothed_nll_of_the_class_probabilities(classes, eps):
    """One loss for both heads: `label_smoothed_nll` (modules/loss.py) of log P(class), where two
    classes have P = [1 - p, p], p = sigmoid(logit), computed as binary cross-entropy."""
    m = model(classes, head_dropout=0.0).train()
    m.label_smoothing = eps
    labels = torch.tensor([1, 0, classes - 1])
    loss = m(LabelBatch(TOKENS, LENGTHS, labels, [0, 1, 2])).loss_sum
    logits = m.logits(TOKENS, LENGTHS)[0].float()
    if classes == 2:
        logp = torch.stack([F.logsigmoid(-logits[:, 0]), F.logsigmoid(logits[:, 0])], dim=-1)
    else:
        logp = logits.log_softmax(-1)
    torch.testing.assert_close(loss, label_smoothed_nll(logp, labels, eps), rtol=1e-5, atol=1e-5)
    if classes > 2:  # and it is torch's cross-entropy of the logits
        want = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=eps)
        torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)


def test_the_task_gives_the_model_train_label_smoothing():
    cfg = load_config(None, ["task=classify", "data.train=x.tsv", "data.valid=y.tsv", "train.label_smoothing=0.1",
                             "model.state_dropout=0.2", "model.spatial_dropout=0.3"])  # fmt: skip
    assets = SimpleNamespace(vocab=Vocab.build([["a", "b"]]), labels=["0", "1"])
    m = ClassifyTask().build_model(cfg, assets)
    assert m.label_smoothing == 0.1 and m.state_dropout.p == 0.2 and m.encoder.dropout[0].p == 0.3


@pytest.mark.parametrize("key", ["model.spatial_dropout", "model.state_dropout"])
def test_dropout_shares_are_checked(key):
    with pytest.raises(AttnseqError, match=f"'{key}'.*in \\[0, 1\\)"):
        load_config(None, ["task=classify", "data.train=x.tsv", "data.valid=y.tsv", f"{key}=1.0"])
