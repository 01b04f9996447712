"""A chatbot (SPEC 6.2): questions in, answers out, a seq2seq model with attention over subwords.

Scored on the held-out answers by sacreBLEU (character tokens, as Korean words run their parts
together; the signature says so), chrF and distinct-1 / distinct-2 of the replies (replies that are
one generic answer score low), beside a retrieval baseline: the training answer of the nearest
training question by TF-IDF over characters. `Chatbot` is the predictor; `attnseq chat` talks to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnseq.checkpoint import load_predictor
from attnseq.contracts import Column
from attnseq.metrics import score_replies
from attnseq.schema import Config
from attnseq.tasks.records import RecordsTask
from attnseq.tasks.translation import Translator
from attnseq.translate import SAMPLING_OPTIONS


class Chatbot(Translator):
    """A `Translator` that replies: beam search by the config's decode section, or sampling
    (`sample=True` with temperature / top_k / top_p) per call."""

    search_options = (*Translator.search_options, *SAMPLING_OPTIONS)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Chatbot:
        return load_predictor(path, task=ChatTask(), device=device)

    def reply(self, questions: list[str], **search):
        return self.translate(questions, **search)


def retrieval_baseline(train: list[tuple[str, str]], questions: list[str]) -> list[str]:
    """For each question, the answer of the most similar training question (cosine similarity of
    TF-IDF vectors of character 1-3-grams within words; ties go to the earlier training pair)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    known = vectorizer.fit_transform([q for q, _ in train])
    similarity = (vectorizer.transform(questions) @ known.T).toarray()
    return [train[int(i)][1] for i in np.argmax(similarity, axis=1)]


class ChatTask(RecordsTask):
    name = "chat"
    metrics = {"chrf": True, "bleu": True, "distinct_2": True, "loss": False}
    default_metric = "chrf"
    columns = [Column("bleu", "BLEU"), Column("chrf", "chrF"), Column("distinct_1", "distinct-1", digits=3),
               Column("distinct_2", "distinct-2", digits=3)]  # fmt: skip
    examples = "question-answer pairs"

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  chrF {r['chrf']:.1f}  BLEU {r['bleu']:.1f}  distinct-2 {r['distinct_2']:.3f}"

    def score(self, outputs: list[str], refs: list[str]) -> dict:
        return score_replies(outputs, refs)

    def baseline(self, cfg: Config, test: list[tuple[str, str]]) -> dict:
        outputs = retrieval_baseline(self.pairs(cfg, "train"), [q for q, _ in test])
        scores = score_replies(outputs, [a for _, a in test])
        return {"name": "retrieval: the answer of the nearest training question (TF-IDF, characters 1-3)",
                **scores, "outputs": outputs}  # fmt: skip

    def predictor_class(self) -> type:
        return Chatbot
