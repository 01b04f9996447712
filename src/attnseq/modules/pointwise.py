"""Pointwise helpers shared by the decoders, the attention and the fused training loop."""

from __future__ import annotations

import torch
from torch import Tensor


def working_dtype(t: Tensor) -> torch.dtype:
    """float32 for inputs in a lower precision; float64 stays float64 (for gradient tests)."""
    return torch.promote_types(t.dtype, torch.float32)


def tanh(x: Tensor) -> Tensor:
    """tanh(x). For a float32 or float64 tensor on a CPU that autograd does not record (decoding,
    and the fused training loop's own forward and backward) it is computed as 2 sigmoid(2x) - 1:
    torch's CPU tanh ran 2.6x slower here in float32 (88 against 33 us at 320 x 256, and 1,690
    against 331 us for concat attention's 320 x 20 x 256). The two agree to the dtype's rounding
    (about 1e-7 in float32). bfloat16 keeps torch.tanh (47 us, no faster the other way)."""
    if (
        x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
        or (x.requires_grad and torch.is_grad_enabled())
    ):
        return torch.tanh(x)
    return torch.sigmoid(x * 2).mul_(2).sub_(1)
