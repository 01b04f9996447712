"""Text classification with the notes' attention-pooling classifier (SPEC 5): labelled texts, a
seeded split written in the config, accuracy and macro-F1 (per domain too), a TF-IDF + logistic
regression baseline on the same split, and the `Classifier` predictor.

Data: TSV lines TEXT TAB LABEL, or CSV with a header naming `data.text_column` / `data.label_column`.
With `data.files`, each file is a domain, split train / valid / test by `data.split` under
`data.split_seed`; otherwise `data.train` / `data.valid` / `data.test` are the splits.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from attnseq.batching import bucketed_batches, pad
from attnseq.checkpoint import load_predictor
from attnseq.contracts import Ablation, Column, Prediction, Task, TaskData, check_count, check_inputs
from attnseq.errors import AttnseqError
from attnseq.fileio import read_json_file
from attnseq.labelled import Example, read_labelled, split_examples
from attnseq.metrics import classification_scores
from attnseq.models.classifier import LabelBatch
from attnseq.models.config import ClassifierConfig
from attnseq.schema import AT_LEAST_1, NOT_NEGATIVE, Config, Range, SpmType, TokenizerKind, check_split
from attnseq.tokenize import Tokenizer, build_tokenizer, read_spm_model, train_sentencepiece
from attnseq.vocab import Vocab

VOCAB, LABELS, SPM = "vocab.json", "labels.json", "spm.model"


@dataclass
class ClassifyDataConfig:
    """task: classify. Labelled texts: either `files` split by a seeded shuffle (`split`,
    `split_seed`), or ready-made `train` / `valid` / `test` files. TSV lines are TEXT TAB LABEL;
    CSV files have a header naming `text_column` and `label_column`."""

    files: list[str] = field(default_factory=list)  # files pooled and split; each is one domain
    domains: list[str] = field(default_factory=list)  # a name per file for per-domain figures (default: file stems)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / valid / test shares of each file
    split_seed: int = 0  # seeds the split (the same seed, the same split on every machine)
    train: str = ""  # ready-made splits instead of `files`
    valid: str = ""
    test: str = ""
    format: Literal["tsv", "csv"] = "tsv"
    text_column: str = "text"  # csv: the header of the text column
    label_column: str = "label"  # csv: the header of the label column
    tokenizer: TokenizerKind = "word"  # word | char | spm (sentencepiece trained on the training texts)
    spm_type: SpmType = "unigram"
    spm_vocab_size: int = 4000
    spm_model: str = ""  # an existing sentencepiece .model ("" = train one)
    lowercase: bool = True
    strip_punctuation: bool = False  # word tokenizer: split punctuation off words ("great!" -> "great !")
    min_freq: int = 1
    max_vocab: int = 0
    max_len: int = 200  # longer texts are cut to this many tokens

    ranges: ClassVar[dict[str, Range]] = {
        "min_freq": AT_LEAST_1,
        "spm_vocab_size": (lambda v: v >= 8, "at least 8"),
        "max_vocab": NOT_NEGATIVE,
        "max_len": AT_LEAST_1,
    }


# ------------------------------------------------------------------------------------ assets
@dataclass
class ClassifyAssets:
    vocab: Vocab
    labels: list[str]  # class id -> label as written in the data
    tokenizer: Tokenizer

    def files(self) -> dict[str, bytes]:
        files = {VOCAB: self.vocab.to_bytes(), LABELS: (json.dumps(self.labels, ensure_ascii=False) + "\n").encode()}
        if getattr(self.tokenizer, "model_proto", None) is not None:
            files[SPM] = self.tokenizer.model_proto
        return files

    def describe(self) -> str:
        return f"vocab {len(self.vocab):,}, {len(self.labels)} classes ({', '.join(self.labels)})"


def sort_labels(labels) -> list[str]:
    """Class order: numerically when every label is a number ("0" < "1" < "10"), else by text."""
    labels = sorted(set(labels))
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


def make_tokenizer(cfg, proto: bytes | None = None) -> Tokenizer:
    return build_tokenizer(cfg.tokenizer, lowercase=cfg.lowercase, model_proto=proto,
                           split_punctuation=cfg.strip_punctuation)  # fmt: skip


# ------------------------------------------------------------------------------------ dataset
class LabelledDataset:
    """Id-encoded texts and class ids; `collate` pads a batch on demand."""

    def __init__(self, examples: list[Example], assets: ClassifyAssets, *, max_len: int) -> None:
        index = {label: i for i, label in enumerate(assets.labels)}
        self.examples: list[Example] = []
        self.ids: list[list[int]] = []
        self.label_ids: list[int] = []
        self.skipped = 0  # texts that tokenize to nothing
        for ex in examples:
            tokens = assets.tokenizer.tokenize(ex.text)[:max_len]
            if not tokens:
                self.skipped += 1
                continue
            if ex.label not in index:
                raise AttnseqError(
                    f"{ex.where}: label {ex.label!r} is not one of the training labels "
                    f"({', '.join(assets.labels)}); fix the label or add training examples of it"
                )
            self.examples.append(ex)
            self.ids.append(assets.vocab.encode(tokens))
            self.label_ids.append(index[ex.label])

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, index: list[int]):
        seqs = [self.ids[i] for i in index]
        return LabelBatch(pad(seqs, Vocab.pad_id), torch.tensor([len(s) for s in seqs]),
                          torch.tensor([self.label_ids[i] for i in index]), list(index))  # fmt: skip

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        """Batches of similar length (`data.bucketed_batches`)."""
        return bucketed_batches(len(self), lambda i: len(self.ids[i]), batch_size, seed=seed)


# ------------------------------------------------------------------------------------ metrics
def report(predicted: list[str], examples: list[Example], labels: list[str]) -> dict:
    """Scores on all `examples`, and under `domains` per domain when there are several."""
    gold = [ex.label for ex in examples]
    out = classification_scores(predicted, gold, labels)
    domains = sorted({ex.domain for ex in examples})
    if len(domains) > 1:
        out["domains"] = {
            d: classification_scores(
                [p for p, ex in zip(predicted, examples) if ex.domain == d],
                [ex.label for ex in examples if ex.domain == d],
                labels,
            )  # fmt: skip
            for d in domains
        }
    return out


def most_attended(predictions: list[Prediction], labels: list[str], *, top: int = 10) -> dict[str, list]:
    """For each class: the tokens that most often held the largest pooling weight of a text
    predicted as that class, as [token, count] pairs, most frequent first."""
    counts: dict[str, Counter] = {label: Counter() for label in labels}
    for p in predictions:
        if p.attention is not None and p.input_tokens:
            counts[p.output][p.input_tokens[int(np.argmax(p.attention[0]))]] += 1
    return {label: [[tok, n] for tok, n in c.most_common(top)] for label, c in counts.items()}


def tfidf_baseline(train: list[Example], valid: list[Example], cfg) -> tuple[object, dict]:
    """TF-IDF + logistic regression: word uni- and bigrams (the data section's word tokenizer) or
    character 1-4-grams within words, and C, chosen together by validation accuracy (texts
    without spaces between words, such as Korean, usually pick characters). Returns (the fitted
    pipeline, its settings)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    words = build_tokenizer("word", lowercase=cfg.lowercase, split_punctuation=True)
    features = {
        "word 1-2-grams": dict(tokenizer=words.tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2)),
        "character 1-4-grams": dict(analyzer="char_wb", ngram_range=(1, 4), lowercase=cfg.lowercase),
    }
    texts, labels = [ex.text for ex in train], [ex.label for ex in train]
    gold = np.array([ex.label for ex in valid])
    best = None
    for name, vectorizer in features.items():
        for c in (0.3, 1.0, 3.0, 10.0, 30.0):
            model = make_pipeline(
                TfidfVectorizer(sublinear_tf=True, **vectorizer), LogisticRegression(C=c, max_iter=2000)
            )
            model.fit(texts, labels)
            accuracy = float(np.mean(model.predict([ex.text for ex in valid]) == gold))
            if best is None or accuracy > best[0]:
                best = (accuracy, c, name, model)
    return best[3], {"C": best[1], "features": best[2], "valid_accuracy": best[0]}


