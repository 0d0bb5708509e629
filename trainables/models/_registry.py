"""Model registry: kind name -> declaration (``_params``: no torch), and the one constructor the
trainer calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainables.switches import Switch

from ._params import MLPParams, RecurrentCNNParams, SimpleCNNParams

# Built-in kinds are entered by their declarations; a plugin may enter its nn.Module class.
MODELS: dict[str, type] = {"simple_cnn": SimpleCNNParams, "mlp": MLPParams, "recurrent_cnn": RecurrentCNNParams}
# The ``kind`` switch of the model section; the trainer sets the shapes.
MODEL = Switch(MODELS, fixed=("input_shape", "head_outputs"), complete=True)


def is_temporal(kind: str) -> bool:
    """Whether model ``kind`` runs over timesteps: ``forward(x, presented)`` -> ``{head: [N, T, K]}``
    (a class attribute ``temporal = True``); the others take ``forward(x)`` -> ``{head: [N, K]}``."""
    return bool(getattr(MODEL.declaration(kind), "temporal", False))


def build_model(
    kind: str, *, input_shape: tuple[int, int, int], head_outputs: Mapping[str, int], **params: Any
) -> Any:
    """Build a multihead model (an ``nn.Module``) whose ``forward(x)`` returns
    ``{head: Tensor[N, head_outputs[head]]}`` (a temporal kind: see ``is_temporal``); ``params``
    are the kind's own (``hidden``, ``dropout``, ...), checked against its declaration."""
    values = MODEL.check(MODEL.check_option("model.kind", kind), params, prefix="model.")
    return MODEL.build(kind, input_shape=tuple(input_shape), head_outputs=head_outputs, **values)
