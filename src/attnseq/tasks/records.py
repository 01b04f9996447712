"""Text -> text tasks whose pairs are records of CSV / JSON Lines files (chat, headline): their data
section and the shared `RecordsTask`: a seeded split, a test report beside a baseline that needs
no training."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from attnseq.contracts import Ablation, TaskData
from attnseq.errors import AttnseqError
from attnseq.models.config import ModelConfig
from attnseq.schema import Config, check_split
from attnseq.tasks.translation import DataConfig, TranslationTask


@dataclass
class RecordsDataConfig(DataConfig):
    """task: chat, headline. Text pairs as records of a CSV file (a header naming `src_field` and
    `tgt_field`) or a JSON Lines file (one object a line, those keys): either `files` pooled and
    split by a seeded shuffle (`split`, `split_seed`), or ready-made `train` / `valid` / `test` files
    of that format. Records with an empty side are dropped and counted."""

    files: list[str] = field(default_factory=list)  # files split into train / valid / test (each in the same shares)
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train / valid / test shares
    split_seed: int = 0  # seeds the split (the same seed, the same split on every machine)
    format: Literal["csv", "jsonl"] = "csv"
    src_field: str = "Q"  # the column (csv) or key (jsonl) of the source text
    tgt_field: str = "A"  # ... and of the target text


class RecordsTask(TranslationTask):
    """A text -> text task whose pairs are records of CSV / JSON Lines files split by a seeded
    shuffle (`RecordsDataConfig`), scored on its test split beside a baseline that needs no
    training. Subclasses set the metrics and implement `score` and `baseline`."""

    examples = "pairs"
    n_examples = 5  # test pairs shown in a report: evenly spaced over the test split
    sections = {"data": RecordsDataConfig, "model": ModelConfig}

    def check(self, cfg: Config, at) -> None:
        check_split(cfg.data, at)
        if not cfg.data.files and not (cfg.data.train and cfg.data.valid):
            raise AttnseqError(f"{at('data.files')}: task {cfg.task} needs data.files (split by data.split) "
                               "or data.train and data.valid")  # fmt: skip
        super().check(cfg, at)

    def pairs(self, cfg: Config, split: str) -> list[tuple[str, str]]:
        from attnseq.readers import split_records

        d = cfg.data
        if not d.files and not getattr(d, split):
            return []
        return [(r.src, r.tgt) for r in split_records(d)[split]]

    def source(self, cfg: Config, split: str) -> str:
        d = cfg.data
        return f"{', '.join(d.files)} ({split} split)" if d.files else getattr(d, split)

    def describe_model(self, cfg: Config) -> str:
        parts = [name for name, on in (("copying", cfg.model.copy), ("coverage", cfg.model.coverage)) if on]
        return super().describe_model(cfg) + (f" with {' and '.join(parts)}" if parts else "")

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """The task's metrics of greedy outputs on (the first train.valid_max_sentences of) valid."""
        valid = data.valid
        limit = cfg.train.valid_max_sentences or len(valid)
        predictor = self.predictor(model, cfg, data.assets, device=device)
        outputs = [p.output for p in predictor.translate(valid.src_text[:limit], beam_size=1, copies=False)]
        refs = [predictor.normalize_reference(r) for r in valid.tgt_text[:limit]]
        scores = self.score(outputs, refs)
        return {name: scores[name] for name in self.metrics if name != "loss"}

    def score(self, outputs: list[str], refs: list[str]) -> dict:
        raise NotImplementedError

    def baseline(self, cfg: Config, test: list[tuple[str, str]]) -> dict:
        """The baseline's outputs on `test` scored as the model's are: {..., "outputs": [...]}."""
        raise NotImplementedError

    def decode_and_score(self, predictor, pairs: list[tuple[str, str]]) -> tuple[list[str], dict]:
        """The predictor's outputs for the sources of `pairs` (the config's search) and the task's
        scores of them against the references, with the decoding time `seconds` and `sent_s`."""
        start = time.perf_counter()
        outputs = [p.output for p in predictor.translate([s for s, _ in pairs], copies=False)]
        seconds = time.perf_counter() - start
        scores = self.score(outputs, [predictor.normalize_reference(r) for _, r in pairs])
        return outputs, {**scores, "seconds": seconds, "sent_s": len(pairs) / max(seconds, 1e-9)}

    def held_out_report(self, predictor, *, pairs: list[tuple[str, str]] | None = None,
                        outputs: list[str] | None = None) -> dict:  # fmt: skip
        """The model's scores on the test split (or `pairs`) with the config's search, the
        baseline's beside them under "baseline", and `n_examples` test pairs (evenly spaced) with
        both outputs. `outputs`, when given, receives the model's outputs."""
        cfg = predictor.config
        test = self.pairs(cfg, "test") if pairs is None else pairs
        if not test:
            raise AttnseqError(f"task {cfg.task}: no test pairs; give --data FILE or a data.split with a test share")
        found, report = self.decode_and_score(predictor, test)
        base = self.baseline(cfg, test)
        shown = base.pop("outputs")
        report["baseline"] = base
        step = max(len(test) // self.n_examples, 1)
        report["examples"] = [
            {"input": test[i][0], "reference": test[i][1], "output": found[i], "baseline": shown[i]}
            for i in range(0, len(test), step)[: self.n_examples]
        ]
        dec = cfg.decode
        report.update(beam_size=dec.beam_size, precision=predictor.precision)
        if outputs is not None:
            outputs.extend(found)
        return report

    reports_after_training = True

    def test_report(self, predictor, *, data=None, src=None, ref=None, outputs=None) -> dict | None:
        """The held-out report on the test split, or on --data (a file in the config's format)."""
        from attnseq.readers import read_records

        if src or ref:
            raise AttnseqError("evaluate: this model is scored on its config's test split or --data FILE (its format)")
        cfg = predictor.config
        if data:
            pairs = [(r.src, r.tgt) for r in read_records(data, cfg.data)[0]]
        else:
            pairs = self.pairs(cfg, "test")
            if not pairs:
                return None
        return self.held_out_report(predictor, pairs=pairs, outputs=outputs)

    def report_lines(self, report: dict, cfg) -> list[str]:
        """The model and its baseline as a small table, the settings of the scores, a few examples."""
        base = report["baseline"]
        lines = [f"{report['n']} test pairs; beam {report['beam_size']}, {report['precision']}",
                 f"  {'':<10}" + "".join(f"{c.label:>12}" for c in self.columns)]  # fmt: skip
        rows = [("model", report), ("baseline", base)] + [(k, v) for k, v in base.items() if isinstance(v, dict)]
        for name, r in rows:
            lines.append(f"  {name:<10.10}" + "".join(f"{c.show(r[c.key]):>12}" for c in self.columns))
        lines += [f"  {'baseline' if r is base else name}: {r['name']}" for name, r in rows[1:]]
        if "bleu_signature" in report:
            lines.append(f"  BLEU: {report['bleu_signature']}; chrF: {report['chrf_signature']}")
        else:
            lines.append(f"  ROUGE: {report['rouge_settings']}")
        for ex in report["examples"]:
            lines += [f"  > {ex['input']}", f"    reference: {ex['reference']}", f"    model:     {ex['output']}",
                      f"    baseline:  {ex['baseline']}"]  # fmt: skip
        return lines

    def held_out_pairs(self, cfg: Config) -> tuple[list[tuple[str, str]], str]:
        """The test split (else the valid split) of the config's records, and its name."""
        pairs = self.pairs(cfg, "test")
        split = "test" if pairs else "valid"
        return pairs or self.pairs(cfg, "valid"), self.source(cfg, split)

    def ablation(self, cfg: Config, source: str) -> Ablation:
        """The wirings and scores of `TranslationTask.ablation`, on the held-out records, with the
        task's baseline as the last row."""
        ablation = super().ablation(cfg, source)
        pairs, _ = self.held_out_pairs(cfg)
        ablation.score = lambda predictor: self.decode_and_score(predictor, pairs)[1]
        ablation.baseline = self.baseline(cfg, pairs)
        return ablation