# ------------------------------------------------------------------------------------ predictor
class Classifier:
    """A trained classifier with its tokenizer, vocabulary and labels: texts in, `Prediction`s out
    (output = the label, score = its probability, alternatives = every class by probability,
    attention = (1, tokens) pooling weights, or None for max / last pooling)."""

    search_options = ()  # one forward pass: nothing to search
    output_kind = "label"  # what the server's page shows: a class and every class's probability
    precision = "fp32"  # that pass runs in float32 whatever the training precision (a small model: nothing to gain)

    def __init__(self, model, config: Config, assets: ClassifyAssets, *, device: str = "cpu") -> None:
        self.model, self.config, self.assets = model.eval(), config, assets
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        return load_predictor(path, task=ClassifyTask(), device=device)

    @property
    def labels(self) -> list[str]:
        return self.assets.labels

    def info(self) -> dict:
        return {"vocab": {"input": len(self.assets.vocab)}, "labels": self.labels}

    def search_defaults(self) -> dict:
        return {}

    @torch.inference_mode()
    def predict(self, inputs: list[str], *, batch_size: int | None = None) -> list[Prediction]:
        inputs = check_inputs(inputs)
        batch_size = check_count("batch_size", batch_size) or self.config.decode.batch_size
        a, max_len = self.assets, self.config.data.max_len
        tokens = [a.tokenizer.tokenize(t)[:max_len] for t in inputs]
        results: list[Prediction | None] = [None] * len(inputs)
        order = sorted((i for i, t in enumerate(tokens) if t), key=lambda i: len(tokens[i]))
        for i, t in enumerate(tokens):
            if not t:  # nothing to read (an empty line): no label, so output stays line-aligned
                results[i] = Prediction(inputs[i], "", 0.0, [], [], None)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            seqs = [a.vocab.encode(tokens[i]) for i in index]
            lengths = torch.tensor([len(s) for s in seqs])
            probs, weights = self.model.probabilities(pad(seqs, Vocab.pad_id).to(self.device), lengths)
            probs = probs.float().cpu().numpy()
            weights = None if weights is None else weights.float().cpu().numpy()
            for row, i in enumerate(index):
                ranked = np.argsort(-probs[row], kind="stable")
                attention = None if weights is None else weights[row : row + 1, : len(tokens[i])]
                alternatives = [Prediction(inputs[i], a.labels[k], float(probs[row, k]), tokens[i], [a.labels[k]],
                                           None) for k in ranked]  # fmt: skip
                best = alternatives[0]
                best.attention, best.alternatives = attention, alternatives
                results[i] = best
        return results  # type: ignore[return-value]

    def evaluate(self, examples: list[Example], *, top: int = 10, predicted: list[str] | None = None) -> dict:
        """Scores on `examples` (`report`), and under `most_attended` for each predicted class the
        tokens that most often got a text's largest pooling weight, with their counts. The
        predicted labels are appended to `predicted` when it is given."""
        predictions = self.predict([ex.text for ex in examples])
        if predicted is not None:
            predicted.extend(p.output for p in predictions)
        out = report([p.output for p in predictions], examples, self.labels)
        if any(p.attention is not None for p in predictions):
            out["most_attended"] = most_attended(predictions, self.labels, top=top)
        return out


