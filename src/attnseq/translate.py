"""Translator: text in, text out, with the attention of every step. Used by the CLI, training's
validation and anything that serves a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attnseq.checkpoint import load_model_dir
from attnseq.config import Config
from attnseq.data import collate_source, encode_source
from attnseq.decoding import greedy_search
from attnseq.metrics import score_texts
from attnseq.model import Seq2Seq
from attnseq.tokenize import build_tokenizers
from attnseq.vocab import EOS, Vocab


@dataclass
class Translation:
    source: str
    text: str  # detokenized output
    src_tokens: list[str]  # what the model read, ending with </s>
    tokens: list[str]  # what it wrote, ending with </s> when it finished
    score: float  # sum of log-probabilities
    attention: np.ndarray | None  # (len(tokens), len(src_tokens)); rows sum to 1


class Translator:
    """Wraps a trained model with its tokenizers and vocabularies."""

    def __init__(
        self, model: Seq2Seq, config: Config, src_vocab: Vocab, tgt_vocab: Vocab, *, device: str = "cpu"
    ) -> None:
        self.model, self.config = model, config
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.device = torch.device(device)
        self.src_tok, self.tgt_tok = build_tokenizers(config.data)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "cpu") -> Translator:
        """Load a model directory (or a training run directory, taking its best model)."""
        model, config, src_vocab, tgt_vocab = load_model_dir(path, device=device)
        return cls(model, config, src_vocab, tgt_vocab, device=device)

    def normalize_reference(self, text: str) -> str:
        """A reference as the model could write it (same lowercasing and spacing)."""
        return self.tgt_tok.detokenize(self.tgt_tok.tokenize(text))

    def score(self, sources: list[str], refs: list[str]) -> dict:
        """Translate `sources` and score them against `refs` (see `metrics.score_texts`)."""
        hyps = [tr.text for tr in self.translate(sources)]
        return score_texts(hyps, [self.normalize_reference(r) for r in refs])

    def translate(self, sentences: list[str], *, batch_size: int | None = None) -> list[Translation]:
        """Greedy-decode `sentences` in length-sorted batches; results come back in input order."""
        batch_size = batch_size or self.config.decode.batch_size
        src_tokens = [self.src_tok.tokenize(s) for s in sentences]
        src_ids = [encode_source(toks, self.src_vocab) for toks in src_tokens]
        order = sorted(range(len(sentences)), key=lambda i: len(src_ids[i]))
        results: list[Translation | None] = [None] * len(sentences)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                self._translate_batch(index, sentences, src_tokens, src_ids, results)
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _translate_batch(self, index, sentences, src_tokens, src_ids, results) -> None:
        v, dec = self.tgt_vocab, self.config.decode
        src, src_lengths = collate_source([src_ids[i] for i in index], self.src_vocab.pad_id)
        max_len = (src_lengths.float() * dec.max_len_a + dec.max_len_b).long().clamp(min=1)
        hyp = greedy_search(
            self.model,
            src.to(self.device),
            src_lengths,
            bos_id=v.bos_id,
            eos_id=v.eos_id,
            pad_id=v.pad_id,
            max_len=max_len.to(self.device),
        )
        tokens, lengths, scores = hyp.tokens.cpu(), hyp.lengths.cpu(), hyp.scores.cpu()
        attn = None if hyp.attn_weights is None else hyp.attn_weights.float().cpu().numpy()
        for row, i in enumerate(index):
            ids = tokens[row, : lengths[row]].tolist()
            out_tokens = v.decode(ids)
            finished = bool(ids) and ids[-1] == v.eos_id
            shown = out_tokens + ([EOS] if finished else [])
            n_src = int(src_lengths[row])
            results[i] = Translation(
                source=sentences[i],
                text=self.tgt_tok.detokenize(out_tokens),
                src_tokens=[*src_tokens[i], EOS],
                tokens=shown,
                score=float(scores[row]),
                attention=None if attn is None else attn[row, : len(shown), :n_src],
            )
