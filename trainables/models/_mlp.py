"""A one-hidden-layer MLP multihead model: small and fast, for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from torch import Tensor, nn

from ._heads import Dropout, Heads, Hidden
from ._simple_cnn import _check_input_shape


class MLP(nn.Module):
    """Flatten, Linear(C*H*W->hidden)+ReLU+Dropout, then one linear head per task."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        head_outputs: Mapping[str, int],
        hidden: Hidden = 128,
        dropout: Dropout = 0.25,
    ) -> None:
        super().__init__()
        # No in-place ReLU: energy hooks keep the Conv/Linear outputs in the graph.
        self.backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prod(_check_input_shape(input_shape)), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.heads = Heads(features=hidden, head_outputs=head_outputs)

    @property
    def last_shared(self) -> nn.Module:
        """The last layer before the heads (GradNorm balances the heads' gradients there)."""
        return self.backbone[1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.heads(self.backbone(x))
