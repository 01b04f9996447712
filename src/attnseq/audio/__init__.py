"""The audio front end of speech models (SPEC 6.4): wav in, log-mel frames out."""

from attnseq.audio.features import FeatureStats, Frontend, read_wav, spec_augment

__all__ = ["FeatureStats", "Frontend", "read_wav", "spec_augment"]
