"""The distributions a space value may use, and the typed value checks they are validated with.

A space value is a literal (fixed) or a one-key mapping naming one distribution:
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` (lo > 0), ``{int: [lo, hi]}`` (inclusive),
``{choice: [v, ...]}`` or ``{grid: [v, ...]}``. ``choice`` and ``grid`` are both categorical for
Optuna; ``grid`` says the values are meant to be enumerated (``search.sampler: grid``).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

__all__ = [
    "DISTRIBUTIONS",
    "Choice",
    "Distribution",
    "Grid",
    "IntRange",
    "LogUniform",
    "Uniform",
    "ValueType",
    "value_type_from_annotation",
]


class SuggestTrial(Protocol):
    """The part of ``optuna.Trial`` used here (Ray passes a wrapper, so no isinstance checks)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    kind = "uniform"

    def suggest(self, trial: SuggestTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def __str__(self) -> str:
        return f"uniform [{self.low}, {self.high}]"


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float
    kind = "loguniform"

    def suggest(self, trial: SuggestTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def __str__(self) -> str:
        return f"loguniform [{self.low}, {self.high}]"


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    kind = "int"

    def suggest(self, trial: SuggestTrial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def __str__(self) -> str:
        return f"int [{self.low}, {self.high}]"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]
    kind = "choice"

    def suggest(self, trial: SuggestTrial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def __str__(self) -> str:
        return f"{self.kind} [{', '.join(show_value(v) for v in self.values)}]"


@dataclass(frozen=True)
class Grid(Choice):
    kind = "grid"


Distribution = Uniform | LogUniform | IntRange | Choice | Grid
DISTRIBUTIONS: dict[str, type] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "int": IntRange,
    "choice": Choice,
    "grid": Grid,
}


def show_value(value: Any) -> str:
    """A value as the YAML file would spell it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class ValueType:
    """What one setting accepts: a kind, optional Literal members, bounds, and whether null is allowed.

    ``kind`` is "float" (ints accepted and converted), "int", "bool", "str", "literal" or
    "floats" (a list of numbers, e.g. focal's per-class ``alpha``: fixed only, because Optuna
    choices must be scalars).
    """

    kind: Literal["float", "int", "bool", "str", "literal", "floats"]
    members: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False  # True: value > minimum (instead of >=)
    max_open: bool = False  # True: value < maximum (instead of <=)
    nullable: bool = False

    def describe(self) -> str:
        """`a number >= 0`, `an integer >= 1 or null`, `one of [l1, l2, huber]` ..."""
        if self.kind == "literal":
            text = f"one of [{', '.join(show_value(m) for m in self.members)}]"
        else:
            text = {
                "float": "a number",
                "int": "an integer",
                "bool": "true or false",
                "str": "a string",
                "floats": "a list of numbers",
            }[self.kind]
            text += self._describe_bounds()
        return f"{text} or null" if self.nullable else text

    def _describe_bounds(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f" in {'(' if self.min_open else '['}{_bound(low)}, {_bound(high)}{')' if self.max_open else ']'}"
        if low is not None:
            return f" {'>' if self.min_open else '>='} {_bound(low)}"
        if high is not None:
            return f" {'<' if self.max_open else '<='} {_bound(high)}"
        return ""

    def check(self, value: Any) -> tuple[bool, Any]:
        """(ok, value converted to the setting's type: ints become floats for float settings)."""
        if value is None:
            return self.nullable, None
        if self.kind == "literal":
            ok = any(value == m and type(value) is type(m) for m in self.members)
            return ok, value
        if self.kind == "bool":
            return isinstance(value, bool), value
        if self.kind == "str":
            return isinstance(value, str), value
        if self.kind == "floats":
            if not isinstance(value, list) or not all(_is_number(v) for v in value):
                return False, value
            values = [float(v) for v in value]
            return all(self._in_bounds(v) for v in values), values
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            return ok and self._in_bounds(value), value
        if not _is_number(value):
            return False, value
        number = float(value)
        return self._in_bounds(number), number

    def _in_bounds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.min_open else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.max_open else value > self.maximum):
            return False
        return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_type_from_annotation(annotation: Any) -> ValueType | None:
    """The ValueType of a type annotation (float, int, bool, str, Literal[...], X | None,
    tuple[float, ...]); None for anything else."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return ValueType("literal", members=args)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = value_type_from_annotation(rest[0]) if len(rest) == 1 else None
        return None if inner is None else replace(inner, nullable=True)
    if origin in (tuple, list) and args and args[0] in (float, int) and (origin is list or args[-1] is Ellipsis):
        return ValueType("floats")
    simple = {float: "float", int: "int", bool: "bool", str: "str"}
    return ValueType(simple[annotation]) if annotation in simple else None


def _bound(value: float) -> str:
    """1048576 as written, not 1.04858e+06; 0.5 and 1e-08 as %g writes them."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
