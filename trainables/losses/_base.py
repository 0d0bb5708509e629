"""Common base of the head losses: constructor checks, output count and prediction."""

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._checks import check_inputs, check_logits, compute_dtype, outside_autocast
from ._params import HeadLossParams


def prepare(
    logits: Tensor,
    target: Tensor,
    *,
    num_classes: int,
    ignore_index: int,
    outputs: int,
    check_targets: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Check the inputs; return (logits in compute dtype, target with ignored -> 0, valid mask).

    Ignored targets are replaced by class 0 so that gathers and distances stay in range; their
    per-sample values are dropped later by `masked_mean`.
    """
    valid = check_inputs(
        logits,
        target,
        num_classes=num_classes,
        ignore_index=ignore_index,
        outputs=outputs,
        check_targets=check_targets,
    )
    safe = torch.where(valid, target, torch.zeros_like(target))
    return compute_dtype(logits), safe, valid


def expected_class(logits: Tensor) -> Tensor:
    """Softmax expectation over the class centres 0..C-1: sum_j softmax(z)_j * j."""
    centres = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    return outside_autocast(lambda: torch.softmax(logits, dim=1) @ centres, device=logits.device)


class HeadLoss(nn.Module):
    """Base of every head loss: `forward(logits [N, K], target [N] int64) -> scalar`.

    A subclass names its declaration in `Params` (`trainables.losses._params`: the keywords it
    takes, their defaults and checks, without torch); the constructor checks the keywords through
    it and keeps each as an attribute of the same name. A plugin's loss may instead take its own
    keyword-only parameters and pass `num_classes` and `ignore_index` on.

    `check_targets` (an attribute, True by default, not a tunable parameter): whether `forward`
    checks every call that the targets lie in [0, C-1] or equal ignore_index. That check reads a
    device tensor back to the host, a GPU sync per head and step, so a trainer that validated its
    labels once sets it to False.

    `empty_batches` (an attribute, True by default): whether a batch may have every target ignored.
    A loss then divides its sum by the clamped count of kept targets, so such a batch gives a zero
    connected to the graph; a trainer that knows each batch keeps a target (static labels, or a
    temporal presentation with a supervised step) sets it to False, and cross-entropy becomes the
    one fused ``F.cross_entropy`` mean.
    """

    # True when `predict` returns a continuous class-index value rather than an argmax.
    ordinal_prediction: ClassVar[bool] = False
    Params: ClassVar[type[HeadLossParams]] = HeadLossParams

    def __init__(self, **params: Any) -> None:
        super().__init__()
        declared = self.Params(**params)
        for field in dataclasses.fields(declared):
            setattr(self, field.name, getattr(declared, field.name))
        self.check_targets = True
        self.empty_batches = True
        # the (shape, dtype) signature of the inputs `check` last passed without a range check
        self._checked: tuple | None = None

    def check(self, logits: Tensor, target: Tensor) -> None:
        """`check_inputs` of this head; once per input signature when `check_targets` is False
        (the shape and dtype checks cost a step of a small model as much as its loss kernel)."""
        tensors = isinstance(logits, Tensor) and isinstance(target, Tensor)
        signature = (logits.shape, logits.dtype, target.shape, target.dtype) if tensors else None
        if self.check_targets or signature is None or signature != self._checked:
            check_inputs(logits, target, num_classes=self.num_classes, ignore_index=self.ignore_index,
                         outputs=self.outputs(self.num_classes), check_targets=self.check_targets)
            self._checked = None if self.check_targets else signature

    @classmethod
    def outputs(cls, num_classes: int) -> int:
        """Number of output units the head needs for `num_classes` classes."""
        return cls.Params.outputs(num_classes)

    def predict(self, logits: Tensor) -> Tensor:
        """Prediction in class-index units, [N] float: the argmax class."""
        check_logits(logits, outputs=self.outputs(self.num_classes))
        return logits.argmax(dim=1).to(compute_dtype(logits).dtype)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, ignore_index={self.ignore_index}"


class OrdinalHeadLoss(HeadLoss):
    """Head loss whose prediction is the softmax expectation over the class centres."""

    ordinal_prediction: ClassVar[bool] = True

    def predict(self, logits: Tensor) -> Tensor:
        """Prediction in class-index units, [N] float: sum_j softmax(z)_j * j."""
        check_logits(logits, outputs=self.outputs(self.num_classes))
        return expected_class(compute_dtype(logits))
