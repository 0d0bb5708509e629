"""Auxiliary losses (seed 004): terms on the shared feature embedding or between heads, added to a
trial's total loss with their own weight; the ``auxiliary`` switch of a trial.

Each option is a hook of the train loop (``trainables.hooks``): ``on_start`` attaches it to the
trial's ``MultiHeadLoss``, which adds ``weight * loss(outputs, targets)`` to every step's total
(``loss/auxiliary`` in the breakdown). The embedding is the input of the model's ``heads`` module
(the shared backbone's output), taken in training steps only; a temporal model's steps become
rows, as its outputs do.

    supcon       weight * supcon_loss(embedding, labels of `head`, temperature)
    correlation  weight * (corr(E_head, E_other) - target)^2, E the heads' predictions in [0, 1]
                 (softmax expectation over the class centres / (C - 1)), corr over the batch:
                 cov(a, b) / sqrt((var a + eps)(var b + eps)), eps = VARIANCE_FLOOR
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from trainables.losses import supcon_loss
from trainables.losses._base import expected_class
from trainables.losses._checks import compute_dtype

from ._params import SupConParams, TaskCorrelationParams

__all__ = ["VARIANCE_FLOOR", "Auxiliary", "NoAuxiliary", "SupCon", "TaskCorrelation"]

# Added to each head's batch variance in the correlation (a spread of 0.01 in the predictions'
# [0, 1] units): Pearson's r moves as 1 / spread, so a head whose predictions collapse to one value
# got gradients of 10^4 and more on its outputs; above a spread of 0.1 r changes by under 1 %.
VARIANCE_FLOOR = 1e-4


class Auxiliary(nn.Module):
    """Base of the auxiliary losses: ``heads`` names the heads whose labels or outputs it reads
    (kept as ``needed``), ``weight`` scales its term."""

    def __init__(self, *, weight: float, heads: tuple[str, ...]) -> None:
        super().__init__()
        self.weight = weight
        self.needed = heads

    def on_start(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module) -> None:
        missing = [h for h in self.needed if h not in criterion.losses]
        if missing:
            raise ValueError(f"auxiliary heads must be heads of the trial {sorted(criterion.losses)}, but got {missing}")
        criterion.auxiliary = self

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError


class NoAuxiliary:
    """No auxiliary term (the default): a hook that does nothing."""


class SupCon(Auxiliary):
    """Supervised contrastive loss (InfoNCE with same-label positives) on the shared embedding;
    keywords: `SupConParams`."""

    def __init__(self, **params: Any) -> None:
        declared = SupConParams(**params)
        super().__init__(weight=declared.weight, heads=(declared.head,))
        self.head = declared.head
        self.temperature = declared.temperature
        self._taken: list[Tensor] = []  # this step's embeddings, one per call of the heads

    def on_start(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module) -> None:
        heads = getattr(model, "heads", None)
        if not isinstance(heads, nn.Module):
            raise ValueError(f"auxiliary supcon needs a model with its heads in a `heads` module (it reads their "
                             f"input), but got {type(model).__name__}")
        super().on_start(model=model, optimizer=optimizer, criterion=criterion)
        # each forward of the model starts afresh: a forward no loss read leaves nothing behind
        model.register_forward_pre_hook(lambda module, args: self._taken.clear())
        heads.register_forward_pre_hook(self._take)

    def _take(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        if module.training:  # evaluation never reads them
            self._taken.append(args[0])

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        taken = list(self._taken)
        self._taken.clear()
        if not taken:
            raise RuntimeError("auxiliary supcon needs the embedding of this step's forward in training mode, "
                               "but got none")
        embedding = torch.stack(taken, dim=1).reshape(-1, taken[0].shape[-1])  # rows as the outputs'
        return self.weight * supcon_loss(embedding, targets[self.head], temperature=self.temperature)


class TaskCorrelation(Auxiliary):
    """Pulls the batch correlation of two heads' predictions toward ``target``; keywords:
    `TaskCorrelationParams`."""

    def __init__(self, **params: Any) -> None:
        declared = TaskCorrelationParams(**params)
        super().__init__(weight=declared.weight, heads=(declared.head, declared.other))
        self.target = declared.target

    def forward(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        # 16-bit outputs upcast; float64 ones stay (.float() cut them to float32)
        a, b = (_prediction(compute_dtype(outputs[h])) for h in self.needed)
        a, b = a - a.mean(), b - b.mean()
        corr = (a * b).mean() / ((a.square().mean() + VARIANCE_FLOOR) * (b.square().mean() + VARIANCE_FLOOR)).sqrt()
        return self.weight * (corr - self.target) ** 2


def _prediction(z: Tensor) -> Tensor:
    """A differentiable prediction in [0, 1]: the softmax expectation over the class centres over
    C - 1, or the one output of a regression head (quantized)."""
    return expected_class(z) / (z.shape[1] - 1) if z.shape[1] > 1 else z[:, 0]

