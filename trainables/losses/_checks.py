"""Argument and tensor checks shared by the head losses.

Every message has the form "`rule`, but got `value`" so a failing search trial says what to fix;
a parameter check raises ``SettingError`` with the parameter, the rule and the value as data.
"""

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from trainables.settings import SettingError

# The target value a head loss skips (masked steps of a temporal trial, unlabelled rows): the
# default of every loss, the trainer's masks and the metrics.
IGNORE_INDEX = -1

Distance = Literal["l1", "l2", "huber"]
DISTANCES: tuple[str, ...] = get_args(Distance)


def check_num_classes(num_classes: int, *, ignore_index: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, but got {num_classes!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int, but got {ignore_index!r}")
    # An ignore_index inside the class range would silently drop a real class from training.
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index must lie outside [0, {num_classes - 1}], but got {ignore_index}"
        )


def check_number(name: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> None:
    """`value` must be a finite real number >= minimum (> minimum when `strict`)."""
    is_real = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_real and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise SettingError(name, f"a finite number {relation} {minimum:g}", value)


def check_distance(distance: str, delta: float) -> None:
    if distance not in DISTANCES:
        raise SettingError("distance", f"one of {list(DISTANCES)}", distance)
    check_number("delta", delta, strict=True)


def check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise SettingError(name, "a bool", value)


def check_class_weights(name: str, weights: Sequence[float] | None, num_classes: int) -> None:
    if weights is None:
        return
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise SettingError(name, "None or a sequence of floats", weights)
    if len(weights) != num_classes:
        raise SettingError(name, f"a sequence of num_classes={num_classes} entries", weights)
    for value in weights:
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
            raise SettingError(name, "a sequence of finite numbers >= 0", weights)


def check_logits(logits: Tensor, *, outputs: int) -> None:
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        dtype = logits.dtype if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor, but got {dtype}")
    if logits.ndim != 2 or logits.shape[1] != outputs:
        raise ValueError(f"logits must have shape [N, {outputs}], but got {list(logits.shape)}")


def check_inputs(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int,
    outputs: int,
    check_targets: bool = True,
) -> Tensor:
    """Validate `logits` [N, outputs] and `target` [N]; return the mask of non-ignored targets.

    `check_targets=False` skips only the range check of the target values (the one check that
    reads a device tensor back to the host) for callers that validated their labels up front.
    """
    check_logits(logits, outputs=outputs)
    if not isinstance(target, Tensor) or target.dtype != torch.int64:
        dtype = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be an int64 tensor, but got {dtype}")
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"target must have shape [{logits.shape[0]}] (one per logits row), "
            f"but got {list(target.shape)}"
        )
    valid = target != ignore_index
    if not check_targets:
        return valid
    bad = valid & ((target < 0) | (target >= num_classes))
    # `.any()` syncs with the GPU once per call; the alternative (an out-of-range index in a
    # gather) is a device-side assert that kills the CUDA context, or silent garbage on CPU.
    if bool(bad.any()):
        raise ValueError(
            f"targets must lie in [0, {num_classes - 1}] or equal ignore_index={ignore_index}, "
            f"but got {target[bad][:5].tolist()}"
        )
    return valid


def compute_dtype(logits: Tensor) -> Tensor:
    """Half-precision logits (AMP) are upcast: softmax/log terms lose too much in 16 bits."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def masked_mean(per_sample: Tensor, valid: Tensor) -> Tensor:
    """Mean of `per_sample` over valid entries.

    Ignored entries are selected away with `where` (not multiplied by 0, which would turn a
    non-finite ignored value into NaN). With no valid entry the result is an exact zero that is
    still part of the graph, so `backward()` works and yields zero gradients, without a GPU sync.
    """
    kept = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    count = valid.sum().clamp(min=1).to(per_sample.dtype)
    return kept.sum() / count
