"""Linear layers for a decoding copy, whose weights no longer change (`fast.decoding`): the output
layer W_y and the other linear maps of SPEC 1.4 / 2.5 / 3, computed as `nn.Linear` computes them.

On a CPU, a step's products are small (a few hundred rows) and run once per generated token, so
how a weight is laid out matters as much as the arithmetic: `PackedLinear` reorders a weight once
into oneDNN's blocked layout, `Int8Linear` quantizes the output layer dynamically (figures in
docs/performance.md). Held equal by tests/test_fast_paths.py::test_packed_linear_equals_linear and
tests/test_translation.py::test_int8_decoding_quantizes_the_output_layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnseq import runtime
from attnseq.runtime import PACKED_DTYPE_NAMES, quantize_dynamic_linear  # noqa: F401 - a name of this module too

PACKED_DTYPES = {getattr(torch, d): name for name, d in PACKED_DTYPE_NAMES.items()}


def can_pack(weight: Tensor) -> bool:
    """Whether `PackedLinear` can hold this weight: a CPU tensor in a dtype whose packed kernels run
    on this CPU (`runtime.capabilities().packed`: float32 with oneDNN, bfloat16 where native)."""
    return weight.device.type == "cpu" and PACKED_DTYPES.get(weight.dtype) in runtime.capabilities("cpu").packed


def pack_weight(weight: Tensor) -> Tensor:
    """A linear layer's weight (out, in) reordered once into oneDNN's blocked layout, for
    `packed_linear`; `can_pack(weight)` must hold."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None = None) -> Tensor:
    """x W^T + b with W as `pack_weight` left it."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Module):
    """y = x W^T + b, the weight reordered once into oneDNN's layout for its matrix products. The
    same arithmetic as `nn.Linear` in the weight's dtype (summed in another order). For decoding
    copies only: it holds no parameters, so it neither trains nor saves, and it cannot be copied."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if not can_pack(linear.weight):
            raise ValueError(f"cannot pack a {linear.weight.dtype} weight on {linear.weight.device}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = pack_weight(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        return packed_linear(x, self.weight, self.bias)


def pack_linears(module: nn.Module) -> None:
    """Replace every `nn.Linear` inside `module` whose weight `can_pack` by a `PackedLinear`."""
    targets = [(name, child) for name, child in module.named_modules() if isinstance(child, nn.Linear)]
    for name, linear in targets:
        if can_pack(linear.weight):
            parent, _, attr = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, attr, PackedLinear(linear))


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (per-tensor scale) whose input is quantized to int8 at every
    call (dynamic quantization), for CPU decoding: the (B, V) output layer is the largest product of
    a decoder step. Takes any float input, returns float32. Packed by the first quantized engine
    that runs here (`runtime.capabilities().int8_engine`: onednn, whose int8 kernels keep their
    speed at beam-search batch sizes, then x86 / fbgemm)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        engine = runtime.capabilities("cpu").int8_engine
        if not engine:
            raise ValueError("no quantized engine runs int8 linear layers on this CPU")
        self.engine = engine
        self.quantized = quantize_dynamic_linear(linear, engine=engine)

    def forward(self, x: Tensor) -> Tensor:
        return self.quantized(x.float())
