"""The published multi-task balancing rules as pure functions on tensors and numbers.

``dwa_weights``: Dynamic Weight Average (Liu, Johns & Davison 2019). ``pcgrad``: projecting
conflicting gradients (Yu et al. 2020). ``gradnorm_targets``: the target gradient norms of
GradNorm (Chen et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["dwa_weights", "gradnorm_targets", "pcgrad"]


def dwa_weights(history: Sequence[Sequence[float]], *, temperature: float) -> list[float]:
    """Per-head weights from a per-epoch loss history (one list of per-head losses per finished
    epoch, oldest first), with K heads:

        r_k = L_k(t-1) / L_k(t-2),    lambda_k = K exp(r_k / T) / sum_j exp(r_j / T)

    Equal weights (all 1) until two epochs have finished. The weights sum to K. A head whose
    L_k(t-2) is 0 (every target of that epoch ignored, or fitted exactly) has no rate: r_k = 1,
    as for every head before two epochs.
    """
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, but got {temperature!r}")
    if not history:
        raise ValueError(f"history must hold the heads' losses of at least one epoch, but got {list(history)!r}")
    heads = len(history[-1])
    if any(len(epoch) != heads for epoch in history) or heads == 0:
        raise ValueError(f"every epoch of history must have the same number of heads (> 0), but got "
                         f"{[len(epoch) for epoch in history]}")
    if len(history) < 2:
        return [1.0] * heads
    if not all(math.isfinite(v) and v >= 0 for epoch in history[-2:] for v in epoch):
        raise ValueError(f"losses must be finite and >= 0 for their ratios, but got {list(history[-2:])}")
    ratios = [last / before if before > 0 else 1.0 for last, before in zip(history[-1], history[-2])]
    top = max(ratios)  # exp of the shifted ratios: the same weights, no overflow
    exps = [math.exp((r - top) / temperature) for r in ratios]
    return [heads * e / math.fsum(exps) for e in exps]


def pcgrad(grads: Sequence[Tensor], *, generator: torch.Generator) -> list[Tensor]:
    """PCGrad's projected task gradients (their sum is the update), from flat task gradients g_i.

    For every task i, the other tasks j in the order of ``torch.randperm(K, generator=generator)``
    (one draw per task i, skipping i): where the projected g_i conflicts with g_j (g_i . g_j < 0),

        g_i <- g_i - (g_i . g_j) / ||g_j||^2  g_j

    (projections use the original g_j). Without conflicts every g_i stays as it is.
    """
    if not grads:
        raise ValueError("grads must hold at least one flat gradient, but got none")
    shapes = {tuple(g.shape) for g in grads}
    if len(shapes) != 1 or grads[0].dim() != 1:
        raise ValueError(f"grads must be flat tensors of one length, but got shapes {sorted(shapes)}")
    projected = []
    for i, own in enumerate(grads):
        g = own.clone()
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j == i:
                continue
            other = grads[j]
            dot = torch.dot(g, other)
            norm = torch.dot(other, other)
            # where, not if: a comparison read on the host would wait for a GPU at every pair
            coefficient = torch.where((dot < 0) & (norm > 0), dot / norm.clamp(min=torch.finfo(norm.dtype).tiny), 0.0)
            g = g - coefficient * other
        projected.append(g)
    return projected


def gradnorm_targets(norms: Tensor, loss_ratios: Tensor, *, alpha: float) -> Tensor:
    """GradNorm's target gradient norm per task: mean(G) * r_i ** alpha, with r_i the task's
    inverse training rate L_i(t)/L_i(0) over its mean across tasks; a constant (no gradient)."""
    if norms.shape != loss_ratios.shape or norms.dim() != 1:
        raise ValueError(f"norms and loss_ratios must be 1-d of one length, but got {tuple(norms.shape)} and "
                         f"{tuple(loss_ratios.shape)}")
    relative = loss_ratios / loss_ratios.mean()
    return (norms.mean() * relative**alpha).detach()
