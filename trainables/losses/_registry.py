"""Name -> head-loss registry, its factory, and the tunable parameters read from signatures."""

import inspect
import typing
from types import NoneType, UnionType
from typing import Any, Literal

from ._base import HeadLoss
from ._classification import CrossEntropyLoss, FocalLoss, WeightedCrossEntropyLoss
from ._ordinal import OrdinalLoss, QuantizedLoss, SoftOrdinalLoss

LOSSES: dict[str, type[HeadLoss]] = {
    "ce": CrossEntropyLoss,
    "ordinal": OrdinalLoss,
    "quantized": QuantizedLoss,
    "weighted_ce": WeightedCrossEntropyLoss,
    "focal": FocalLoss,
    "soft_ordinal": SoftOrdinalLoss,
}

# Set by the head (data set and trainer), never searched.
_FIXED_PARAMETERS = ("num_classes", "ignore_index")


def _loss_class(name: str) -> type[HeadLoss]:
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, but got {name!r}")
    return LOSSES[name]


def loss_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Tunable parameters of loss `name`: its keyword-only __init__ parameters except
    num_classes and ignore_index, each with its default and its annotation as a runtime object
    (float, int, bool, Literal[...] or tuple[float, ...] | None)."""
    cls = _loss_class(name)
    # get_type_hints resolves annotations even if a module ever postpones their evaluation.
    hints = typing.get_type_hints(cls.__init__)
    return {
        parameter.name: parameter.replace(annotation=hints[parameter.name])
        for parameter in inspect.signature(cls.__init__).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        and parameter.name not in _FIXED_PARAMETERS
    }


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(label: str, annotation: Any, value: Any) -> Any:
    """Check `value` against a parameter annotation; ints become floats, lists become tuples
    (search spaces and YAML produce both)."""
    if annotation is float:
        if not _is_real(value):
            raise ValueError(f"{label} must be a float, but got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{label} must be an int, but got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{label} must be a bool, but got {value!r}")
        return value
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        if value not in choices:
            raise ValueError(f"{label} must be one of {choices}, but got {value!r}")
        return value
    if isinstance(annotation, UnionType) and NoneType in typing.get_args(annotation):
        # tuple[float, ...] | None, the only union the contract allows
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(_is_real(v) for v in value):
            raise ValueError(f"{label} must be None or a sequence of floats, but got {value!r}")
        return tuple(float(v) for v in value)
    raise TypeError(f"{label} has an unsupported annotation {annotation!r}")


def build_loss(name: str, *, num_classes: int, ignore_index: int = -1, **params: Any) -> HeadLoss:
    """Instantiate loss `name` for a head with `num_classes` classes.

    Raises ValueError for an unknown name or parameter (listing the allowed ones) and for an
    invalid value (naming the loss and the rule).
    """
    cls = _loss_class(name)
    allowed = loss_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"parameters of loss {name!r} must be among {sorted(allowed)}, but got {unknown}"
        )
    values = {
        key: _coerce(f"{name}.{key}", allowed[key].annotation, value)
        for key, value in params.items()
    }
    try:
        return cls(num_classes=num_classes, ignore_index=ignore_index, **values)
    except ValueError as error:
        raise ValueError(f"loss {name!r}: {error}") from error
