"""Translation (and any text -> text task): pairs, tokenizers and vocabularies on both sides,
`Seq2Seq` models (SPEC 1-4), validation by greedy exact match and sacreBLEU, the `Translator`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from attnseq.config import Config
from attnseq.data import PairDataset, read_pairs, tokenize_pairs
from attnseq.errors import AttnseqError
from attnseq.fast.shortlist import FILE as SHORTLIST
from attnseq.fast.shortlist import Shortlist
from attnseq.contracts import Task, TaskData
from attnseq.tokenize import Tokenizer, fit_tokenizers, load_tokenizers, tokenizer_files
from attnseq.vocab import Vocab

SRC_VOCAB, TGT_VOCAB = "src_vocab.json", "tgt_vocab.json"


@dataclass
class TranslationAssets:
    src_vocab: Vocab
    tgt_vocab: Vocab
    tokenizers: tuple[Tokenizer, Tokenizer]
    shortlist: Shortlist | None = None  # for decode.shortlist; None in models saved before it existed

    def files(self) -> dict[str, bytes]:
        files = {SRC_VOCAB: self.src_vocab.to_bytes(), TGT_VOCAB: self.tgt_vocab.to_bytes(),
                 **tokenizer_files(self.tokenizers)}  # fmt: skip
        if self.shortlist is not None:
            files[SHORTLIST] = self.shortlist.to_bytes()
        return files

    def describe(self) -> str:
        return f"vocab {len(self.src_vocab):,}/{len(self.tgt_vocab):,}"


def load_vocabs(directory: Path) -> tuple[Vocab, Vocab]:
    return Vocab.load(Path(directory) / SRC_VOCAB), Vocab.load(Path(directory) / TGT_VOCAB)


def load_shortlist(directory: Path) -> Shortlist | None:
    path = Path(directory) / SHORTLIST
    return Shortlist.from_bytes(path.read_bytes()) if path.is_file() else None


class TranslationTask(Task):
    name = "translate"
    metrics = {"exact_match": True, "bleu": True, "chrf": True, "loss": False}
    default_metric = "exact_match"
    unit = "tok"
    examples = "pairs"

    def describe_model(self, cfg: Config) -> str:
        return f"{cfg.model.decoder}/{cfg.model.attention} model"

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  exact {r['exact_match']:.1f}%  BLEU {r['bleu']:.1f}"

    def pairs(self, cfg: Config, split: str) -> list[tuple[str, str]]:
        """The (source, target) texts of a split ("train", "valid", "test"); [] for an unset test."""
        d = cfg.data
        if split == "test" and not d.test:
            return []
        return read_pairs(getattr(d, split), d, key=f"data.{split}")

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        """Read and encode train / valid. Tokenizers and vocabularies come from the model directory
        `saved` (resume), else they are built from the training pairs."""
        d = cfg.data
        raw_train, raw_valid = self.pairs(cfg, "train"), self.pairs(cfg, "valid")
        if saved is not None:
            tokenizers = load_tokenizers(d, saved)
        else:
            tokenizers = fit_tokenizers(d, [s for s, _ in raw_train], [t for _, t in raw_train])
        train_pairs = tokenize_pairs(raw_train, *tokenizers)
        valid_pairs = tokenize_pairs(raw_valid, *tokenizers)
        if saved is not None:
            src_vocab, tgt_vocab = load_vocabs(saved)
        else:
            # a model that copies can write every source token: its target vocabulary holds both sides'
            tgt_sides = (2, 3) if cfg.model.copy else (3,)
            src_vocab, tgt_vocab = (
                Vocab.build(
                    (p[side] for p in train_pairs for side in sides),
                    min_freq=d.min_freq,
                    max_size=d.max_vocab,
                    source=self.source(cfg, "train") + suffix,
                )  # fmt: skip
                for sides, suffix in (((2,), d.src_suffix), (tgt_sides, d.tgt_suffix))
            )
        datasets = []
        for path, pairs in ((self.source(cfg, "train"), train_pairs), (self.source(cfg, "valid"), valid_pairs)):
            dataset = PairDataset(pairs, src_vocab=src_vocab, tgt_vocab=tgt_vocab, max_src_len=d.max_src_len,
                                  max_tgt_len=d.max_tgt_len)  # fmt: skip
            if not len(dataset):
                raise AttnseqError(
                    f"{path}: no usable pair: every pair is longer than data.max_src_len / data.max_tgt_len or "
                    "tokenizes to nothing on one side; raise the limits or check the file"
                )
            datasets.append(dataset)
        if saved is not None:
            shortlist = load_shortlist(saved)
        elif cfg.model.copy:  # a copying model writes source words: no shortlist applies
            shortlist = None
        else:  # from the ids training reads (each source without its closing </s>)
            train = datasets[0]
            shortlist = Shortlist.build([ids[:-1] for ids in train.src_ids], train.tgt_ids, len(src_vocab),
                                        len(tgt_vocab))  # fmt: skip
        return TaskData(*datasets, TranslationAssets(src_vocab, tgt_vocab, tokenizers, shortlist))

    def source(self, cfg: Config, split: str) -> str:
        """Where a split's pairs come from, for messages."""
        return getattr(cfg.data, split)

    def load_assets(self, cfg: Config, directory: Path) -> TranslationAssets:
        return TranslationAssets(
            *load_vocabs(directory), load_tokenizers(cfg.data, directory), load_shortlist(directory)
        )

    def build_model(self, cfg: Config, assets: TranslationAssets):
        from attnseq.models.seq2seq import build_model
        from attnseq.modules.copy import copy_map

        src, tgt = assets.src_vocab, assets.tgt_vocab
        model = build_model(cfg.model, src_vocab_size=len(src), tgt_vocab_size=len(tgt), pad_id=tgt.pad_id,
                            copy_map=copy_map(src, tgt) if cfg.model.copy else None)  # fmt: skip
        model.label_smoothing, model.teacher_forcing = cfg.train.label_smoothing, cfg.train.teacher_forcing
        return model

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """Greedy exact match, sacreBLEU and chrF on (the first train.valid_max_sentences of) valid,
        decoded by a fresh decoding copy of the model's current weights."""
        valid = data.valid
        limit = cfg.train.valid_max_sentences or len(valid)
        translator = self.predictor(model, cfg, data.assets, device=device)
        scores = translator.score(valid.src_text[:limit], valid.tgt_text[:limit], beam_size=1)
        return {"exact_match": scores["exact_match"], "bleu": scores["bleu"], "chrf": scores["chrf"]}

    def predictor_class(self) -> type:
        """The `Translator` class this task's predictor is (a subclass for tasks that add to it)."""
        from attnseq.translate import Translator

        return Translator

    def predictor(self, model, cfg: Config, assets: TranslationAssets, *, device: str = "cpu"):
        return self.predictor_class()(model, cfg, assets.src_vocab, assets.tgt_vocab, device=device,
                                      tokenizers=assets.tokenizers, shortlist=assets.shortlist)  # fmt: skip


