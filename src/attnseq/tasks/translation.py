"""Translation (and any text -> text task): pairs, tokenizers and vocabularies on both sides,
`Seq2Seq` models (SPEC 1-4), validation by greedy exact match and sacreBLEU, the `Translator`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnseq.config import Config
from attnseq.data import PairDataset, read_pairs, tokenize_pairs
from attnseq.errors import AttnseqError
from attnseq.tasks.base import Task, TaskData
from attnseq.tokenize import Tokenizer, fit_tokenizers, load_tokenizers, tokenizer_files
from attnseq.vocab import Vocab

SRC_VOCAB, TGT_VOCAB = "src_vocab.json", "tgt_vocab.json"


@dataclass
class TranslationAssets:
    src_vocab: Vocab
    tgt_vocab: Vocab
    tokenizers: tuple[Tokenizer, Tokenizer]

    def files(self) -> dict[str, bytes]:
        return {SRC_VOCAB: self.src_vocab.to_bytes(), TGT_VOCAB: self.tgt_vocab.to_bytes(),
                **tokenizer_files(self.tokenizers)}  # fmt: skip

    def describe(self) -> str:
        return f"vocab {len(self.src_vocab):,}/{len(self.tgt_vocab):,}"


def load_vocabs(directory: Path) -> tuple[Vocab, Vocab]:
    return Vocab.load(Path(directory) / SRC_VOCAB), Vocab.load(Path(directory) / TGT_VOCAB)


class TranslationTask(Task):
    name = "translate"
    metrics = {"exact_match": True, "bleu": True, "chrf": True, "loss": False}
    default_metric = "exact_match"
    unit = "tok"
    examples = "pairs"

    def describe_model(self, cfg: Config) -> str:
        return f"{cfg.model.decoder}/{cfg.model.attention}"

    def summary(self, r: dict) -> str:
        return f"ppl {r['ppl']:.2f}  exact {r['exact_match']:.1f}%  BLEU {r['bleu']:.1f}"

    def data(self, cfg: Config, *, saved: Path | None = None) -> TaskData:
        """Read and encode train / valid. Tokenizers and vocabularies come from the model directory
        `saved` (resume), else they are built from the training pairs."""
        d = cfg.data
        raw_train = read_pairs(d.train, d, key="data.train")
        raw_valid = read_pairs(d.valid, d, key="data.valid")
        if saved is not None:
            tokenizers = load_tokenizers(d, saved)
        else:
            tokenizers = fit_tokenizers(d, [s for s, _ in raw_train], [t for _, t in raw_train])
        train_pairs = tokenize_pairs(raw_train, *tokenizers)
        valid_pairs = tokenize_pairs(raw_valid, *tokenizers)
        if saved is not None:
            src_vocab, tgt_vocab = load_vocabs(saved)
        else:
            src_vocab, tgt_vocab = (
                Vocab.build(
                    (p[side] for p in train_pairs), min_freq=d.min_freq, max_size=d.max_vocab, source=d.train + suffix
                )  # fmt: skip
                for side, suffix in ((2, d.src_suffix), (3, d.tgt_suffix))
            )
        datasets = []
        for path, pairs in ((d.train, train_pairs), (d.valid, valid_pairs)):
            dataset = PairDataset(pairs, src_vocab=src_vocab, tgt_vocab=tgt_vocab, max_src_len=d.max_src_len,
                                  max_tgt_len=d.max_tgt_len)  # fmt: skip
            if not len(dataset):
                raise AttnseqError(
                    f"{path}: no usable pair: every pair is longer than data.max_src_len / data.max_tgt_len or "
                    "tokenizes to nothing on one side; raise the limits or check the file"
                )
            datasets.append(dataset)
        return TaskData(*datasets, TranslationAssets(src_vocab, tgt_vocab, tokenizers))

    def load_assets(self, cfg: Config, directory: Path) -> TranslationAssets:
        return TranslationAssets(*load_vocabs(directory), load_tokenizers(cfg.data, directory))

    def build_model(self, cfg: Config, assets: TranslationAssets):
        from attnseq.models.seq2seq import build_model

        model = build_model(cfg.model, src_vocab_size=len(assets.src_vocab), tgt_vocab_size=len(assets.tgt_vocab),
                            pad_id=assets.tgt_vocab.pad_id)  # fmt: skip
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

    def predictor(self, model, cfg: Config, assets: TranslationAssets, *, device: str = "cpu"):
        from attnseq.translate import Translator

        return Translator(model, cfg, assets.src_vocab, assets.tgt_vocab, device=device, tokenizers=assets.tokenizers)
