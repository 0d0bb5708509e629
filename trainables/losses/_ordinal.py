"""Distance-aware head losses for ordered (quantised continuous) targets.

Notation: z = logits, p = softmax(z), y = target class in 0..C-1, valid = {i : y_i != ignore_index}.
Every loss is mean_{i in valid} loss_i; with no valid target it is a zero connected to the graph.
`check_targets=False` skips the per-call range check of the targets and the check of `num_classes`
and `ignore_index` (see `HeadLoss` and `check_inputs`).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import HeadLoss, OrdinalHeadLoss, expected_class, prepare
from ._checks import check_logits, compute_dtype, masked_mean
from ._params import (
    IGNORE_INDEX,
    SIGMA_MIN,
    Distance,
    OrdinalParams,
    QuantizedParams,
    SoftOrdinalParams,
    check_distance,
    check_number,
    check_ordinal_params,
)


def _distance(prediction: Tensor, target: Tensor, distance: Distance, delta: float) -> Tensor:
    """Elementwise l1 |d|, l2 d^2 or huber in its smooth-L1 form: 0.5 d^2 / delta if |d| <= delta
    else |d| - delta / 2, so that beyond delta it weighs errors as l1 does. (Huber's own form,
    delta (|d| - delta / 2), on values scaled by 1 / (C - 1) with delta / (C - 1) made the term
    about C - 1 times weaker than l1's: 255x on VIMH, where ordinal with huber trained as 0.1 x CE.)"""
    if distance == "l1":
        return (prediction - target).abs()
    if distance == "l2":
        return (prediction - target) ** 2
    return F.smooth_l1_loss(prediction, target, reduction="none", beta=delta)


def ordinal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    distance: Distance = "l1",
    alpha: float = 0.1,
    normalize: bool = True,
    delta: float = 1.0,
) -> Tensor:
    """Distance between the softmax expectation and the target, plus alpha * cross-entropy:

        yhat_i = sum_j p_{i, j} * j                        (class centres 0..C-1)
        s      = C - 1 if normalize else 1
        loss_i = dist(yhat_i / s, y_i / s) - alpha * log p_{i, y_i}

    dist is l1, l2 or huber (smooth L1: l1 beyond delta, quadratic within); huber's `delta` is in
    class units, so it becomes delta / s on the scaled values. With normalize=True the distance
    term lies in [0, 1] for every dist.
    """
    check_ordinal_params(distance, alpha, normalize, delta)
    z, y, valid = prepare(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=num_classes,
        check_targets=check_targets,
    )
    scale = num_classes - 1 if normalize else 1
    prediction = expected_class(z) / scale
    per_sample = _distance(prediction, y.to(z.dtype) / scale, distance, delta / scale)
    if alpha != 0:
        per_sample = per_sample + alpha * F.cross_entropy(z, y, reduction="none")
    return masked_mean(per_sample, valid)


def quantized_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    distance: Distance = "l1",
    delta: float = 1.0,
) -> Tensor:
    """Regression of ONE output unit on the class index scaled to [0, 1]:

        loss_i = dist(z_i, y_i / (C - 1))

    dist is l1, l2 or huber (smooth L1: l1 beyond delta, quadratic within) with `delta` in class
    units (delta / (C - 1) on the scaled values).
    The output is not clamped here, so the gradient still pulls it back from outside [0, 1];
    only `QuantizedLoss.predict` clamps.
    """
    check_distance(distance, delta)
    z, y, valid = prepare(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=1,
        check_targets=check_targets,
    )
    scale = num_classes - 1
    per_sample = _distance(z[:, 0], y.to(z.dtype) / scale, distance, delta / scale)
    return masked_mean(per_sample, valid)


def soft_ordinal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    check_targets: bool = True,
    sigma: float = 1.0,
) -> Tensor:
    """KL divergence from a discretised Gaussian around the target to the softmax:

        q_{i, j} = exp(-(j - y_i)^2 / (2 sigma^2)) / sum_k exp(-(k - y_i)^2 / (2 sigma^2))
        loss_i   = KL(q_i || p_i) = sum_j q_{i, j} * (log q_{i, j} - log p_{i, j})

    sigma is in class units, >= SIGMA_MIN = 1e-3 (far narrower Gaussians overflow to NaN);
    j, k run over 0..C-1. The minimum 0 is reached at p_i = q_i.
    """
    check_number("sigma", sigma, minimum=SIGMA_MIN)
    z, y, valid = prepare(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=num_classes,
        check_targets=check_targets,
    )
    classes = torch.arange(num_classes, device=z.device, dtype=z.dtype)
    # log q via log_softmax stays finite where q underflows to 0, so q * log q never gives NaN.
    log_q = F.log_softmax(-((classes[None, :] - y[:, None].to(z.dtype)) ** 2) / (2 * sigma**2), 1)
    per_sample = (log_q.exp() * (log_q - F.log_softmax(z, dim=1))).sum(dim=1)
    return masked_mean(per_sample, valid)


class OrdinalLoss(OrdinalHeadLoss):
    """Module form of `ordinal_loss` (see its docstring for the formula); keywords: `OrdinalParams`."""

    Params = OrdinalParams

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ordinal_loss(
            logits,
            target,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            check_targets=self.check_targets,
            distance=self.distance,
            alpha=self.alpha,
            normalize=self.normalize,
            delta=self.delta,
        )


class QuantizedLoss(HeadLoss):
    """Module form of `quantized_loss` (see its docstring for the formula); one output unit;
    keywords: `QuantizedParams`."""

    ordinal_prediction = True
    Params = QuantizedParams

    def predict(self, logits: Tensor) -> Tensor:
        """Prediction in class-index units, [N] float: clamp(z, 0, 1) * (C - 1)."""
        check_logits(logits, outputs=1)
        return compute_dtype(logits)[:, 0].clamp(0.0, 1.0) * (self.num_classes - 1)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return quantized_loss(
            logits,
            target,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            check_targets=self.check_targets,
            distance=self.distance,
            delta=self.delta,
        )


class SoftOrdinalLoss(HeadLoss):
    """Module form of `soft_ordinal_loss` (see its docstring for the formula); keywords:
    `SoftOrdinalParams`. It predicts the argmax class, the mode of the Gaussian it fits: the
    expectation of a perfect fit (p = q) moves inward at the edges, where q is cut off (3 classes,
    sigma 1: 0.5, 1, 1.5, an accuracy of 1/3)."""

    Params = SoftOrdinalParams

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return soft_ordinal_loss(
            logits,
            target,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            check_targets=self.check_targets,
            sigma=self.sigma,
        )
