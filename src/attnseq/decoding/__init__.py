"""Search as free functions over a model's encode / init_state / step."""

from attnseq.decoding.beam import Hypothesis, beam_search, length_penalty
from attnseq.decoding.greedy import Hypotheses, greedy_search
from attnseq.decoding.sampling import Sampler

__all__ = ["Hypotheses", "Hypothesis", "Sampler", "beam_search", "greedy_search", "length_penalty"]
