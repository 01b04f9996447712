"""Scores of outputs against references: exact match, sacreBLEU's BLEU and chrF, ROUGE,
accuracy and macro-F1, perplexity."""

from __future__ import annotations

import math

import sacrebleu


def exact_match(hyps: list[str], refs: list[str]) -> float:
    """Percentage of hypotheses equal to their reference."""
    return 100.0 * sum(h == r for h, r in zip(hyps, refs, strict=True)) / max(len(refs), 1)


def perplexity(loss_per_token: float) -> float:
    return math.exp(min(loss_per_token, 50.0))


def score_texts(hyps: list[str], refs: list[str]) -> dict:
    """Exact match, cased detokenized sacreBLEU (13a) and chrF, with sacreBLEU's signatures."""
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    return {
        "exact_match": exact_match(hyps, refs),
        "bleu": bleu.corpus_score(hyps, [refs]).score,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "sentences": len(refs),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def score_translations(hyps: list[str], refs: list[str]) -> dict:
    """`score_texts` plus BLEU on lowercased, tokenized text (`bleu_lc_tok`): sacreBLEU with
    lowercase=True and its 13a tokenizer, the form most Multi30k papers report (they ran
    multi-bleu.perl on lowercased, Moses-tokenized text)."""
    lc = sacrebleu.BLEU(lowercase=True, tokenize="13a")
    scores = score_texts(hyps, refs)
    scores["bleu_lc_tok"] = lc.corpus_score(hyps, [refs]).score
    scores["bleu_lc_tok_signature"] = str(lc.get_signature())
    return scores


def distinct(texts: list[str], n: int) -> float:
    """distinct-n (Li et al. 2016): distinct word n-grams over all n-grams of all texts (0 when none)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# Korean has no spaces between the parts of a word, so BLEU counts characters there (sacreBLEU's char
# tokenizer, named in the signature); chrF counts characters anyway.
CHAT_BLEU_TOKENIZE = "char"


def score_replies(hyps: list[str], refs: list[str]) -> dict:
    """A chatbot's replies against the reference answers: sacreBLEU (character tokens), chrF,
    distinct-1 / distinct-2 of the replies, with sacreBLEU's signatures."""
    bleu, chrf = sacrebleu.BLEU(tokenize=CHAT_BLEU_TOKENIZE), sacrebleu.CHRF()
    return {
        "bleu": bleu.corpus_score(hyps, [refs]).score,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "distinct_1": distinct(hyps, 1),
        "distinct_2": distinct(hyps, 2),
        "exact_match": exact_match(hyps, refs),
        "n": len(refs),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def score_summaries(hyps: list[str], refs: list[str]) -> dict:
    """Mean ROUGE-1 / ROUGE-2 / ROUGE-L F1 (x 100) of `hyps` against `refs` (the rouge-score
    package, Porter stemming on)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hyps, refs, strict=True):
        for name, score in scorer.score(ref, hyp).items():
            totals[name] += score.fmeasure
    n = max(len(refs), 1)
    return {**{name: 100.0 * total / n for name, total in totals.items()}, "n": len(refs),
            "rouge_settings": "rouge-score, F1, use_stemmer=True"}  # fmt: skip


def classification_scores(predicted: list[str], gold: list[str], labels: list[str]) -> dict[str, float]:
    """accuracy and macro-F1 (the unweighted mean of each class's F1), both in [0, 1]."""
    from sklearn.metrics import accuracy_score, f1_score

    if not gold:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    return {"accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
            "n": len(gold)}  # fmt: skip
