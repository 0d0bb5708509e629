"""Tensor checks shared by the head losses (the parameter checks, without torch, are in
``_params``). Every message has the form "`rule`, but got `value`"."""

from collections.abc import Callable

import torch
from torch import Tensor

from ._params import check_num_classes


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

    `check_targets=False` skips the range check of the target values (the one check that reads a
    device tensor back to the host) and the check of `num_classes` and `ignore_index`, for callers
    that validated their labels and parameters up front.
    """
    if check_targets:  # a module's Params checked both once; a pure function's caller, never
        check_num_classes(num_classes, ignore_index=ignore_index)
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


def outside_autocast(compute: Callable[[], Tensor], *, device: torch.device) -> Tensor:
    """``compute()`` with its matmuls on ``device`` in their inputs' dtype: under autocast they ran
    in 16 bits again after ``compute_dtype`` (supcon's similarities overflowed its fp16 mask value;
    the expected class came out in bf16). Where autocast is off, as for the trainer's losses, a
    plain call (a context per step cost the ordinal loss 1.5 us)."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device.type, enabled=False):
            return compute()
    return compute()


def masked_mean(per_sample: Tensor, valid: Tensor) -> Tensor:
    """Mean of `per_sample` over valid entries.

    Ignored entries are selected away with `where` (not multiplied by 0, which would turn a
    non-finite ignored value into NaN). With no valid entry the result is an exact zero that is
    still part of the graph, so `backward()` works and yields zero gradients, without a GPU sync.
    """
    kept = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    count = valid.sum().clamp(min=1).to(per_sample.dtype)
    return kept.sum() / count
