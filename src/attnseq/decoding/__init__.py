"""Search as free functions over a model's encode / init_state / step. Every search (greedy, beam,
sampling through greedy's `choose`, joint CTC / attention through beam's `prefix_scorer`) returns,
for each input, a list of `Hypothesis`, best first."""

from attnseq.decoding.beam import beam_search, length_penalty
from attnseq.decoding.greedy import greedy_search
from attnseq.decoding.hypothesis import Hypothesis, attention_to_cpu
from attnseq.decoding.sampling import Sampler

__all__ = ["Hypothesis", "Sampler", "attention_to_cpu", "beam_search", "greedy_search", "length_penalty"]
