"""Model registry: kind name -> class, and the one constructor the trainer calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from trainables.switches import Switch

from ._mlp import MLP
from ._simple_cnn import SimpleCNN

MODELS: dict[str, type[nn.Module]] = {"simple_cnn": SimpleCNN, "mlp": MLP}
# The ``kind`` switch of the model section; the trainer sets the shapes.
MODEL = Switch(MODELS, fixed=("input_shape", "head_outputs"), complete=True)


def build_model(
    kind: str, *, input_shape: tuple[int, int, int], head_outputs: Mapping[str, int], **params: Any
) -> nn.Module:
    """Build a multihead model whose ``forward(x)`` returns ``{head: Tensor[N, head_outputs[head]]}``;
    ``params`` are the kind's own (``hidden``, ``dropout``, ...), checked against its signature."""
    values = MODEL.check(MODEL.check_option("model.kind", kind), params, prefix="model.")
    return MODELS[kind](input_shape=tuple(input_shape), head_outputs=head_outputs, **values)
