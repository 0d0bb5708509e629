"""A one-hidden-layer MLP multihead model: small and fast, for tests and smoke runs."""

from __future__ import annotations

from math import prod
from typing import Any

from torch import Tensor, nn

from ._heads import Heads
from ._params import MLPParams


class MLP(nn.Module):
    """Flatten, Linear(C*H*W->hidden)+ReLU+Dropout, then one linear head per task; keywords:
    `MLPParams`."""

    Params = MLPParams

    def __init__(self, **params: Any) -> None:
        super().__init__()
        p = self.Params(**params)
        # No in-place ReLU: energy hooks keep the Conv/Linear outputs in the graph.
        self.backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prod(p.input_shape), p.hidden),
            nn.ReLU(),
            nn.Dropout(p.dropout),
        )
        self.heads = Heads(features=p.hidden, head_outputs=p.head_outputs)

    @property
    def last_shared(self) -> nn.Module:
        """The last layer before the heads (GradNorm balances the heads' gradients there)."""
        return self.backbone[1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.heads(self.backbone(x))
