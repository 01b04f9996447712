"""The training loss, fused: `label_smoothed_nll` (modules/loss.py) of the softmax of the logits,
as one autograd node (`cross_entropy_sum`), and with the output layer W_y (SPEC 1.4 / 2.5) in the
same node (`linear_cross_entropy_sum`, `readout_loss`), so (N, V) logits are never kept.

    loss_i = -(1 - eps) log p(y_i) - (eps / V) sum_j log p(j) = lse_i - (1 - eps) x_{i,y_i} - (eps / V) sum_j x_ij
    d loss_i / d x_ij = softmax(x_i)_j - (1 - eps) [j = y_i] - eps / V

Held equal to `label_smoothed_nll(log_softmax(x), y, eps)` and to torch's cross-entropy, value and
gradients, by tests/test_fast_paths.py::test_fused_losses_equal_the_reference (and, inside a model,
::test_accelerated_loss_equals_the_reference_loss).

Computed through log_softmax and two reductions, the backward passes build and add several (N, V)
tensors; here the forward pass keeps only the log-sum-exp per row and the backward pass writes the
gradient in one (N, V) buffer. With V in the thousands this is the largest elementwise cost of a
training step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnseq.fast.frozen import can_pack, pack_weight, packed_linear


def _loss_sum(logits: Tensor, lse: Tensor, target: Tensor, eps: float) -> Tensor:
    """sum_i lse_i - (1 - eps) x_{i,y_i} - (eps / V) sum_j x_ij, for target (N, 1)."""
    loss = (lse - (1 - eps) * logits.gather(1, target).squeeze(1)).sum()
    return loss - eps / logits.size(-1) * logits.sum() if eps else loss


def _loss_grad_(buffer: Tensor, lse: Tensor, target: Tensor, eps: float) -> Tensor:
    """Turn `buffer` (a copy of the logits, or the logits themselves when no longer needed) into
    d loss / d logits = softmax - (1 - eps) one_hot - eps / V, in place."""
    grad = buffer.sub_(lse.unsqueeze(1)).exp_()
    if eps:
        grad.sub_(eps / grad.size(-1))
    return grad.scatter_add_(1, target, grad.new_full(target.shape, -(1 - eps)))


class _SmoothedCrossEntropySum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, eps: float) -> Tensor:
        target = target.unsqueeze(1)
        lse = torch.logsumexp(logits, dim=-1)  # (N,)
        ctx.save_for_backward(logits, target, lse)
        ctx.eps = eps
        return _loss_sum(logits, lse, target, eps)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        logits, target, lse = ctx.saved_tensors
        return _loss_grad_(logits.clone(), lse, target, ctx.eps).mul_(grad_out), None, None


def cross_entropy_sum(logits: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """`label_smoothed_nll(log_softmax(logits), target, label_smoothing)` of logits (N, V) against
    target ids (N,), in float32 or wider; rows are real tokens only (drop padding before)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return _SmoothedCrossEntropySum.apply(logits, target, float(label_smoothing))


def _output_product(w: Tensor, rows: int, chunk_rows: int):
    """x -> x @ w.T for every chunk of a step of `rows` rows. Where oneDNN packs this dtype and the
    step fills at least two chunks, the weight is reordered into oneDNN's layout once and every
    chunk's product reads it: the packed product is faster than the plain one, in float32 and in
    bfloat16, for a reorder that costs a fraction of one such product. The reorder is a fixed cost,
    larger than a small layer's whole product, so a small output layer or a short step keeps the
    plain product (docs/performance.md, "Measurements behind the fast paths")."""
    if rows >= 2 * chunk_rows and can_pack(w):
        packed = pack_weight(w)
        return lambda x: packed_linear(x, packed)
    return lambda x: x @ w.t()


class _LinearCrossEntropySum(torch.autograd.Function):
    """sum_i CE(W x_i + b, y_i) with the gradients computed in the forward pass, chunk by chunk."""

    @staticmethod
    def forward(ctx, x, weight, bias, target, eps, chunk_rows):
        device_type = x.device.type
        work = torch.promote_types(x.dtype, torch.float32)
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else work
        need_grad = any(ctx.needs_input_grad[:3])
        with torch.autocast(device_type, enabled=False):
            w = weight.to(dtype)
            b = bias.to(work)
            logits_of = _output_product(w, x.size(0), chunk_rows)
            n = x.size(0)
            loss = x.new_zeros((), dtype=work)
            if need_grad:
                dx = torch.empty(x.shape, dtype=work, device=x.device)
                dw = torch.zeros(weight.shape, dtype=work, device=x.device)
                db = torch.zeros(weight.size(0), dtype=work, device=x.device)
            for start in range(0, n, chunk_rows):
                xs = x[start : start + chunk_rows].to(dtype)
                ts = target[start : start + chunk_rows].unsqueeze(1)
                logits = logits_of(xs).to(work).add_(b)  # (n_chunk, V)
                lse = torch.logsumexp(logits, dim=-1)
                loss += _loss_sum(logits, lse, ts, eps)
                if not need_grad:
                    continue
                grad = _loss_grad_(logits, lse, ts, eps)  # in place: the logits are not needed again
                g = grad.to(dtype)
                dx[start : start + chunk_rows] = (g @ w).to(work)
                if dtype != work:
                    dw += (g.t() @ xs).to(work)
                else:
                    dw.addmm_(g.t(), xs)
                db += grad.sum(0)
        if need_grad:
            ctx.save_for_backward(dx, dw, db)
            ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        dx, dw, db = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        return (
            (dx * grad_out).to(x_dtype), (dw * grad_out).to(w_dtype), (db * grad_out).to(b_dtype), None, None, None,
        )  # fmt: skip


def linear_cross_entropy_sum(
    x: Tensor, weight: Tensor, bias: Tensor, target: Tensor, label_smoothing: float = 0.0, *, chunk_rows: int = 0
) -> Tensor:
    """cross_entropy_sum(x @ weight.T + bias, target) without ever holding the (N, V) logits.

    The output layer is the largest product of a training step; run in row chunks, each chunk's
    logits turn into its gradients (softmax minus the smoothed one-hot) while still in cache, and
    the weight gradient accumulates in place. Under bf16 autocast the products run in bfloat16 and
    the softmax in float32. chunk_rows = 0 picks chunks of about 2M logits.
    """
    rows = chunk_rows or max(16, (1 << 21) // weight.size(0))
    return _LinearCrossEntropySum.apply(x, weight, bias, target, float(label_smoothing), rows)


def readout_loss(decoder, features: Tensor, target: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """`decoder.loss(features, target, label_smoothing)` (`RNNDecoder.loss`: the label-smoothed
    cross-entropy of `readout(features)`, W_y applied after the decoder's dropout) as
    `linear_cross_entropy_sum`."""
    W_y = decoder.W_y
    return linear_cross_entropy_sum(decoder.dropout(features), W_y.weight, W_y.bias, target, label_smoothing)
