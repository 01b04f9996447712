"""The attention-pooling classifier (SPEC 5) and the classify task: the equation against NumPy,
masking and padding invariance, save / load through attnseq.load, a tiny run that must learn,
the CLI faces (classify, evaluate, plot) and the recipes' data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import attnseq
from attnseq.cli import main
from attnseq.config import ClassifierConfig, load_config
from attnseq.errors import AttnseqError
from attnseq.models.classifier import AttentionClassifier
from attnseq.modules.pooling import AttentionPooling, MaxPooling, MeanPooling
from attnseq.tasks.classify import read_labelled, split_examples
from attnseq.trainer import Trainer
from tests.classify_data import NEGATIVE, POSITIVE, tiny_classify_config, write_synthetic
from tests.conftest import ROOT

SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls-run") / "run"
    Trainer(tiny_classify_config(synthetic), out, progress_bar=False).fit()
    return out


def test_attention_pooling_matches_a_numpy_transcription_of_spec_5_2():
    torch.manual_seed(3)
    B, S, H, Q, U = 2, 5, 6, 4, 3
    pool = AttentionPooling(H, Q, units=U).double()
    values, query = torch.randn(B, S, H, dtype=torch.float64), torch.randn(B, Q, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        context, weights = pool(values, mask, query)
    W1, b1 = pool.W1.weight.detach().numpy(), pool.W1.bias.detach().numpy()
    W2, b2 = pool.W2.weight.detach().numpy(), pool.W2.bias.detach().numpy()
    V, bv = pool.V.weight.detach().numpy(), pool.V.bias.detach().numpy()
    for b in range(B):
        n = int(mask[b].sum())
        h, q = values[b, :n].numpy(), query[b].numpy()
        score = (np.tanh(h @ W1.T + b1 + q @ W2.T + b2) @ V.T + bv)[:, 0]  # V^T tanh(W1 h_i + W2 q)
        alpha = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
        np.testing.assert_allclose(weights[b, :n].numpy(), alpha, rtol=1e-10)
        np.testing.assert_allclose(context[b].numpy(), alpha @ h, rtol=1e-10)
    assert set(dict(pool.named_parameters())) == {"W1.weight", "W1.bias", "W2.weight", "W2.bias", "V.weight", "V.bias"}


@pytest.mark.parametrize("pooling", [AttentionPooling(4, 4, units=3), MeanPooling()])
def test_masked_positions_weigh_exactly_zero(pooling):
    values = torch.randn(2, 6, 4) * 50  # large scores: a softmax that leaks would show
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    _, weights = pooling(values, mask, torch.randn(2, 4))
    assert torch.all(weights[~mask] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2))


def test_max_pooling_ignores_padding():
    values = torch.full((1, 3, 2), 100.0)
    values[0, 0] = torch.tensor([1.0, -2.0])
    context, _ = MaxPooling()(values, torch.tensor([[True, False, False]]), torch.zeros(1, 2))
    assert context.tolist() == [[1.0, -2.0]]


@pytest.mark.parametrize("pooling", ["attention", "mean", "max", "last"])
@pytest.mark.parametrize("classes", [2, 3])
def test_a_text_gets_the_same_answer_alone_and_in_a_padded_batch(pooling, classes):
    torch.manual_seed(1)
    model = AttentionClassifier(ClassifierConfig(emb_size=8, hidden_size=8, units=4, pooling=pooling),
                                vocab_size=30, num_classes=classes).eval()  # fmt: skip
    tokens = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 0, 0, 0]])
    lengths = torch.tensor([5, 2])
    probs, weights = model.probabilities(tokens, lengths)
    alone, alone_weights = model.probabilities(tokens[1:, :2], lengths[1:])
    assert probs.shape == (2, classes) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.allclose(probs[1], alone[0], atol=1e-6)
    if pooling in ("attention", "mean"):
        assert torch.allclose(weights[1, :2], alone_weights[0], atol=1e-6) and torch.all(weights[1, 2:] == 0)
    else:
        assert weights is None


def test_head_is_dense_relu_dropout_dense_with_sigmoid_or_softmax():
    two = AttentionClassifier(ClassifierConfig(), vocab_size=10, num_classes=2)
    three = AttentionClassifier(ClassifierConfig(), vocab_size=10, num_classes=3)
    assert two.hidden.out_features == 20 and two.head_dropout.p == 0.5 and two.out.out_features == 1
    assert three.out.out_features == 3 and two.pooling.W1.out_features == 64  # the notes' units


def test_a_tiny_classifier_learns_the_deciding_word(run, synthetic):
    classifier = attnseq.load(run)
    report = classifier.evaluate(read_labelled(synthetic["test"], classifier.config.data))
    assert report["accuracy"] >= 0.95, report
    top = report["most_attended"]  # what the model looks at most, per class: the deciding words
    assert {t for t, _ in top["pos"][:3]} <= set(POSITIVE) and {t for t, _ in top["neg"][:3]} <= set(NEGATIVE)
    # the pooling looks at the word that decides: the largest weight falls on a sentiment word
    preds = classifier.predict(["the food was really awful and the staff so so", "quite a lovely phone it is"])
    assert [p.output for p in preds] == ["neg", "pos"]
    for p in preds:
        assert p.input_tokens[int(np.argmax(p.attention[0]))] in POSITIVE + NEGATIVE
        assert p.attention.shape == (1, len(p.input_tokens)) and abs(p.attention.sum() - 1) < 1e-5
        assert [a.output for a in p.alternatives][0] == p.output and abs(
            sum(a.score for a in p.alternatives) - 1
        ) < 1e-5


def test_save_and_load_give_identical_predictions(run, synthetic):
    from attnseq.tasks.classify import Classifier

    loaded = attnseq.load(run / "last")
    assert isinstance(loaded, Classifier) and loaded.labels == ["neg", "pos"]
    texts = [line.split("\t")[0] for line in synthetic["test"].read_text().splitlines()[:40]]
    trainer = Trainer(tiny_classify_config(synthetic), run, resume=True, progress_bar=False)  # last/, rebuilt
    direct = trainer.task.predictor(trainer.model.eval(), trainer.cfg, trainer.data.assets)
    a, b = loaded.predict(texts), direct.predict(texts)
    assert [(p.output, p.score) for p in a] == [(p.output, p.score) for p in b]
    assert all(np.array_equal(x.attention, y.attention) for x, y in zip(a, b))
    assert sorted(p.name for p in (run / "best").iterdir()) == ["config.json", "labels.json", "metrics.json",
                                                                  "model.safetensors", "vocab.json"]  # fmt: skip
    assert set(json.loads((run / "best" / "metrics.json").read_text())) >= {"accuracy", "macro_f1", "loss", "step"}


def test_the_translator_refuses_a_classifier_directory(run):
    from attnseq import Translator

    with pytest.raises(AttnseqError, match="holds a classify model, not a translation model"):
        Translator.from_pretrained(run)


def test_cli_classify_evaluate_and_plot(run, synthetic, tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a superb film\n\nthe screen is dull\n"))
    assert main(["classify", "--model", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "", "neg"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a superb film\n"))
    assert main(["classify", "--model", str(run), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["output"] == "pos" and set(record["probabilities"]) == {"neg", "pos"}
    assert len(record["attention"][0]) == len(record["input_tokens"]) == 3
    monkeypatch.setattr("sys.stdin", io.StringIO("a superb film\n"))
    assert main(["classify", "--model", str(run), "--explain", "--color", "always"]) == 0
    assert "\x1b[48;5;" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(run), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 200 and scores["accuracy"] >= 0.95 and 0 <= scores["macro_f1"] <= 1
    assert scores["baseline"]["name"] == "tfidf_logreg" and scores["baseline"]["accuracy"] >= 0.9
    assert scores["precision"] == "fp32"  # the forward pass it was scored with
    assert main(["evaluate", "--model", str(run), "--json", "--batch-size", "7", "--precision", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == scores["accuracy"]
    for flags in (["--beam-size", "5"], ["--precision", "bf16"], ["--shortlist", "10"]):
        assert main(["evaluate", "--model", str(run), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and flags[0] in err and "not for a classifier" in err
    png = tmp_path / "w.png"
    assert main(["plot", "--model", str(run), "a superb film", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_prints_the_held_out_figures_beside_the_baseline(synthetic, tmp_path, capsys):
    sets = [f"data.{k}={v}" for k, v in synthetic.items()] + ["model.emb_size=8", "model.hidden_size=8",
                                                               "train.max_epochs=1", "train.batch_size=32"]  # fmt: skip
    args = ["train", "--out", str(tmp_path / "r"), "-"]
    config = tmp_path / "c.yaml"
    config.write_text("task: classify\n")
    args[-1] = str(config)
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "TF-IDF + logistic regression" in out and "\n  all " in out
    report = json.loads((tmp_path / "r" / "test_report.json").read_text())
    assert {"accuracy", "macro_f1", "baseline"} <= set(report)
    # a classifier predicts in float32 whatever decode.precision's auto would pick for a translator
    assert ", decoding fp32 (" in out
    start = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["resolved"]["decode.precision"] == "fp32"
    args[2] = str(tmp_path / "r2")
    assert main([*args, *[a for s in sets for a in ("--set", s)], "--set", "decode.precision=int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "decode.precision = int8: a classify model predicts in fp32 only" in err and "\n" not in err
    assert not (tmp_path / "r2").exists()


def test_bad_labelled_files_name_the_file_and_line(tmp_path):
    cfg = load_config(None, ["task=classify"]).data
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine text\t1\nno tab here\n", encoding="utf-8")
    with pytest.raises(AttnseqError, match=r"bad.tsv:2: no tab in the line"):
        read_labelled(bad, cfg)
    bad.write_text("fine text\t1\n\t0\n", encoding="utf-8")
    with pytest.raises(AttnseqError, match=r"bad.tsv:2: the text is empty"):
        read_labelled(bad, cfg)
    csv_cfg = load_config(None, ["task=classify", "data.format=csv", "data.text_column=Q"]).data
    bad.write_text("Q,A\nhi,there\n", encoding="utf-8")
    with pytest.raises(AttnseqError, match=r"bad.tsv:1: no column 'label' in the header \(Q, A\)"):
        read_labelled(bad, csv_cfg)


def test_a_label_unseen_in_training_is_a_clear_error(synthetic, tmp_path):
    valid = tmp_path / "valid.tsv"
    valid.write_text("good film\tpos\nbad film\tmeh\n", encoding="utf-8")
    cfg = tiny_classify_config(synthetic, f"data.valid={valid}")
    with pytest.raises(AttnseqError, match=r"valid.tsv:2: label 'meh' is not one of the training labels \(neg, pos\)"):
        Trainer(cfg, tmp_path / "r", progress_bar=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.split=[0.8, 0.3, 0.1]", "'data.split' must be three shares (train, valid, test) that sum to 1"),
        ("train.valid_metric=bleu", "'train.valid_metric': 'bleu' is not allowed with task classify; choose one of"),
        ("model.pooling=sum", "'model.pooling': 'sum' is not allowed; choose one of attention, mean, max, last"),
        ("model.attention=dot", "'model.attention' is not a known key"),
    ],
)
def test_classify_config_errors(override, message):
    with pytest.raises(AttnseqError) as err:
        load_config(ROOT / "configs" / "sentiment.yaml", [override])
    assert message in str(err.value)


def test_a_seeded_split_is_fixed_and_per_file(tmp_path):
    files = [write_synthetic(tmp_path / f"{d}.tsv", 100, seed=i) for i, d in enumerate("ab")]
    cfg = load_config(None, ["task=classify", f"data.files={[str(f) for f in files]}", "data.domains=[x, y]"]).data
    first, again = split_examples(cfg), split_examples(cfg)
    assert {k: [e.where for e in v] for k, v in first.items()} == {k: [e.where for e in v] for k, v in again.items()}
    assert [len(first[k]) for k in ("train", "valid", "test")] == [160, 20, 20]
    assert sum(e.domain == "x" for e in first["test"]) == 10
    other = split_examples(load_config(None, ["task=classify", f"data.files={[str(f) for f in files]}",
                                              "data.split_seed=1"]).data)  # fmt: skip
    assert [e.where for e in other["test"]] != [e.where for e in first["test"]]


@pytest.mark.skipif(not (SHARED / "sentiment-uci").is_dir(), reason="../shared/data/sentiment-uci is not here")
def test_the_sentiment_recipe_splits_2400_300_300():
    splits = split_examples(load_config(ROOT / "configs" / "sentiment.yaml").data)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [2400, 300, 300]
    assert {e.domain for e in splits["test"]} == {"amazon", "imdb", "yelp"}


@pytest.mark.skipif(not (SHARED / "chatbot-ko").is_dir(), reason="../shared/data/chatbot-ko is not here")
def test_the_chatbot_topic_recipe_reads_three_clean_labels():
    splits = split_examples(load_config(ROOT / "configs" / "chatbot_topic.yaml").data)
    assert sorted({e.label for e in splits["train"]}) == ["0", "1", "2"]  # "2   " stripped
    assert sum(len(v) for v in splits.values()) == 11823


def test_ablate_trains_every_pooling_beside_the_baseline(synthetic, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("task: classify\n")
    sets = [f"data.{k}={v}" for k, v in synthetic.items()] + ["model.emb_size=16", "model.hidden_size=16",
                                                               "train.max_epochs=3", "train.lr=0.01"]  # fmt: skip
    assert main(["ablate", str(config), "--out", str(tmp_path / "abl"), *[a for s in sets for a in ("--set", s)]]) == 0
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["attention", "mean", "max", "last", "tfidf-logreg"]
    assert rows[0]["accuracy"] >= 0.9 and all(0 <= r["accuracy"] <= 1 for r in rows)
    assert "| attention |" in (tmp_path / "abl" / "ablation.md").read_text()
    assert (tmp_path / "abl" / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_without_the_training_data_scores_the_model_alone(run, synthetic, tmp_path, capsys):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(run / "best", moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["data"]["train"] = str(tmp_path / "gone.tsv")  # the model travelled; its training data did not
    (moved / "config.json").write_text(json.dumps(cfg))
    assert main(["evaluate", "--model", str(moved), "--data", str(synthetic["test"]), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] >= 0.95 and "gone.tsv" in scores["baseline"]["skipped"]


def test_training_curves_of_a_classifier(run, tmp_path):
    from attnseq.plotting import plot_training

    assert plot_training(run / "metrics.jsonl", tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_output_writes_the_labels_it_scored(run, synthetic, tmp_path, capsys):
    out = tmp_path / "labels.txt"
    assert main(["evaluate", "--model", str(run), "--data", str(synthetic["test"]), "--output", str(out)]) == 0
    labels = out.read_text().splitlines()
    assert len(labels) == 200 and set(labels) <= {"neg", "pos"}
    gold = [line.rsplit("\t", 1)[1] for line in synthetic["test"].read_text().splitlines()]
    accuracy = sum(a == b for a, b in zip(labels, gold)) / len(gold)
    assert f"{100 * accuracy:6.1f}%" in capsys.readouterr().out
