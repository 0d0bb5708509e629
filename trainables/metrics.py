"""Task metrics per head and aggregated over heads.

Predictions arrive in class-index units (a head loss's ``predict()``): an argmax, a softmax
expectation or a rescaled regression output. Accuracy rounds them, so a continuous prediction
is never compared with an integer target for exact equality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from trainables.data import HeadInfo

__all__ = ["aggregate", "head_metrics", "metric_names"]

DEFAULT_K = 5


def head_metrics(
    pred: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    unit_range: tuple[float, float] | None,
    k: int = DEFAULT_K,
    ignore_index: int = -1,
) -> dict[str, float]:
    """Metrics of one head over the targets that are not ``ignore_index``.

    With p = clamp(pred, 0, C-1) and r = round(p):
    acc = mean(r == y); mae = mean|p - y| (class units); mae_units = mae * (max - min) / C
    (the C classes are equal-width bins spanning [min, max], decoded to their centres, as VIMH does);
    within1 = mean(|r - y| <= 1); within{k} = mean(|r - y| <= k); mae_norm = mae / (C-1).
    Every value is NaN when no target is valid.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, but got {num_classes}")
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"pred and target must be 1-d of equal length, but got {tuple(pred.shape)} and {tuple(target.shape)}")
    names = _head_metric_names(unit_range is not None, k)
    valid = target != ignore_index
    if not bool(valid.any()):
        return dict.fromkeys(names, math.nan)
    p = pred[valid].detach().double().clamp(0, num_classes - 1)
    y = target[valid].double()
    class_error = (p.round() - y).abs()
    mae = (p - y).abs().mean()
    values = [(class_error == 0).double().mean(), mae]
    if unit_range is not None:
        low, high = unit_range
        values.append(mae * (high - low) / num_classes)
    values += [(class_error <= 1).double().mean(), (class_error <= k).double().mean(), mae / (num_classes - 1)]
    # One device sync for the whole head.
    return dict(zip(names, torch.stack(values).tolist()))


def aggregate(per_head: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted means over heads: acc_mean and mae_norm_mean (mae_norm makes heads with different C comparable)."""
    if not per_head:
        raise ValueError(f"per_head must hold at least one head, but got {dict(per_head)!r}")
    return {
        "acc_mean": math.fsum(m["acc"] for m in per_head.values()) / len(per_head),
        "mae_norm_mean": math.fsum(m["mae_norm"] for m in per_head.values()) / len(per_head),
    }


def metric_names(heads: Mapping[str, HeadInfo], *, split: str = "val") -> list[str]:
    """Every metric the trainer reports for ``split``: the valid objectives of a search."""
    names = [
        f"{split}/{head}/{metric}"
        for head, info in heads.items()
        for metric in _head_metric_names(info.unit_range is not None, DEFAULT_K)
    ]
    return names + [f"{split}/acc_mean", f"{split}/mae_norm_mean", f"{split}/energy"]


def _head_metric_names(has_units: bool, k: int) -> list[str]:
    return ["acc", "mae", *(["mae_units"] if has_units else []), "within1", f"within{k}", "mae_norm"]
