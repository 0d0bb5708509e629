"""Classification head losses: cross-entropy, distance-weighted cross-entropy, focal loss.

Notation: z = logits [N, C], p = softmax(z), y = target, valid = {i : y_i != ignore_index}.
Every loss is mean_{i in valid} loss_i; with no valid target it is a zero connected to the graph.
`check_targets=False` skips the per-call range check of the targets and the check of `num_classes`
and `ignore_index` (see `HeadLoss` and `check_inputs`).
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import HeadLoss, prepare
from ._checks import check_inputs, compute_dtype, masked_mean
from ._params import (
    IGNORE_INDEX,
    CrossEntropyParams,
    FocalParams,
    WeightedCrossEntropyParams,
    check_ce_params,
    check_class_weights,
    check_number,
    check_weighted_ce_params,
)


def _check_focal_params(
    gamma: float, alpha: Sequence[float] | Tensor | None, num_classes: int
) -> None:
    check_number("gamma", gamma)
    if not isinstance(alpha, Tensor):
        check_class_weights("alpha", alpha, num_classes)
    elif alpha.shape != (num_classes,):
        raise ValueError(f"alpha must have shape [{num_classes}], but got {list(alpha.shape)}")
    elif not bool((torch.isfinite(alpha) & (alpha >= 0)).all()) or not bool((alpha > 0).any()):
        raise ValueError(f"every entry of alpha must be a finite number >= 0, one of them > 0, but got {alpha.tolist()}")


def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    label_smoothing: float = 0.0,
    empty_batches: bool = True,
) -> Tensor:
    """Cross-entropy with optional label smoothing eps:

        loss_i = -(1 - eps) * log p_{i, y_i} - (eps / C) * sum_j log p_{i, j}

    `empty_batches=False` promises that at least one target is not ignored (see `HeadLoss`).
    """
    check_ce_params(label_smoothing)
    check_inputs(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=num_classes,
        check_targets=check_targets,
    )
    return _fused_ce(logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing,
                     empty_batches=empty_batches)


def _fused_ce(logits: Tensor, target: Tensor, *, ignore_index: int, label_smoothing: float,
              empty_batches: bool) -> Tensor:
    # One fused kernel that skips ignored rows, instead of a per-sample loss and a masked mean: on
    # a small model those extra ops (and their backward) cost a tenth of a training step. Its mean
    # over the kept rows is 0/0 = NaN when every row is ignored, so a batch that may be empty takes
    # the sum over the count clamped to 1: a zero still connected to the graph.
    logits = compute_dtype(logits)
    if not empty_batches:
        return F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing)
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum",
                            label_smoothing=label_smoothing)
    return total / (target != ignore_index).sum().clamp(min=1).to(total.dtype)


def weighted_ce_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    distance_power: float = 2.0,
    weight: float = 1.0,
    base: float = 0.0,
) -> Tensor:
    """Cross-entropy plus a penalty on probability mass far from the target:

        d_ij   = |j - y_i| / (C - 1)
        loss_i = -log p_{i, y_i}
                 + weight * sum_{j != y_i} p_{i, j} * (base + d_ij ** distance_power)

    Distances are normalised by C - 1 so heads with different class counts are comparable.
    weight = 0 gives plain cross-entropy.
    """
    check_weighted_ce_params(distance_power, weight, base)
    z, y, valid = prepare(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=num_classes,
        check_targets=check_targets,
    )
    log_p = F.log_softmax(z, dim=1)
    ce = -log_p.gather(1, y[:, None])[:, 0]
    classes = torch.arange(num_classes, device=z.device, dtype=z.dtype)
    distance = (classes[None, :] - y[:, None].to(z.dtype)).abs() / (num_classes - 1)
    penalty = (base + distance**distance_power).masked_fill(distance == 0, 0.0)
    per_sample = ce + weight * (log_p.exp() * penalty).sum(dim=1)
    return masked_mean(per_sample, valid)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    gamma: float = 2.0,
    alpha: Sequence[float] | Tensor | None = None,
) -> Tensor:
    """Focal loss (Lin et al., 2017) with optional per-class weights alpha (C values):

        loss_i = -alpha_{y_i} * (1 - p_{i, y_i}) ** gamma * log p_{i, y_i}

    alpha = None means alpha_c = 1; gamma = 0 and alpha = None give cross-entropy exactly.
    The mean is over valid targets (not normalised by the sum of alpha).
    """
    _check_focal_params(gamma, alpha, num_classes)
    return _focal(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        check_targets=check_targets,
        gamma=gamma,
        alpha=alpha,
    )


def _focal(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int,
    check_targets: bool,
    gamma: float,
    alpha: Sequence[float] | Tensor | None,
) -> Tensor:
    """`focal_loss` without its parameter checks."""
    z, y, valid = prepare(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=num_classes,
        check_targets=check_targets,
    )
    log_p_t = F.log_softmax(z, dim=1).gather(1, y[:, None])[:, 0]
    per_sample = -log_p_t
    if gamma != 0:
        # expm1 keeps 1 - p_t accurate near p_t = 1; the floor keeps the pow gradient finite
        # (gamma < 1) when p_t rounds to exactly 1.
        one_minus_p_t = (-torch.expm1(log_p_t)).clamp(min=torch.finfo(z.dtype).tiny)
        per_sample = one_minus_p_t**gamma * per_sample
    if alpha is not None:
        weights = torch.as_tensor(alpha, dtype=z.dtype, device=z.device)
        per_sample = weights[y] * per_sample
    return masked_mean(per_sample, valid)


class CrossEntropyLoss(HeadLoss):
    """Module form of `cross_entropy_loss` (see its docstring for the formula); keywords:
    `CrossEntropyParams`."""

    Params = CrossEntropyParams

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self.check(logits, target)
        return _fused_ce(logits, target, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                         empty_batches=self.empty_batches)


class WeightedCrossEntropyLoss(HeadLoss):
    """Module form of `weighted_ce_loss` (see its docstring for the formula); keywords:
    `WeightedCrossEntropyParams`."""

    Params = WeightedCrossEntropyParams

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return weighted_ce_loss(
            logits,
            target,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            check_targets=self.check_targets,
            distance_power=self.distance_power,
            weight=self.weight,
            base=self.base,
        )


class FocalLoss(HeadLoss):
    """Module form of `focal_loss` (see its docstring for the formula); keywords: `FocalParams`."""

    Params = FocalParams

    def __init__(self, **params: Any) -> None:
        alpha = params.get("alpha")
        if isinstance(alpha, Tensor):  # as `focal_loss` takes it: checked, then kept as numbers
            _check_focal_params(params.get("gamma", FocalParams.gamma), alpha, params.get("num_classes"))
            params = {**params, "alpha": tuple(alpha.tolist())}
        super().__init__(**params)
        # A buffer follows the module to its device, so forward does no host-to-device copy.
        weights = None if self.alpha is None else torch.tensor(self.alpha)
        self.register_buffer("alpha_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        # The parameters were checked in __init__; checking the alpha buffer again would read it
        # back from the GPU every step.
        return _focal(
            logits,
            target,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            check_targets=self.check_targets,
            gamma=self.gamma,
            alpha=self.alpha_weights,
        )
