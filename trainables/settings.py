"""What a setting accepts, stated once where the setting is declared, and the one check of it.

A setting is a dataclass field or a keyword parameter (of a loss, a model, a hook). Its type is its
annotation; bounds, allowed members and whether a search may vary it are a ``Rule`` in
``typing.Annotated``::

    lr: Annotated[float, Rule(minimum=0.0, min_open=True, searchable=True)] = 2e-3

``value_type`` turns an annotation into a ``ValueType``; ``check_value`` applies it and raises
``SettingError`` (the key, the rule and the value as attributes) for a value it refuses. The
search-space validator and the trial config use the same two, so a bound lives in one place.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = [
    "RebuiltFromFields", "Rule", "SEED_RULE", "SettingError", "ValueType", "check_fields", "check_value", "show_literal", "value_type"]


@dataclass(frozen=True)
class Rule:
    """Bounds and members of a setting, and whether a search space may give it a distribution.
    ``members`` may be a registry (a mapping): its names at the time of the check."""

    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False  # True: value > minimum (instead of >=)
    max_open: bool = False  # True: value < maximum (instead of <=)
    members: tuple[Any, ...] | Mapping[str, Any] | None = None
    searchable: bool = False
    # (old value, what it means now): values an earlier version accepted, still read (compared by
    # value and type, so 1 is no alias of true). ``train.amp: true`` of old files is ``auto``.
    aliases: tuple[tuple[Any, Any], ...] = ()


# A seed NumPy's and Optuna's generators take: 32 bits.
SEED_RULE = Rule(minimum=0, maximum=2**32 - 1)


def shown(value: Any) -> str:
    """``value`` as a message shows it: its repr, at most about 100 characters however big the
    value (a `--set` value of megabytes was printed whole), built without the whole repr."""
    short = reprlib.Repr()
    short.maxlevel, short.maxtuple, short.maxlist, short.maxdict, short.maxset = 3, 10, 10, 10, 10
    short.maxstring = short.maxother = 100
    return short.repr(value)


class RebuiltFromFields:
    """For an exception whose constructor takes its fields (``_fields``, in its order): copies and
    pickles rebuild it from them. Ray copies and pickles a trial's errors, and the default,
    ``cls(*args)`` with the message alone, fails for such a constructor."""

    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple:
        return type(self), tuple(getattr(self, name) for name in self._fields)


class SettingError(RebuiltFromFields, ValueError):
    """A value a setting refuses: ``key`` (``train.lr``), ``rule`` (``a number > 0``), ``value``."""

    _fields = ("key", "rule", "value")

    def __init__(self, key: str, rule: str, value: Any) -> None:
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{key} must be {rule}, but got {shown(value)}")


def show_literal(value: Any) -> str:
    """A value as a YAML file spells it (null, true, l1)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bound(value: float) -> str:
    """1048576 as written, not 1.04858e+06; 0.5 and 1e-08 as %g writes them."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    """A number as a float; None for anything else, and for an int beyond every float."""
    if not _is_number(value):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


@dataclass(frozen=True)
class ValueType:
    """What one setting accepts: a kind, Literal members, bounds, and whether null is allowed.

    ``kind`` is "float" (ints accepted and converted), "int", "bool", "str", "literal",
    "floats" (a list of numbers, e.g. focal's per-class ``alpha``) or "ints" (``length``
    integers, e.g. a CNN's ``channels``); lists are fixed only, because Optuna choices must be
    scalars.
    """

    kind: Literal["float", "int", "bool", "str", "literal", "floats", "ints"]
    members: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    searchable: bool = False
    aliases: tuple[tuple[Any, Any], ...] = ()  # (old value, its value now), see Rule
    length: int | None = None  # of an "ints" list

    @property
    def is_list(self) -> bool:
        """A list setting: fixed in a space, never searched."""
        return self.kind in ("floats", "ints")

    def describe(self) -> str:
        """`a number >= 0`, `an integer >= 1 or null`, `one of [l1, l2, huber]` ..."""
        if self.kind == "literal":
            text = f"one of [{', '.join(show_literal(m) for m in self.members)}]"
        else:
            text = {
                "float": "a number",
                "int": "an integer",
                "bool": "true or false",
                "str": "a string",
                "floats": "a list of numbers",
                "ints": f"a list of {self.length} integers",
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
        """(ok, value converted to the setting's type: ints become floats for float settings,
        lists of numbers become lists of floats, an alias its value)."""
        for alias, meant in self.aliases:
            if value == alias and type(value) is type(alias):
                return True, meant
        if value is None:
            return self.nullable, None
        if self.kind == "literal":
            return any(value == m and type(value) is type(m) for m in self.members), value
        if self.kind == "bool":
            return isinstance(value, bool), value
        if self.kind == "str":
            return isinstance(value, str), value
        if self.kind == "floats":
            values = [_as_float(v) for v in value] if isinstance(value, (list, tuple)) else [None]
            if None in values:
                return False, value
            return all(self._in_bounds(v) for v in values), values
        if self.kind == "ints":
            if not isinstance(value, (list, tuple)) or len(value) != self.length:
                return False, value
            return all(_is_number(v) and isinstance(v, int) and self._in_bounds(v) for v in value), list(value)
        if self.kind == "int":
            return _is_number(value) and isinstance(value, int) and self._in_bounds(value), value
        number = _as_float(value)
        if number is None:
            return False, value
        return self._in_bounds(number), number

    def _in_bounds(self, value: float) -> bool:
        # an int is compared exactly (a float of a 400-digit int overflows)
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.min_open else value < self.minimum):
            return False
        return not (self.maximum is not None and (value >= self.maximum if self.max_open else value > self.maximum))


def value_type(annotation: Any) -> ValueType | None:
    """The ValueType of an annotation (float, int, bool, str, Literal[...], X | None,
    tuple[float, ...], each optionally ``Annotated`` with a Rule); None for anything else."""
    rule = Rule()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        rule = next((e for e in extras if isinstance(e, Rule)), rule)
    base = _base_type(annotation)
    if base is None:
        return None
    if rule.members is not None:
        base = replace(base, kind="literal", members=tuple(rule.members))
    bounds = ("minimum", "maximum", "min_open", "max_open", "searchable", "aliases")
    return replace(base, **{name: getattr(rule, name) for name in bounds})


def _base_type(annotation: Any) -> ValueType | None:
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return ValueType("literal", members=args)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _base_type(rest[0]) if len(rest) == 1 else None
        return None if inner is None else replace(inner, nullable=True)
    if origin in (tuple, list) and args and args[0] in (float, int) and (origin is list or args[-1] is Ellipsis):
        return ValueType("floats")
    if origin is tuple and args and all(a is int for a in args):
        return ValueType("ints", length=len(args))
    simple = {float: "float", int: "int", bool: "bool", str: "str"}
    return ValueType(simple[annotation]) if annotation in simple else None


def check_value(key: str, annotation: Any, value: Any, *, error: type[SettingError] = SettingError) -> Any:
    """``value`` converted to the setting's type (lists of numbers stay lists), or ``error``."""
    vtype = value_type(annotation)
    if vtype is None:
        return value
    ok, converted = vtype.check(value)
    if not ok:
        raise error(key, vtype.describe(), value)
    return converted


def check_fields(instance: Any, section: str, *, error: type[SettingError] = SettingError) -> None:
    """Check (and convert in place) every field of a frozen dataclass instance against its
    annotation; errors name ``<section>.<field>`` (just the field for an empty section)."""
    hints = typing.get_type_hints(type(instance), include_extras=True)
    for field in dataclasses.fields(instance):
        if field.name in hints and value_type(hints[field.name]) is not None:
            key = f"{section}.{field.name}" if section else field.name
            value = check_value(key, hints[field.name], getattr(instance, field.name), error=error)
            object.__setattr__(instance, field.name, value)
