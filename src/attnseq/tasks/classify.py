"""Text classification with the notes' attention-pooling classifier (SPEC 5): labelled texts, a
seeded split written in the config, accuracy and macro-F1 (per domain too), a TF-IDF + logistic
regression baseline on the same split, and the `Classifier` predictor.

Data: TSV lines TEXT TAB LABEL, or CSV with a header naming `data.text_column` / `data.label_column`.
With `data.files`, each file is a domain, split train / valid / test by `data.split` under
`data.split_seed`; otherwise `data.train` / `data.valid` / `data.test` are the splits.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnseq.config import Config
from attnseq.data import SPLITS, bucketed_batches, pad, read_lines, seeded_split
from attnseq.errors import AttnseqError
from attnseq.fileio import read_json_file
from attnseq.models.classifier import LabelBatch
from attnseq.contracts import Prediction, Task, TaskData, check_count, check_inputs
from attnseq.tokenize import Tokenizer, build_tokenizer, read_spm_model, train_sentencepiece
from attnseq.vocab import Vocab

VOCAB, LABELS, SPM = "vocab.json", "labels.json", "spm.model"


@dataclass
class Example:
    text: str
    label: str
    domain: str
    where: str  # file:line, for messages


# ------------------------------------------------------------------------------------ reading
def read_labelled(path: str | Path, cfg, *, domain: str = "") -> list[Example]:
    """Read one TSV (TEXT TAB LABEL) or CSV file of labelled texts; every error names file:line."""
    path = Path(path)
    domain = domain or path.stem
    examples = []
    if cfg.format == "csv":
        lines = [line for _, line in read_lines(path)]  # UTF-8 checked line by line
        reader = csv.DictReader(io.StringIO("\n".join(lines)))
        missing = [c for c in (cfg.text_column, cfg.label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise AttnseqError(
                f"{path}:1: no column {', '.join(map(repr, missing))} in the header "
                f"({', '.join(reader.fieldnames or [])}); set data.text_column / data.label_column"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            text, label = (row[cfg.text_column] or "").strip(), (row[cfg.label_column] or "").strip()
            _check(text, label, where)
            examples.append(Example(text, label, domain, where))
    else:
        for lineno, line in read_lines(path):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue  # a blank line (often the last) carries nothing
            if "\t" not in line:
                raise AttnseqError(f"{where}: no tab in the line; write TEXT<TAB>LABEL")
            text, label = line.rsplit("\t", 1)
            _check(text.strip(), label.strip(), where)
            examples.append(Example(text.strip(), label.strip(), domain, where))
    if not examples:
        raise AttnseqError(f"{path}: no labelled text in the file")
    return examples


def _check(text: str, label: str, where: str) -> None:
    if not text:
        raise AttnseqError(f"{where}: the text is empty; fill it or drop the line")
    if not label:
        raise AttnseqError(f"{where}: the label is empty; every text needs a label")


def split_examples(cfg) -> dict[str, list[Example]]:
    """train / valid / test examples: each of data.files shuffled under data.split_seed and cut
    by data.split (so every domain is split in the same shares), or the ready-made files."""
    d = cfg
    if not d.files:
        if not d.train or not d.valid:
            raise AttnseqError("data.files (split by data.split) or data.train and data.valid must be set")
        return {name: read_labelled(getattr(d, name), d) if getattr(d, name) else [] for name in SPLITS}
    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    names = d.domains or [Path(f).stem for f in d.files]
    for i, (path, domain) in enumerate(zip(d.files, names)):
        examples = read_labelled(path, d, domain=domain)
        for name, index in seeded_split(len(examples), d.split, f"{d.split_seed}:{i}").items():
            out[name].extend(examples[j] for j in index)
    return out


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
def classification_scores(predicted: list[str], gold: list[str], labels: list[str]) -> dict[str, float]:
    """accuracy and macro-F1 (the unweighted mean of each class's F1), both in [0, 1]."""
    from sklearn.metrics import accuracy_score, f1_score

    if not gold:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
            "n": len(gold)}  # fmt: skip


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
    precision = "fp32"  # that pass runs in float32 whatever the training precision (a small model: nothing to gain)

    def __init__(self, model, config: Config, assets: ClassifyAssets, *, device: str = "cpu") -> None:
        self.model, self.config, self.assets = model.eval(), config, assets
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Classifier:
        from attnseq.checkpoint import load

        return load(path, device=device, expect=cls, what="a classifier")

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
    unit = "text"
    predicts_in = Classifier.precision

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
