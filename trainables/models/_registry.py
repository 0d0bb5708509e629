"""Model registry: kind name -> class, and the one constructor the trainer calls."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ._mlp import MLP
from ._simple_cnn import SimpleCNN

MODELS: dict[str, type[nn.Module]] = {"simple_cnn": SimpleCNN, "mlp": MLP}


def build_model(
    kind: str,
    *,
    input_shape: tuple[int, int, int],
    head_outputs: Mapping[str, int],
    hidden: int = 128,
    dropout: float = 0.0,
) -> nn.Module:
    """Build a multihead model whose ``forward(x)`` returns ``{head: Tensor[N, head_outputs[head]]}``."""
    if kind not in MODELS:
        raise ValueError(f"model kind must be one of {sorted(MODELS)}, but got {kind!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden must be a positive int, but got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), but got {dropout!r}")
    return MODELS[kind](input_shape=tuple(input_shape), head_outputs=head_outputs, hidden=hidden, dropout=dropout)
