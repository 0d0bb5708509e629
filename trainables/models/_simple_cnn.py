"""SimpleCNN multihead backbone (seed 002), for any channel count and image size."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._heads import Heads
from ._params import SimpleCNNParams

# The seed pools to 7x7 (28x28 MNIST after two 2x pools); smaller images keep their own size
# instead of being upsampled, so 8x8 digits do not pay for a 3136-wide layer of copies.
_POOLED_SIZE = 7


def _after_two_pools(size: int) -> int:
    # MaxPool2d(2, ceil_mode=True) twice is ceil(size / 4): odd and tiny sizes keep at least one pixel.
    return (size + 3) // 4


class SimpleCNN(nn.Module):
    """Conv(C->32)+BN+ReLU+MaxPool, Conv(32->64)+BN+ReLU+MaxPool, AdaptiveAvgPool, Linear(->hidden)+ReLU+Dropout,
    then one linear head per task; keywords: `SimpleCNNParams`."""

    Params = SimpleCNNParams

    def __init__(self, **params: Any) -> None:
        super().__init__()
        p = self.Params(**params)
        in_channels, height, width = p.input_shape
        c1, c2 = p.channels
        pooled = (min(_POOLED_SIZE, _after_two_pools(height)), min(_POOLED_SIZE, _after_two_pools(width)))
        # No in-place ReLU: energy hooks keep the Conv/Linear outputs in the graph.
        self.backbone = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
            nn.Linear(c2 * pooled[0] * pooled[1], p.hidden),
            nn.ReLU(),
            nn.Dropout(p.dropout),
        )
        self.heads = Heads(features=p.hidden, head_outputs=p.head_outputs)

    @property
    def last_shared(self) -> nn.Module:
        """The last layer before the heads (GradNorm balances the heads' gradients there)."""
        return self.backbone[-3]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.heads(self.backbone(x))

