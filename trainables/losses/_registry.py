"""Name -> head-loss registry (the ``loss`` switch of a head), its factory, and the tunable
parameters read from signatures."""

import inspect
from typing import Any

from trainables.switches import Switch

from ._base import HeadLoss
from ._checks import IGNORE_INDEX
from ._classification import CrossEntropyLoss, FocalLoss, WeightedCrossEntropyLoss
from ._ordinal import OrdinalLoss, QuantizedLoss, SoftOrdinalLoss
from ._robust import SymmetricCrossEntropyLoss

LOSSES: dict[str, type[HeadLoss]] = {
    "ce": CrossEntropyLoss,
    "ordinal": OrdinalLoss,
    "quantized": QuantizedLoss,
    "weighted_ce": WeightedCrossEntropyLoss,
    "focal": FocalLoss,
    "soft_ordinal": SoftOrdinalLoss,
    "symmetric_ce": SymmetricCrossEntropyLoss,
}

# Set by the head (data set and trainer), never searched.
LOSS = Switch(LOSSES, fixed=("num_classes", "ignore_index"))


def loss_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Tunable parameters of loss ``name``: its keyword-only __init__ parameters except
    num_classes and ignore_index, each with its default and its annotation as a runtime object
    (float, int, bool, Literal[...] or tuple[float, ...] | None)."""
    return LOSS.parameters(LOSS.check_option("loss", name))


def build_loss(name: str, *, num_classes: int, ignore_index: int = IGNORE_INDEX, **params: Any) -> HeadLoss:
    """Instantiate loss ``name`` for a head with ``num_classes`` classes.

    Raises ``SettingError`` (a ValueError with the key, rule and value as attributes) for an
    unknown name or parameter and for a value the loss refuses.
    """
    values = LOSS.check(LOSS.check_option("loss", name), params)
    return LOSSES[name](num_classes=num_classes, ignore_index=ignore_index, **values)
