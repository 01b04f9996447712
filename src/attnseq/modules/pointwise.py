"""Pointwise helpers shared by the decoders, the attention and the fused training loop."""

from __future__ import annotations

import torch
from torch import Tensor


def working_dtype(t: Tensor) -> torch.dtype:
    """float32 for inputs in a lower precision; float64 stays float64 (for gradient tests)."""
    return torch.promote_types(t.dtype, torch.float32)


def tanh(x: Tensor) -> Tensor:
    """tanh(x). For a float32 or float64 tensor on a CPU that autograd does not record (decoding,
    and the fused training loop's own forward and backward) it is computed as 2 sigmoid(2x) - 1,
    because torch's CPU tanh ran several times slower than that in float32 (docs/performance.md,
    "Measurements behind the fast paths"). The two agree to the dtype's rounding (about 1e-7 in
    float32; tests/test_fast_paths.py::test_pointwise_tanh_equals_torch_tanh). bfloat16 keeps
    torch.tanh, which was no slower."""
    if (
        x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or (x.requires_grad and torch.is_grad_enabled())
    ):
        return torch.tanh(x)
    return torch.sigmoid(x * 2).mul_(2).sub_(1)
