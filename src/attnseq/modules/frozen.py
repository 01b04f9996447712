"""Linear layers for a decoding copy, whose weights no longer change (`model.decoding_copy`).

On a CPU, a step's products are small (a few hundred rows) and run once per generated token, so
how a weight is laid out matters as much as the arithmetic. Measured here (2-core AMD EPYC, torch
2.13), 320 x 256 against a 9,762 x 256 weight: torch's linear 9.7 ms in float32 and 2.7 ms in
bfloat16; the same product with the weight reordered once into oneDNN's blocked layout 3.7 ms and
1.8 ms (see README, performance).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


def can_pack(weight: Tensor) -> bool:
    """Whether `PackedLinear` can hold this weight: a CPU tensor in float32 or bfloat16, in a build
    with oneDNN."""
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(nn.Module):
    """y = x W^T + b, the weight reordered once into oneDNN's layout for its matrix products. The
    same arithmetic as `nn.Linear` in the weight's dtype (summed in another order). For decoding
    copies only: it holds no parameters, so it neither trains nor saves, and it cannot be copied."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if not can_pack(linear.weight):
            raise ValueError(f"cannot pack a {linear.weight.dtype} weight on {linear.weight.device}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


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
    a decoder step. Takes any float input, returns float32. Packed for oneDNN where the build has it
    (its int8 kernels keep their speed at beam-search batch sizes here)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        fp32 = nn.utils.skip_init(nn.Linear, linear.in_features, linear.out_features)  # the RNG stays untouched
        fp32.load_state_dict({"weight": linear.weight.detach().float(), "bias": linear.bias.detach().float()})
        fp32.qconfig = torch.ao.quantization.default_dynamic_qconfig
        engine = torch.backends.quantized.engine
        if "onednn" in torch.backends.quantized.supported_engines:
            torch.backends.quantized.engine = "onednn"
        try:
            with warnings.catch_warnings():  # the eager-mode API warns that it is moving to torchao
                warnings.simplefilter("ignore")
                self.quantized = torch.ao.nn.quantized.dynamic.Linear.from_float(fp32)
        finally:
            torch.backends.quantized.engine = engine

    def forward(self, x: Tensor) -> Tensor:
        return self.quantized(x.float())
