"""Search as free functions over a model's encode / init_state / step."""

from attnseq.decoding.greedy import Hypotheses, greedy_search

__all__ = ["Hypotheses", "greedy_search"]
