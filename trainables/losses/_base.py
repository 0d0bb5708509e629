"""Common base of the head losses: constructor checks, output count and prediction."""

from typing import ClassVar

import torch
from torch import Tensor, nn

from ._checks import IGNORE_INDEX, check_inputs, check_logits, check_num_classes, compute_dtype


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
    return torch.softmax(logits, dim=1) @ centres


class HeadLoss(nn.Module):
    """Base of every head loss: `forward(logits [N, K], target [N] int64) -> scalar`.

    Subclasses add keyword-only tunable parameters (with defaults and type annotations) to
    `__init__`; `loss_parameters` reads them from the signature.

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

    def __init__(self, *, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        check_num_classes(num_classes, ignore_index=ignore_index)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
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
        return num_classes

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
