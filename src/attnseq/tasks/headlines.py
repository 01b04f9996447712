"""Headline generation (SPEC 6.3, summarization): a news description in, its headline out.

Scored by ROUGE-1 / ROUGE-2 / ROUGE-L F1 (the rouge-score package, stemming on) beside the lead
baseline: the description's first N words, N tuned on the validation split. With `model.copy`
the decoder is a pointer-generator (`modules/copy.py`): its attention weights copy source words.
"""

from __future__ import annotations

from attnseq.contracts import Column
from attnseq.metrics import ROUGE_TYPES, score_summaries
from attnseq.schema import Config
from attnseq.tasks.records import RecordsTask

LEAD_WORDS = range(1, 61)  # the N the lead baseline tries


def lead(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


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
    examples = "description-headline pairs"
    columns = [Column("rouge1", "ROUGE-1"), Column("rouge2", "ROUGE-2"), Column("rougeL", "ROUGE-L")]

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  ROUGE-1 {r['rouge1']:.1f}  ROUGE-2 {r['rouge2']:.1f}  ROUGE-L {r['rougeL']:.1f}"

    def score(self, outputs: list[str], refs: list[str]) -> dict:
        return score_summaries(outputs, refs)

    def baseline(self, cfg: Config, test: list[tuple[str, str]]) -> dict:
        n = tune_lead(self.pairs(cfg, "valid"))
        outputs = [lead(d, n) for d, _ in test]
        return {"name": f"lead-{n}: the description's first {n} words (N tuned on the validation split)",
                "words": n, **score_summaries(outputs, [h for _, h in test]), "outputs": outputs}  # fmt: skip
