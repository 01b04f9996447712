"""Headline generation (SPEC 6.3, summarization): a text in (a news description, a paper's
abstract), its headline or title out.

Scored by ROUGE-1 / ROUGE-2 / ROUGE-L F1 (the rouge-score package, stemming on) beside two
baselines that need no training: lead, the source's first N words with N tuned on the validation
split, and the source's first sentence (sentencex's segmentation). With `model.copy` the decoder is
a pointer-generator (`modules/copy.py`): its attention weights copy source words; with
`model.coverage` the attention also reads how much each source position has had already.
"""

from __future__ import annotations

from attnseq.contracts import Column
from attnseq.metrics import ROUGE_TYPES, score_summaries
from attnseq.schema import Config
from attnseq.tasks.records import RecordsTask

LEAD_WORDS = range(1, 61)  # the N the lead baseline tries


def lead(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def first_sentence(text: str) -> str:
    """The first sentence of `text` (sentencex's English rules: abbreviations, decimals and
    "e.g." do not end one), spaces normalised; the whole text where it has one sentence."""
    from sentencex import segment

    return " ".join(next(iter(segment("en", text)), text).split())


def tune_lead(pairs: list[tuple[str, str]]) -> int:
    """The N whose lead-N outputs have the highest ROUGE-1 + ROUGE-2 + ROUGE-L on `pairs` (the
    smallest such N on a tie)."""
    refs = [h for _, h in pairs]

    def total(n: int) -> float:
        scores = score_summaries([lead(d, n) for d, _ in pairs], refs)
        return sum(scores[name] for name in ROUGE_TYPES)

    return max(LEAD_WORDS, key=lambda n: (total(n), -n))


class HeadlineTask(RecordsTask):
    name = "headline"
    metrics = {"rougeL": True, "rouge1": True, "rouge2": True, "loss": False}
    default_metric = "rougeL"
    examples = "text-headline pairs"
    columns = [Column("rouge1", "ROUGE-1"), Column("rouge2", "ROUGE-2"), Column("rougeL", "ROUGE-L")]

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  ROUGE-1 {r['rouge1']:.1f}  ROUGE-2 {r['rouge2']:.1f}  ROUGE-L {r['rougeL']:.1f}"

    def score(self, outputs: list[str], refs: list[str]) -> dict:
        return score_summaries(outputs, refs)

    def baseline(self, cfg: Config, test: list[tuple[str, str]]) -> dict:
        """Lead-N (N tuned on valid), with the first-sentence baseline under "first_sentence"."""
        n = tune_lead(self.pairs(cfg, "valid"))
        refs = [h for _, h in test]
        outputs = [lead(d, n) for d, _ in test]
        first = {"name": "first sentence: the source's first sentence (sentencex)",
                 **score_summaries([first_sentence(d) for d, _ in test], refs)}  # fmt: skip
        return {"name": f"lead-{n}: the source's first {n} words (N tuned on the validation split)",
                "words": n, **score_summaries(outputs, refs), "first_sentence": first, "outputs": outputs}  # fmt: skip