# ------------------------------------------------------------------------------------ the task
class ClassifyTask(Task):
    name = "classify"
    metrics = {"accuracy": True, "macro_f1": True, "loss": False}
    default_metric = "accuracy"
    sections = {"data": ClassifyDataConfig, "model": ClassifierConfig}

    def check(self, cfg: Config, at) -> None:
        d, m = cfg.data, cfg.model
        if m.bidirectional and m.hidden_size % 2:
            raise AttnseqError(f"{at('model.hidden_size')}: 'model.hidden_size' = {m.hidden_size} must be even with a "
                               "bidirectional RNN (each direction gets half)")  # fmt: skip
        if any(not 2 <= n <= 5 for n in m.ngrams) or len(set(m.ngrams)) != len(m.ngrams):
            raise AttnseqError(f"{at('model.ngrams')}: 'model.ngrams' = {m.ngrams} must list different orders from 2 "
                               "to 5 (the tokens themselves are order 1, always read), e.g. [2] or [2, 3]")  # fmt: skip
        check_split(d, at)
        if d.files and d.domains and len(d.domains) != len(d.files):
            raise AttnseqError(f"{at('data.domains')}: 'data.domains' names {len(d.domains)} domains for "
                               f"{len(d.files)} data.files; give one name per file or none")  # fmt: skip

    unit = "text"
    predicts_in = Classifier.precision
    decode_options = ("batch_size",)
    no_search = "a classifier, which reads each text in one float32 forward pass (no search)"

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None) -> dict | None:
        """Accuracy and macro-F1 (per domain too) on the test split or --data, beside the TF-IDF +
        logistic regression baseline fitted on the config's train split."""
        if src or ref:
            raise AttnseqError("evaluate: a classifier is scored on --data FILE (TEXT<TAB>LABEL) or its config's "
                               "test split")  # fmt: skip
        d = predictor.config.data
        if not (data or d.test or d.files and d.split[2] > 0):
            return None
        examples = read_labelled(data, d) if data else None
        out = held_out_report(predictor, predictor.config, examples=examples, predicted=outputs)
        out["precision"] = predictor.precision
        return out

    def report_lines(self, report: dict, cfg) -> list[str]:
        """The model beside the baseline, on all test texts and per domain."""
        model, base = self.describe_model(cfg), report["baseline"]
        if "skipped" in base:
            return [f"{model}, {report['n']} texts: accuracy {100 * report['accuracy']:.1f}%, macro-F1 "
                    f"{100 * report['macro_f1']:.1f}", f"TF-IDF baseline skipped: {base['skipped']}"]  # fmt: skip

        def row(name: str, r: dict, b: dict) -> str:
            return (f"  {name:<10} {r['n']:>6}  {100 * r['accuracy']:6.1f}%  {100 * r['macro_f1']:6.1f}   "
                    f"{100 * b['accuracy']:6.1f}%  {100 * b['macro_f1']:6.1f}")  # fmt: skip

        lines = [f"{model} | TF-IDF + logistic regression (C={base['C']:g}, {base['features']}, same split)",
                 f"  {'':<10} {'texts':>6}  {'acc':>7}  {'mF1':>6}   {'acc':>7}  {'mF1':>6}",
                 row("all", report, base)]  # fmt: skip
        lines += [row(domain, r, base["domains"][domain]) for domain, r in report.get("domains", {}).items()]
        return lines

    def plot(self, predictor, text: str, out: Path) -> tuple[str, Path]:
        """The pooling weights over the text's tokens (SPEC 5.2)."""
        from attnseq.plotting import plot_pooling

        p = predictor.predict([text])[0]
        if p.attention is None:
            raise AttnseqError(f"model.pooling = {predictor.config.model.pooling} has no weights to plot; "
                               "train with model.pooling: attention (or mean)")  # fmt: skip
        return f"{p.output}\t{p.score:.4f}", plot_pooling(p.attention, p.input_tokens, out,
                                                           title=f"{p.output} ({p.score:.2f}): {text}")  # fmt: skip

    def ablation_variants(self, cfg: Config) -> list[tuple[str, list[str]]]:
        """Every pooling: SPEC 5.2's attention, and mean, max, last."""
        return [(p, [f"model.pooling={p}"]) for p in ("attention", "mean", "max", "last")]

    def ablation(self, cfg: Config, source: str) -> Ablation:
        """The poolings on the test split, beside the TF-IDF baseline of the same split."""
        splits = split_examples(cfg.data)
        domains = sorted({ex.domain for ex in splits["test"]})
        domains = domains if len(domains) > 1 else []  # `report` breaks scores down by domain only then
        columns = [Column("accuracy", "accuracy", 100, 1, percent=True), Column("macro_f1", "macro-F1", 100, 1),
                   *(Column(f"{d}_accuracy", f"{d} acc", 100, 1, percent=True) for d in domains)]  # fmt: skip

        def flat(r: dict) -> dict:
            return {**r, **{f"{d}_accuracy": r["domains"][d]["accuracy"] for d in domains}}

        baseline, settings = tfidf_baseline(splits["train"], splits["valid"], cfg.data)
        labels = sort_labels(ex.label for ex in splits["train"])
        base = report(list(baseline.predict([ex.text for ex in splits["test"]])), splits["test"], labels)
        return Ablation(held_out=f"the test split of {Path(source).name} (the seeded split of its data section)",
                        columns=columns, score=lambda c: flat(c.evaluate(splits["test"])),
                        baseline={"name": "tfidf_logreg", **settings, **flat(base)},
                        baseline_row="tfidf-logreg")  # fmt: skip

    def describe_model(self, cfg: Config) -> str:
        one = f"{cfg.model.pooling}-pooling classifier"
        return one if cfg.model.members == 1 else f"ensemble of {cfg.model.members} {one}s"

    def summary(self, r: dict) -> str:
        return f"accuracy {100 * r['accuracy']:.1f}%  macro-F1 {100 * r['macro_f1']:.1f}"

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        d = cfg.data
        splits = split_examples(d)
        if saved is not None:
            assets = self.load_assets(cfg, saved)
        else:
            proto = None
            if d.tokenizer == "spm":
                proto = read_spm_model(d.spm_model, "data.spm_model") if d.spm_model else train_sentencepiece(
                    [ex.text for ex in splits["train"]], vocab_size=d.spm_vocab_size, model_type=d.spm_type,
                    lowercase=d.lowercase)  # fmt: skip
            tokenizer = make_tokenizer(d, proto)
            labels = sort_labels(ex.label for ex in splits["train"])
            if len(labels) < 2:
                where = d.train or d.files[0]
                raise AttnseqError(f"{where}: the training split has one label ({labels[0]}); a classifier needs two")
            texts = (tokenizer.tokenize(ex.text)[: d.max_len] for ex in splits["train"])
            source = d.train or ", ".join(d.files)
            vocab = Vocab.build(texts, min_freq=d.min_freq, max_size=d.max_vocab, source=source)
            assets = ClassifyAssets(vocab, labels, tokenizer)
        train = LabelledDataset(splits["train"], assets, max_len=d.max_len)
        valid = LabelledDataset(splits["valid"], assets, max_len=d.max_len)
        for name, dataset in (("train", train), ("valid", valid)):
            if not len(dataset):
                raise AttnseqError(f"data: the {name} split has no text with tokens; check data.files / data.{name}")
        return TaskData(train, valid, assets)

    def load_assets(self, cfg: Config, directory: Path) -> ClassifyAssets:
        directory = Path(directory)
        path = directory / LABELS
        if not path.is_file():
            raise AttnseqError(f"{path}: missing; the model directory is incomplete (copy it whole)")
        labels = read_json_file(path)
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise AttnseqError(f"{path}: expected a JSON list of two or more label strings")
        proto = None
        if cfg.data.tokenizer == "spm":
            if not (directory / SPM).is_file():
                raise AttnseqError(f"{directory / SPM}: missing; the model directory is incomplete (copy it whole)")
            proto = read_spm_model(directory / SPM, "model directory")
        return ClassifyAssets(Vocab.load(directory / VOCAB), labels, make_tokenizer(cfg.data, proto))

    def build_model(self, cfg: Config, assets: ClassifyAssets):
        from attnseq.models.classifier import AttentionClassifier, ClassifierEnsemble

        shape = dict(vocab_size=len(assets.vocab), num_classes=len(assets.labels), pad_id=assets.vocab.pad_id,
                     label_smoothing=cfg.train.label_smoothing)  # fmt: skip
        if cfg.model.members > 1:
            return ClassifierEnsemble(cfg.model, members=cfg.model.members, **shape)
        return AttentionClassifier(cfg.model, **shape)

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        valid = data.valid
        predicted = [p.output for p in self.predictor(model, cfg, data.assets, device=device).predict(
            [ex.text for ex in valid.examples])]  # fmt: skip
        scores = classification_scores(predicted, [ex.label for ex in valid.examples], data.assets.labels)
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    def predictor(self, model, cfg: Config, assets: ClassifyAssets, *, device: str = "cpu") -> Classifier:
        return Classifier(model, cfg, assets, device=device)


def held_out_report(
    classifier: Classifier, cfg: Config, *, examples: list[Example] | None = None, predicted: list[str] | None = None
) -> dict:
    """The classifier on the test split (or `examples`), and beside it the TF-IDF + logistic
    regression baseline fitted on the same config's train split (C chosen on valid), under `baseline`."""
    try:
        splits = split_examples(cfg.data)
    except AttnseqError as exc:  # the training data is not on this machine: the model alone, when it can
        if examples is None:
            raise
        out = classifier.evaluate(examples, predicted=predicted)
        out["baseline"] = {"name": "tfidf_logreg", "skipped": f"its training data is not here ({exc})"}
        return out
    test = examples if examples is not None else splits["test"]
    if not test:
        raise AttnseqError("no test examples: set data.test, or a test share in data.split, or give --data FILE")
    out = classifier.evaluate(test, predicted=predicted)
    baseline, settings = tfidf_baseline(splits["train"], splits["valid"], cfg.data)
    predicted = list(baseline.predict([ex.text for ex in test]))
    out["baseline"] = {"name": "tfidf_logreg", **settings, **report(predicted, test, classifier.labels)}
    return out
