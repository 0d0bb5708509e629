"""An example losstune plugin: the multi-class hinge loss ``margin``."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from trainables.losses import HeadLoss
from trainables.settings import Rule


class MarginLoss(HeadLoss):
    """Multi-class hinge: mean over valid samples of sum_{j != y} max(0, margin - z_y + z_j)."""

    def __init__(
        self,
        *,
        num_classes: int,
        ignore_index: int = -1,
        margin: Annotated[float, Rule(minimum=0.0, min_open=True, maximum=10.0, searchable=True)] = 1.0,
    ) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)
        self.margin = margin

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        true = logits.gather(1, safe[:, None])
        hinge = torch.clamp(self.margin - true + logits, min=0.0)
        per_sample = hinge.sum(dim=1) - self.margin  # the j == y term is exactly `margin`
        return (per_sample * valid).sum() / valid.sum().clamp(min=1)


def register(registry) -> None:
    registry.add_loss("margin", MarginLoss)
