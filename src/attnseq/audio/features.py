"""Reading wav files and log-mel features.

`read_wav` reads any file libsndfile reads (wav, flac, ...) with `soundfile`, mixes it to mono and
resamples it with `soxr` when its rate differs from the model's (`resample`; `played_at` uses it
to change a clip's speed for training). `Frontend.log_mel` computes
log(mel power + floor) through `torch.stft` and a Slaney-style mel filterbank (the one librosa
builds by default; tests/test_speech.py holds the two equal). `FeatureStats` are the per-bin mean
and deviation that normalize features; they are fitted on the training set and travel in the model
directory. `spec_augment` masks frequency bands and time spans (Park et al. 2019) for training.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnseq.errors import AttnseqError


def read_wav(source: str | Path | bytes, sample_rate: int, *, name: str | None = None) -> np.ndarray:
    """A mono float32 waveform in [-1, 1] at `sample_rate`, from a file path (or `data:NAME/FILE`)
    or the bytes of a file.

    Raises AttnseqError naming the file when it is missing, not audio, or empty."""
    import soundfile

    where = name or (str(source) if not isinstance(source, bytes) else "the uploaded audio")
    if not isinstance(source, bytes):
        from attnseq.catalogue import resolve

        source = resolve(source)  # data:NAME/FILE paths too
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise AttnseqError(f"{where}: audio file not found; check the path")
    try:
        data, rate = soundfile.read(io.BytesIO(source) if isinstance(source, bytes) else str(source),
                                    dtype="float32", always_2d=True)  # fmt: skip
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AttnseqError(f"{where}: not a readable audio file ({exc}); give a wav (or flac) file") from None
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not len(wave):
        raise AttnseqError(f"{where}: the audio holds no samples")
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, rate: float, sample_rate: float) -> np.ndarray:
    """`wave`, sampled at `rate`, resampled (soxr) to `sample_rate`, as float32."""
    import soxr

    return soxr.resample(wave, rate, sample_rate).astype(np.float32)


def played_at(wave: np.ndarray, speed: float, sample_rate: int) -> np.ndarray:
    """`wave` played `speed` times as fast, as sox's `speed` effect (shorter and higher for
    speed > 1): read as if recorded at sample_rate * speed and resampled back to sample_rate."""
    return resample(wave, sample_rate * speed, sample_rate)


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the mel scale, each scaled to
    unit area (Slaney normalization)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


@dataclass
class FeatureStats:
    """Per-bin mean and standard deviation of the training features (saved as features.json)."""

    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, features: list[Tensor]) -> FeatureStats:
        frames = torch.cat([f.double() for f in features])
        return cls(mean=frames.mean(0).tolist(), std=frames.std(0).clamp(min=1e-3).tolist())

    @classmethod
    def identity(cls, n_mels: int) -> FeatureStats:
        return cls(mean=[0.0] * n_mels, std=[1.0] * n_mels)

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self)) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> FeatureStats:
        try:
            record = json.loads(raw)
            stats = cls(mean=[float(v) for v in record["mean"]], std=[float(v) for v in record["std"]])
        except (ValueError, KeyError, TypeError) as exc:
            raise AttnseqError(f"{where}: not a feature statistics file ({exc}); retrain or restore the file") from None
        if len(stats.mean) != len(stats.std) or not all(s > 0 for s in stats.std):
            raise AttnseqError(f"{where}: mean and std must be lists of one length with std > 0")
        return stats


class Frontend:
    """Waveform -> log-mel frames (n_frames, n_mels): optional pre-emphasis y[n] = x[n] - c x[n - 1]
    (y[0] = x[0]), then frames of `win_ms` every `hop_ms`, centred (frame k covers time k * hop), Hann
    window, power spectrum through the mel filterbank (bands from `fmin` Hz up), then log(mel + floor)."""

    def __init__(
        self, *, sample_rate: int, n_mels: int, win_ms: float, hop_ms: float, floor: float = 1e-6,
        preemphasis: float = 0.0, fmin: float = 0.0,
    ) -> None:  # fmt: skip
        self.sample_rate, self.n_mels, self.floor, self.preemphasis = sample_rate, n_mels, floor, preemphasis
        self.win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        self.n_fft = 1 << (self.win_length - 1).bit_length()  # the next power of two
        self.window = torch.hann_window(self.win_length)
        self.filters = mel_filterbank(sample_rate, self.n_fft, n_mels, fmin=fmin)

    @classmethod
    def from_config(cls, d) -> Frontend:
        return cls(sample_rate=d.sample_rate, n_mels=d.n_mels, win_ms=d.win_ms, hop_ms=d.hop_ms,
                   preemphasis=d.preemphasis, fmin=d.fmin)  # fmt: skip

    @property
    def seconds_per_frame(self) -> float:
        return self.hop_length / self.sample_rate

    def mel_power(self, wave: np.ndarray | Tensor) -> Tensor:
        """(n_frames, n_mels) mel power spectrogram of a mono waveform."""
        wave = torch.as_tensor(wave, dtype=torch.float32)
        if self.preemphasis and wave.numel() > 1:
            wave = torch.cat([wave[:1], wave[1:] - self.preemphasis * wave[:-1]])
        spec = torch.stft(wave, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, pad_mode="constant", return_complex=True)  # fmt: skip
        power = spec.real.square() + spec.imag.square()  # (n_fft / 2 + 1, n_frames)
        return (self.filters @ power).T.contiguous()

    def log_mel(self, wave: np.ndarray | Tensor) -> Tensor:
        return torch.log(self.mel_power(wave) + self.floor)


def spec_augment(
    features: Tensor, lengths: Tensor, *, freq_masks: int, freq_width: int, time_masks: int, time_width: float,
    generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """SpecAugment's masks on a padded batch (B, T, F) of normalized features: per utterance,
    `freq_masks` bands of up to `freq_width` bins and `time_masks` spans of up to `time_width` of
    its length (a fraction) set to 0 (the mean after normalization). Returns a new tensor."""
    out = features.clone()
    batch, _, n_bins = out.shape
    for b in range(batch):
        length = int(lengths[b])
        for _ in range(freq_masks):
            width = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(n_bins - width, 0) + 1, (1,), generator=generator))
            out[b, :, start : start + width] = 0
        max_span = int(time_width * length)
        for _ in range(time_masks):
            width = int(torch.randint(0, max_span + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(length - width, 0) + 1, (1,), generator=generator))
            out[b, start : start + width] = 0
    return out
