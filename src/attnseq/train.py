"""Training: teacher forcing, masked cross-entropy, Adam, clipping, LR on plateau, validation every
epoch, early stopping, best and last models, exact resume, a JSONL metrics log.

Run directory layout:
  OUT/best/      model directory of the best validation score
  OUT/last/      model directory of the latest state, with trainer_state.pt for --resume
  OUT/metrics.jsonl
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from attnseq.checkpoint import load_model_dir, load_trainer_state, save_model_dir
from attnseq.config import Config
from attnseq.data import Batch, PairDataset, read_pairs
from attnseq.errors import AttnseqError
from attnseq.metrics import perplexity
from attnseq.model import Seq2Seq, build_model, count_parameters
from attnseq.tokenize import build_tokenizer
from attnseq.translate import Translator
from attnseq.vocab import Vocab

HIGHER_IS_BETTER = {"exact_match": True, "bleu": True, "loss": False}


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AttnseqError(f"train.device = {name!r} but no CUDA GPU is visible; use --set train.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AttnseqError(f"train.device = {name!r} is not a device; use cpu or cuda") from None


@dataclass
class Data:
    train: PairDataset
    valid: PairDataset
    src_vocab: Vocab
    tgt_vocab: Vocab


def load_data(cfg: Config, *, vocabs: tuple[Vocab, Vocab] | None = None) -> Data:
    """Read and encode train / valid; build the vocabularies from train unless given."""
    d = cfg.data
    src_tok = build_tokenizer(d.src_tokenizer, lowercase=d.lowercase)
    tgt_tok = build_tokenizer(d.tgt_tokenizer, lowercase=d.lowercase)
    train_pairs = read_pairs(d.train, d, key="data.train")
    valid_pairs = read_pairs(d.valid, d, key="data.valid")
    if vocabs is None:
        source = d.train + (d.src_suffix or "")
        src_vocab = Vocab.build(
            (src_tok.tokenize(s) for s, _ in train_pairs), min_freq=d.min_freq, max_size=d.max_vocab, source=source
        )
        source = d.train + (d.tgt_suffix or "")
        tgt_vocab = Vocab.build(
            (tgt_tok.tokenize(t) for _, t in train_pairs), min_freq=d.min_freq, max_size=d.max_vocab, source=source
        )
    else:
        src_vocab, tgt_vocab = vocabs
    common = dict(src_tok=src_tok, tgt_tok=tgt_tok, src_vocab=src_vocab, tgt_vocab=tgt_vocab)
    train = PairDataset(train_pairs, max_src_len=d.max_src_len, max_tgt_len=d.max_tgt_len, **common)
    if not len(train):
        raise AttnseqError(
            f"{d.train}: every pair is longer than data.max_src_len / data.max_tgt_len; raise the limits"
        )
    valid = PairDataset(valid_pairs, **common)
    return Data(train, valid, src_vocab, tgt_vocab)


@dataclass
class Progress:
    """Where training stands; saved in trainer_state.pt so that --resume continues exactly."""

    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # next batch of the current epoch
    step: int = 0  # optimizer updates so far
    best: float | None = None  # best validation score
    bad_validations: int = 0  # validations since the best one
    train_seconds: float = 0.0
    done: bool = False  # early-stopped or out of epochs


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # training loss of each step of this call
    best: float | None = None
    stopped_because: str = ""
    valid: dict | None = None  # metrics of the last validation


class Trainer:
    """Train a model described by a config into a run directory."""

    def __init__(self, cfg: Config, out_dir: str | Path, *, resume: bool = False, progress_bar: bool | None = None):
        self.cfg, self.out = cfg, Path(out_dir)
        self.progress_bar = progress_bar
        self.on_validate = None  # optional callback(record) with each validation's metrics.jsonl record
        t = cfg.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = resolve_device(t.device)
        last = self.out / "last"
        if resume:
            if not (last / "trainer_state.pt").is_file():
                raise AttnseqError(f"{self.out}: nothing to resume (no last/trainer_state.pt); drop --resume")
            model, saved_cfg, src_vocab, tgt_vocab = load_model_dir(last)
            if saved_cfg.model != cfg.model or saved_cfg.data != cfg.data:
                raise AttnseqError(
                    f"{self.out}: the config's data / model sections differ from the run being resumed; "
                    "only train.* and decode.* may change on --resume"
                )
            self.data = load_data(cfg, vocabs=(src_vocab, tgt_vocab))
            self.model = model.to(self.device).train()
        else:
            if last.exists() or (self.out / "best").exists():
                raise AttnseqError(
                    f"{self.out}: already holds a training run; pass --resume to continue it or choose another --out"
                )
            self.data = load_data(cfg)
            torch.manual_seed(t.seed)
            self.model: Seq2Seq = build_model(
                cfg.model, src_vocab_size=len(self.data.src_vocab), tgt_vocab_size=len(self.data.tgt_vocab)
            ).to(self.device)
        self.criterion = nn.CrossEntropyLoss(
            ignore_index=self.data.tgt_vocab.pad_id, label_smoothing=t.label_smoothing, reduction="sum"
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        mode = "max" if HIGHER_IS_BETTER[t.valid_metric] else "min"
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode=mode, factor=t.lr_factor, patience=t.lr_patience, min_lr=t.min_lr
        )
        self.progress = Progress()
        if resume:
            self._restore(load_trainer_state(last))
        else:
            torch.manual_seed(t.seed)  # the same stream whether or not the model was built
        self.translator = Translator(self.model, cfg, self.data.src_vocab, self.data.tgt_vocab, device=str(self.device))

    # ------------------------------------------------------------------------------ state
    def _state(self) -> dict:
        p = self.progress
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "progress": {
                "epoch": p.epoch,
                "batch_in_epoch": p.batch_in_epoch,
                "step": p.step,
                "best": p.best,
                "bad_validations": p.bad_validations,
                "train_seconds": p.train_seconds,
                "done": p.done,
            },
        }

    def _restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.progress = Progress(**state["progress"])

    def _save(self, name: str, *, with_state: bool) -> None:
        save_model_dir(
            self.out / name,
            model=self.model,
            config=self.cfg,
            src_vocab=self.data.src_vocab,
            tgt_vocab=self.data.tgt_vocab,
            trainer_state=self._state() if with_state else None,
        )

    def _log(self, record: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batch: Batch) -> float:
        """One update; returns the mean loss per target token."""
        t = self.cfg.train
        batch = batch.to(self.device)
        logits, _ = self.model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=t.teacher_forcing)
        n_tokens = batch.n_tgt_tokens
        loss = self.criterion(logits.reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1)) / n_tokens
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), t.clip)
        self.optimizer.step()
        return loss.item()

    @torch.inference_mode()
    def validate(self) -> dict:
        """Teacher-forced loss / perplexity on all of valid; greedy exact match and BLEU."""
        self.model.eval()
        valid = self.data.valid
        total, n_tokens = 0.0, 0
        for index in valid.batch_indices(self.cfg.decode.batch_size):
            batch = valid.collate(index).to(self.device)
            logits, _ = self.model(batch.src, batch.src_lengths, batch.tgt_in)
            total += float(
                nn.functional.cross_entropy(
                    logits.reshape(-1, logits.size(-1)).float(),
                    batch.tgt_out.reshape(-1),
                    ignore_index=self.data.tgt_vocab.pad_id,
                    reduction="sum",
                )
            )
            n_tokens += batch.n_tgt_tokens
        limit = self.cfg.train.valid_max_sentences or len(valid)
        scores = self.translator.score(valid.src_text[:limit], valid.tgt_text[:limit])
        self.model.train()
        loss = total / max(n_tokens, 1)
        return {
            "loss": loss,
            "ppl": perplexity(loss),
            "exact_match": scores["exact_match"],
            "bleu": scores["bleu"],
            "chrf": scores["chrf"],
        }

    # ------------------------------------------------------------------------------ loop
    def fit(self) -> FitResult:
        cfg, t, p = self.cfg, self.cfg.train, self.progress
        result = FitResult(best=p.best)
        if p.done:
            result.stopped_because = "already finished"
            return result
        higher = HIGHER_IS_BETTER[t.valid_metric]
        self._log(
            {
                "event": "start",
                "step": p.step,
                "params": count_parameters(self.model),
                "train_pairs": len(self.data.train),
                "skipped_pairs": self.data.train.skipped,
                "valid_pairs": len(self.data.valid),
                "config": cfg.to_dict(),
            }
        )
        self.model.train()
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        while p.epoch < t.max_epochs and not result.stopped_because:
            batches = self.data.train.batch_indices(t.batch_size, seed=t.seed + p.epoch)
            bar = tqdm(
                total=len(batches),
                initial=p.batch_in_epoch,
                desc=f"epoch {p.epoch + 1}",
                disable=self.progress_bar is False or None,
                leave=False,
                dynamic_ncols=True,
            )
            epoch_start = time.perf_counter()
            while p.batch_in_epoch < len(batches):
                batch = self.data.train.collate(batches[p.batch_in_epoch])
                loss = self.train_step(batch)
                result.losses.append(loss)
                p.batch_in_epoch += 1
                p.step += 1
                window_loss += loss * batch.n_tgt_tokens
                window_tokens += batch.n_tgt_tokens
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if t.log_every and p.step % t.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    self._log(
                        {
                            "event": "train",
                            "step": p.step,
                            "epoch": p.epoch + 1,
                            "loss": window_loss / window_tokens,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "tok_s": window_tokens / max(elapsed, 1e-9),
                        }
                    )
                    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
                seconds = p.train_seconds + time.perf_counter() - epoch_start
                if t.max_steps and p.step >= t.max_steps:
                    result.stopped_because = f"train.max_steps = {t.max_steps} reached"
                elif t.max_minutes and seconds >= 60 * t.max_minutes:
                    result.stopped_because = f"train.max_minutes = {t.max_minutes:g} reached"
                elif t.save_every and p.step % t.save_every == 0:
                    p.train_seconds = seconds
                    epoch_start = time.perf_counter()
                    self._save("last", with_state=True)
                if result.stopped_because:
                    break
            bar.close()
            p.train_seconds += time.perf_counter() - epoch_start
            end_of_epoch = p.batch_in_epoch >= len(batches)
            if end_of_epoch:
                p.epoch += 1
                p.batch_in_epoch = 0
            metrics = self.validate()
            result.valid = metrics
            score = metrics[t.valid_metric]
            improved = p.best is None or (score > p.best if higher else score < p.best)
            if improved:
                p.best = score
                self._save("best", with_state=False)
            # A stop in mid-epoch (budget) validates for the record but changes no schedule, so a
            # resumed run follows exactly the path of an uninterrupted one.
            if end_of_epoch:
                self.scheduler.step(score)
                p.bad_validations = 0 if improved else p.bad_validations + 1
                if t.patience and p.bad_validations >= t.patience:
                    result.stopped_because = f"no improvement in {t.patience} validations (train.patience)"
                    p.done = True
            if p.epoch >= t.max_epochs:
                p.done = True
                result.stopped_because = result.stopped_because or f"train.max_epochs = {t.max_epochs} done"
            record = {
                "event": "valid",
                "step": p.step,
                "epoch": p.epoch + p.batch_in_epoch / len(batches),  # epochs done, with the fraction
                "lr": self.optimizer.param_groups[0]["lr"],
                "best": p.best,
                "improved": improved,
                "train_minutes": p.train_seconds / 60,
                **metrics,
            }
            self._log(record)
            self._save("last", with_state=True)
            if self.on_validate is not None:
                self.on_validate(record)
            window_start = time.perf_counter()
        result.best = p.best
        self._log({"event": "end", "step": p.step, "reason": result.stopped_because, "best": p.best})
        return result
