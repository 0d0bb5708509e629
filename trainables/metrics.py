"""Task metrics per head and aggregated over heads.

Predictions arrive in class-index units (a head loss's ``predict()``): an argmax, a softmax
expectation or a rescaled regression output. Accuracy rounds them, so a continuous prediction
is never compared with an integer target for exact equality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from trainables.losses import IGNORE_INDEX
from trainables.metric_names import DEFAULT_K, MEANS, STEP_METRICS, head_metric_names, metric_names

__all__ = ["STEP_METRICS", "aggregate", "head_metrics", "metric_names", "step_metrics"]



def head_metrics(
    pred: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ordinal: bool,
    unit_range: tuple[float, float] | None,
    k: int = DEFAULT_K,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float]:
    """Metrics of one head over the targets that are not ``ignore_index``.

    With p = clamp(pred, 0, C-1) and r = round(p):
    acc = mean(r == y); and for an ``ordinal`` head (a distance between classes means something):
    mae = mean|p - y| (class units); mae_units = mae * (max - min) / C
    (the C classes are equal-width bins spanning [min, max], decoded to their centres, as VIMH does);
    within1 = mean(|r - y| <= 1) and within{k} = mean(|r - y| <= k), each only where an error can
    exceed it (j < C-1); mae_norm = mae / (C-1).
    Every value is NaN when no target is valid.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, but got {num_classes}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:  # k = 1 would name within1 twice
        raise ValueError(f"k must be an int >= 2, but got {k!r}")
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"pred and target must be 1-d of equal length, but got {tuple(pred.shape)} and {tuple(target.shape)}")
    names = head_metric_names(num_classes=num_classes, ordinal=ordinal, has_units=unit_range is not None, k=k)
    target = _class_indices(target)
    valid = target != ignore_index
    if not bool(valid.any()):
        return dict.fromkeys(names, math.nan)
    p = pred[valid].detach().double().clamp(0, num_classes - 1)
    y = target[valid].double()
    class_error = (p.round() - y).abs()
    mae = (p - y).abs().mean()
    # every candidate, a few scalar ops each; which of them a head reports is head_metric_names' rule
    candidates = {"acc": (class_error == 0).double().mean(), "mae": mae, "mae_norm": mae / (num_classes - 1),
                  "within1": (class_error <= 1).double().mean(), f"within{k}": (class_error <= k).double().mean()}
    if unit_range is not None:
        low, high = unit_range
        candidates["mae_units"] = mae * (high - low) / num_classes
    # One device sync for the whole head.
    return dict(zip(names, torch.stack([candidates[name] for name in names]).tolist(), strict=True))


def step_metrics(
    pred: Tensor,
    target: Tensor,
    *,
    supervised: Sequence[bool],
    dt: float,
    num_classes: int,
    ordinal: bool,
    unit_range: tuple[float, float] | None,
    ignore_index: int = IGNORE_INDEX,
    onset: int = 0,
) -> dict[str, float]:
    """Metrics of one head of a temporal model: ``pred`` [N, T] (class-index units), ``target`` [N],
    ``supervised``: one bool per step (``trainables.temporal.label_mask``), ``onset``: the step at
    which the last stimulus chunk starts (``trainables.temporal.last_onset``).

    The ``head_metrics`` at the last supervised step (the answer the model settles on), and over
    all supervised steps: acc_steps, mae_norm_steps (their mean over steps and samples; only for an
    ``ordinal`` head, as mae_norm); reaction:
    the time (steps x ``dt``) from ``onset`` until the rounded prediction is right at every later
    step, supervised or not (0 if it already is at ``onset``), averaged over samples, counting
    (T - onset) x dt for a sample wrong at the last step. Judged on every step, it does not depend
    on the mask; from the onset, leading null steps do not count (a pattern 0011 added 2 x dt).
    Samples whose target is ``ignore_index`` count in none of them.
    """
    steps = [t for t, kept in enumerate(supervised) if kept]
    if pred.dim() != 2 or pred.shape != (target.shape[0], len(supervised)) or not steps:
        raise ValueError(f"pred must be [N, T] for {target.shape[0]} targets and T={len(supervised)} steps with "
                         f"one supervised, but got {tuple(pred.shape)} and {list(supervised)}")
    target = _class_indices(target)
    kept = pred[:, steps]
    metrics = head_metrics(kept[:, -1], target, num_classes=num_classes, ordinal=ordinal, unit_range=unit_range,
                           ignore_index=ignore_index)
    over = head_metrics(kept.reshape(-1), target.repeat_interleave(len(steps)), num_classes=num_classes,
                        ordinal=ordinal, unit_range=unit_range, ignore_index=ignore_index)
    valid = target != ignore_index
    right = pred[valid].detach().clamp(0, num_classes - 1).round() == target[valid, None]
    # settled[:, t]: right at step t and at every later one
    settled = right.flip(1).cumprod(dim=1).flip(1).bool()
    if not 0 <= onset < len(supervised):
        raise ValueError(f"onset must be a step in [0, {len(supervised) - 1}], but got {onset}")
    first = torch.where(settled.any(dim=1), settled.int().argmax(dim=1), len(supervised))
    reaction = (first - onset).clamp(min=0).double().mean().item() * dt if len(first) else math.nan
    candidates = {**metrics, "acc_steps": over["acc"], "mae_norm_steps": over.get("mae_norm"), "reaction": reaction}
    names = head_metric_names(num_classes=num_classes, ordinal=ordinal, has_units=unit_range is not None, k=DEFAULT_K,
                              temporal=True)
    return {name: candidates[name] for name in names}


def _class_indices(target: Tensor) -> Tensor:
    """Integer targets as int64: against a uint8 target (VIMH's levels) ignore_index -1 wrapped to
    255, and class 255 counted as ignored."""
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, but got dtype {target.dtype}")
    return target.long()


def aggregate(per_head: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted means over the heads that report them: acc_mean, mae_norm_mean (mae_norm makes heads
    with different C comparable; the ordinal heads only) and <name>_mean of each STEP_METRICS name."""
    if not per_head:
        raise ValueError(f"per_head must hold at least one head, but got {dict(per_head)!r}")
    means = {}
    for name in MEANS:
        values = [metrics[name] for metrics in per_head.values() if name in metrics]
        if values:
            means[f"{name}_mean"] = math.fsum(values) / len(values)
    return means
