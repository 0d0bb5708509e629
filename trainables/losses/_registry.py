"""Name -> head-loss registry (the ``loss`` switch of a head), its factory, and the tunable
parameters read from the declarations (``_params``: no torch)."""

import inspect
from typing import Any

from trainables.settings import SettingError
from trainables.switches import Switch

from ._params import (
    IGNORE_INDEX,
    CrossEntropyParams,
    FocalParams,
    OrdinalParams,
    QuantizedParams,
    SoftOrdinalParams,
    SymmetricCrossEntropyParams,
    WeightedCrossEntropyParams,
)

# Built-in losses are entered by their declarations; a plugin may enter its HeadLoss class.
LOSSES: dict[str, type] = {
    "ce": CrossEntropyParams,
    "ordinal": OrdinalParams,
    "quantized": QuantizedParams,
    "weighted_ce": WeightedCrossEntropyParams,
    "focal": FocalParams,
    "soft_ordinal": SoftOrdinalParams,
    "symmetric_ce": SymmetricCrossEntropyParams,
}

# Set by the head (data set and trainer), never searched.
LOSS = Switch(LOSSES, fixed=("num_classes", "ignore_index"))


def loss_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Tunable parameters of loss ``name``: its keyword-only parameters except num_classes and
    ignore_index, each with its default and its annotation as a runtime object (float, int, bool,
    Literal[...] or tuple[float, ...] | None)."""
    return LOSS.parameters(LOSS.check_option("loss", name))


def check_loss(name: str, *, num_classes: int, **params: Any) -> None:
    """Check loss ``name``'s parameters for a head of ``num_classes`` classes without building the
    loss (no torch for a built-in one). Raises ``SettingError`` (a ValueError with the key, rule
    and value as attributes) for an unknown name or parameter and for a value the loss refuses."""
    LOSSES[LOSS.check_option("loss", name)](num_classes=num_classes, **LOSS.check(name, params))


def build_loss(name: str, *, num_classes: int, ignore_index: int = IGNORE_INDEX, **params: Any) -> Any:
    """Instantiate loss ``name`` (a ``HeadLoss``) for a head with ``num_classes`` classes.

    Raises ``SettingError`` (a ValueError with the key, rule and value as attributes) for an
    unknown name or parameter and for a value the loss refuses.
    """
    values = LOSS.check(LOSS.check_option("loss", name), params)
    return LOSS.build(name, num_classes=num_classes, ignore_index=ignore_index, **values)


def check_fits_head(name: str, *, num_classes: int, ordinal: bool, head: str, key: str) -> None:
    """SettingError (``key``: the head's loss key) unless loss ``name`` fits head ``head``: a loss
    with fewer output units than classes regresses the class index, and one that
    ``uses_class_distance`` weighs errors by it, which is a quantity only on an ordinal head (a
    categorical head's class numbers are arbitrary)."""
    declaration = LOSS.declaration(LOSS.check_option("loss", name))
    units = declaration.outputs(num_classes)
    if not ordinal and units < num_classes:
        raise SettingError(key, f"a loss with one output per class on a categorical head (`{name}` regresses the "
                           f"class index with {units} output unit(s), which needs an ordinal head; `{head}` is not)",
                           name)
    if not ordinal and getattr(declaration, "uses_class_distance", False):
        raise SettingError(key, f"a loss without distances between classes on a categorical head (`{name}` weighs "
                           f"errors by the distance between class indices, which needs an ordinal head; `{head}` "
                           f"is not)", name)
