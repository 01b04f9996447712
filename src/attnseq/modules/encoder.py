"""The RNN encoder (SPEC 1.1) and the `Memory` it leaves for the decoder."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CLASSES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

# An RNN state: (L, B, H), or for an LSTM the pair (h, c) of such tensors.
RNNState = Tensor | tuple[Tensor, Tensor]


def map_state(state: RNNState, fn) -> RNNState:
    """Apply `fn` to a state tensor, or to both tensors of an LSTM state."""
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


@dataclass
class Memory:
    """What the decoder reads of the source, computed once per sentence.

    `final` is the context vector c of SPEC 1.1 per layer (both directions joined).
    """

    outputs: Tensor  # (B, S, H) encoder states h_i (the attention values)
    keys: Tensor | None  # (B, S, K) attention keys from `Attention.precompute_keys`, None without attention
    src_mask: Tensor  # (B, S) bool, True at real tokens
    final: RNNState  # (L, B, H) last states of each layer
    src_ids: Tensor | None = None  # (B, S) the source ids, for a model that copies from the source

    def index_select(self, idx: Tensor) -> Memory:
        """Reorder / repeat sentences along the batch (for beam search)."""
        return Memory(
            outputs=self.outputs.index_select(0, idx),
            keys=None if self.keys is None else self.keys.index_select(0, idx),
            src_mask=self.src_mask.index_select(0, idx),
            final=map_state(self.final, lambda s: s.index_select(1, idx)),
            src_ids=None if self.src_ids is None else self.src_ids.index_select(0, idx),
        )

    def with_keys(self, keys: Tensor | None) -> Memory:
        return replace(self, keys=keys)


class RNNEncoder(nn.Module):
    """Embeds the source and runs an RNN / GRU / LSTM over it with packed sequences.

    Args:
        vocab_size: source vocabulary size.
        emb_size: embedding size.
        hidden_size: output size of h_i; each direction has hidden_size / 2 if bidirectional.
        rnn: "rnn" | "gru" | "lstm".
        layers, bidirectional, dropout: as in the config.
        pad_id: padding id (its embedding stays zero).
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        emb_size: int,
        hidden_size: int,
        rnn: str = "lstm",
        layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.num_directions = 2 if bidirectional else 1
        self.hidden_size = hidden_size
        self.layers = layers
        self.embedding = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.ngrams: nn.Module | None = None  # e.g. `HashedNgrams`: added to the token embeddings
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_CLASSES[rnn](
            emb_size,
            hidden_size // self.num_directions,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, src_lengths: Tensor) -> Memory:
        """Encode.

        Args:
            src: (B, S) source ids.
            src_lengths: (B,) real lengths (>= 1).
        Returns:
            Memory with outputs (B, S, H) (zeros at padding), src_mask (B, S), final (L, B, H).
        """
        batch, src_len = src.shape
        emb = self.embedding(src)  # (B, S, E)
        if self.ngrams is not None:
            emb = emb + self.ngrams(src)
        emb = self.dropout(emb)
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(out, batch_first=True, total_length=src_len)  # (B, S, H)

        def join_directions(s: Tensor) -> Tensor:
            # (L * D, B, H / D) -> (L, D, B, H / D) -> (L, B, H)
            s = s.view(self.layers, self.num_directions, batch, -1)
            return torch.cat(list(s.unbind(1)), dim=-1)

        src_mask = torch.arange(src_len, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]
        return Memory(outputs=outputs, keys=None, src_mask=src_mask, final=map_state(final, join_directions))
