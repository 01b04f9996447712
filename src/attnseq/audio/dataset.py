"""The speech dataset (SPEC 6.4): `Featurizer` (waveform -> normalized log-mel frames),
`SpeechAssets` (output vocabulary, tokenizer, feature statistics: the files a speech model
directory holds beside its weights) and `SpeechDataset` (features and id-encoded transcripts,
bucketed batches, SpecAugment on training batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from attnseq.audio.corpus import Utterance
from attnseq.audio.features import FeatureStats, Frontend, spec_augment
from attnseq.batching import Batch, bucketed_batches, pad
from attnseq.tokenize import Tokenizer
from attnseq.vocab import Vocab

if TYPE_CHECKING:
    from attnseq.tasks.speech_config import SpeechDataConfig

VOCAB, STATS, SPM = "tgt_vocab.json", "features.json", "tgt.spm.model"


# ------------------------------------------------------------------------------------ assets
@dataclass
class SpeechAssets:
    vocab: Vocab  # output tokens
    tokenizer: Tokenizer  # transcript <-> tokens
    stats: FeatureStats  # normalization of the features (identity with data.normalize: utterance)

    def files(self) -> dict[str, bytes]:
        files = {VOCAB: self.vocab.to_bytes(), STATS: self.stats.to_bytes()}
        if getattr(self.tokenizer, "model_proto", None) is not None:
            files[SPM] = self.tokenizer.model_proto
        return files

    def describe(self) -> str:
        return f"vocab {len(self.vocab):,}"


class Featurizer:
    """Waveform -> normalized log-mel frames (frames, n_mels), as training and transcription see them."""

    def __init__(self, d: SpeechDataConfig, stats: FeatureStats | None = None) -> None:
        self.frontend = Frontend.from_config(d)
        self.normalize = d.normalize
        self.mean = self.std = None
        if stats is not None:
            self.use(stats)

    def use(self, stats: FeatureStats) -> None:
        """Normalize with `stats` from now on (data.normalize: global)."""
        self.mean, self.std = torch.tensor(stats.mean), torch.tensor(stats.std)

    def raw(self, wave: np.ndarray) -> torch.Tensor:
        return self.frontend.log_mel(wave)

    def normalized(self, raw: torch.Tensor) -> torch.Tensor:
        if self.normalize == "utterance":
            std = raw.std(0).clamp(min=1e-3) if raw.size(0) > 1 else torch.ones(raw.size(1))
            return (raw - raw.mean(0)) / std
        return (raw - self.mean) / self.std

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        return self.normalized(self.raw(wave))


# ------------------------------------------------------------------------------------ dataset
class SpeechDataset:
    """Normalized features and id-encoded transcripts; `collate` pads a batch (and applies
    SpecAugment when `augment` is set)."""

    def __init__(self, utterances: list[Utterance], features: list[torch.Tensor], assets: SpeechAssets, *,
                 max_frames: int, augment: SpeechDataConfig | None = None) -> None:  # fmt: skip
        self.names: list[str] = []
        self.texts: list[str] = []
        self.features: list[torch.Tensor] = []
        self.tgt_ids: list[list[int]] = []
        self.skipped = 0  # utterances over data.max_seconds, or whose transcript tokenizes to nothing
        self.augment = augment if augment is not None and (augment.freq_masks or augment.time_masks) else None
        for utt, feats in zip(utterances, features):
            tokens = assets.tokenizer.tokenize(utt.text)
            if not tokens or feats.size(0) > max_frames:
                self.skipped += 1
                continue
            self.names.append(utt.name)
            self.texts.append(assets.tokenizer.detokenize(tokens))
            self.features.append(feats)
            self.tgt_ids.append(assets.vocab.encode(tokens))

    def __len__(self) -> int:
        return len(self.features)

    def collate(self, index: list[int]) -> Batch:
        feats = [self.features[i] for i in index]
        lengths = torch.tensor([f.size(0) for f in feats], dtype=torch.long)
        src = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        if self.augment is not None:
            a = self.augment
            src = spec_augment(src, lengths, freq_masks=a.freq_masks, freq_width=a.freq_width,
                               time_masks=a.time_masks, time_width=a.time_width)  # fmt: skip
        tgt = [self.tgt_ids[i] for i in index]
        tgt_lengths = torch.tensor([len(t) + 1 for t in tgt], dtype=torch.long)
        return Batch(src=src, src_lengths=lengths, tgt_in=pad([[Vocab.bos_id, *t] for t in tgt], Vocab.pad_id),
                     tgt_out=pad([[*t, Vocab.eos_id] for t in tgt], Vocab.pad_id), index=list(index),
                     tgt_lengths=tgt_lengths, n_tgt_tokens=int(tgt_lengths.sum()))  # fmt: skip

    def batch_indices(self, batch_size: int, *, seed: int | None = None) -> list[list[int]]:
        """Batches of similar length in frames (`data.bucketed_batches`)."""
        return bucketed_batches(len(self), lambda i: self.features[i].size(0), batch_size, seed=seed)
