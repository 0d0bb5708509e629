"""Per-task linear heads on a shared feature vector."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from trainables.head_modules import HeadModules


class Heads(nn.Module):
    """One ``Linear(features, outputs)`` per head; ``forward`` returns ``{head: Tensor[N, outputs]}``."""

    def __init__(self, *, features: int, head_outputs: Mapping[str, int]) -> None:
        super().__init__()
        if not head_outputs:
            raise ValueError(f"head_outputs must name at least one head, but got {dict(head_outputs)!r}")
        for name, outputs in head_outputs.items():
            if not name or "." in name:
                raise ValueError(f"head names must be non-empty and contain no '.', but got {name!r}")
            if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
                raise ValueError(f"head outputs must be a positive int, but got {name}={outputs!r}")
        self.layers = HeadModules({name: nn.Linear(features, outputs) for name, outputs in head_outputs.items()})

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        # In float32 also under autocast: a one-unit regression head (quantized) read at 256
        # levels needs more than bfloat16's 8-bit mantissa (a mean error of 0.27 class in bf16
        # against 0.03 in fp16 on outputs spread over [0, 1]), as do the logits of 256 ordinal
        # classes; the heads are a small part of a step.
        if torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                return self._outputs(features.float())
        return self._outputs(features)

    def _outputs(self, features: Tensor) -> dict[str, Tensor]:
        return {name: layer(features) for name, layer in self.layers.items()}
