"""The listener of Listen, Attend and Spell (SPEC 6.4): a pyramidal bidirectional RNN over
log-mel frames that leaves the same `Memory` as the text encoder, so the decoders, scores and
searches of SPEC 2-4 spell from it unchanged."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnseq.modules.encoder import RNN_CLASSES, Memory, map_state


def stack_frames(x: Tensor, lengths: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Join each k consecutive frames into one: (B, T, F) -> (B, ceil(T / k), k F); a length L
    becomes ceil(L / k). Frames past a length must be zero, so that a last, partial group holds
    the same values however much padding the batch has."""
    if k == 1:
        return x, lengths
    batch, steps, size = x.shape
    extra = -steps % k
    if extra:
        x = torch.cat([x, x.new_zeros(batch, extra, size)], dim=1)
    return x.reshape(batch, (steps + extra) // k, k * size), (lengths + k - 1) // k


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, steps) bool, True at positions below each length."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class PyramidalListener(nn.Module):
    """h = pBLSTM(x): the first layer reads the frames (after `frame_stack`), each later layer
    reads neighbouring pairs of the previous layer's outputs joined, so `layers` layers divide the
    time axis by 2 ** (layers - 1) (Chan et al. 2016, eq. 5).

    Args:
        n_features: values per input frame (mel bands).
        hidden_size: output size of h_i; each direction gets half.
        layers: RNN layers (>= 1); every layer after the first halves the time axis.
        rnn: "rnn" | "gru" | "lstm".
        dropout: between layers.
        frame_stack: frames joined before the first layer.
    """

    def __init__(self, n_features: int, *, hidden_size: int, layers: int = 3, rnn: str = "lstm",
                 dropout: float = 0.0, frame_stack: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.hidden_size, self.frame_stack = hidden_size, frame_stack
        self.layers = layers  # Memory.final holds the top layer only
        sizes = [n_features * frame_stack] + [2 * hidden_size] * (layers - 1)
        self.rnns = nn.ModuleList(
            RNN_CLASSES[rnn](size, hidden_size // 2, batch_first=True, bidirectional=True) for size in sizes
        )
        self.dropout = nn.Dropout(dropout)

    def reduced_lengths(self, lengths: Tensor) -> Tensor:
        """The number of listener outputs for inputs of `lengths` frames."""
        lengths = (lengths + self.frame_stack - 1) // self.frame_stack
        for _ in range(len(self.rnns) - 1):
            lengths = (lengths + 1) // 2
        return lengths

    def forward(self, frames: Tensor, lengths: Tensor) -> Memory:
        """frames (B, T, F) normalized features, lengths (B,) -> Memory over the reduced axis.

        Frames past each length are ignored (padding invariance)."""
        lengths = lengths.to(frames.device)
        frames = frames.to(self.rnns[0].weight_ih_l0.dtype)  # a decoding copy may hold bfloat16 weights
        x = frames * length_mask(lengths, frames.size(1)).unsqueeze(-1).to(frames.dtype)
        x, lengths = stack_frames(x, lengths, self.frame_stack)
        final = None
        for i, rnn in enumerate(self.rnns):
            if i > 0:
                x, lengths = stack_frames(self.dropout(x), lengths, 2)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, final = rnn(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # zeros past lengths
        batch = x.size(0)

        def join_directions(s: Tensor) -> Tensor:  # (2, B, H / 2) -> (1, B, H)
            return s.view(1, 2, batch, -1).transpose(1, 2).reshape(1, batch, -1)

        return Memory(outputs=x, keys=None, src_mask=length_mask(lengths, x.size(1)),
                      final=map_state(final, join_directions))  # fmt: skip