class RecordsTask(TranslationTask):
    """A text -> text task whose pairs are records of CSV / JSON Lines files split by a seeded
    shuffle (`config.RecordsDataConfig`), scored on its test split beside a baseline that needs no
    training. Subclasses set the metrics and implement `score` and `baseline`."""

    examples = "pairs"
    n_examples = 5  # test pairs shown in a report: evenly spaced over the test split

    def pairs(self, cfg: Config, split: str) -> list[tuple[str, str]]:
        from attnseq.data import split_records

        d = cfg.data
        if not d.files and not getattr(d, split):
            return []
        return [(r.src, r.tgt) for r in split_records(d)[split]]

    def source(self, cfg: Config, split: str) -> str:
        d = cfg.data
        return f"{', '.join(d.files)} ({split} split)" if d.files else getattr(d, split)

    def describe_model(self, cfg: Config) -> str:
        return super().describe_model(cfg) + (" with copying" if cfg.model.copy else "")

    def validate(self, model, data: TaskData, cfg: Config, *, device: str) -> dict[str, float]:
        """The task's metrics of greedy outputs on (the first train.valid_max_sentences of) valid."""
        valid = data.valid
        limit = cfg.train.valid_max_sentences or len(valid)
        predictor = self.predictor(model, cfg, data.assets, device=device)
        outputs = [p.output for p in predictor.translate(valid.src_text[:limit], beam_size=1)]
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
        outputs = [p.output for p in predictor.translate([s for s, _ in pairs])]
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
