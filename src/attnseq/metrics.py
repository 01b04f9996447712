"""Scores of hypotheses against references: exact match, sacreBLEU's BLEU and chrF, perplexity."""

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
