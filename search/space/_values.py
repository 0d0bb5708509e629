"""Checking one space value: a literal of a setting's type, or one distribution over it.

``ValueChecker`` collects every problem as a ``SpaceIssue`` (file, line, YAML path, rule, value);
the schema walk in ``_validate`` builds on it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from search.space._compile import Const, Entry, Param
from search.space._distributions import DISTRIBUTIONS, Choice, Distribution, Grid, IntRange, LogUniform, Uniform
from search.space._issues import Plain, SpaceIssue, join_path, quoted
from trainables.settings import ValueType

__all__ = ["NOTHING", "Fixed", "ValueChecker"]

NOTHING = Plain("nothing")
_SCALAR_TYPES = (str, int, float, bool, type(None))
_DISTRIBUTIONS_FOR = {"int": "`int`, `choice` or `grid`", "float": "`uniform`, `loguniform`, `choice` or `grid`"}


@dataclass(frozen=True)
class Fixed:
    """A literal that passed its check (converted to the setting's type)."""

    value: Any


class ValueChecker:
    """Collects issues while walking one file's document."""

    def __init__(self, *, file: str, lines: dict[str, int], issues: list[SpaceIssue]) -> None:
        self.file = file
        self.lines = lines
        self.issues = issues
        self.paths: dict[str, str] = {}  # flat key -> the YAML path it came from
        self.option_paths: dict[tuple[str, str], str] = {}  # (switch path, option) -> its YAML path

    def add(self, path: str, rule: str, value: Any) -> None:
        self.issues.append(SpaceIssue(self.file, path, rule, value, line=self._line(path)))

    def failed(self, *paths: str) -> bool:
        """Whether a problem was reported at one of ``paths``."""
        return any(issue.path in paths for issue in self.issues)

    def _line(self, path: str) -> int | None:
        """The line of `path`, or of its nearest parent in the file (a missing key: its section)."""
        while path not in self.lines:
            if not path:
                return None
            parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
            path = "" if parent == path else parent
        return self.lines[path]

    def mapping(self, value: Any, path: str, *, what: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"a mapping ({what})", value)
            return None
        for key in value:
            if not isinstance(key, str):
                self.add(path, "string keys", key)
        return {k: v for k, v in value.items() if isinstance(k, str)}

    def known_keys(self, value: dict[str, Any], path: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        section = f"`{path}`" if path else "the top level"
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean `{close[0]}`?" if close else ""
                self.add(join_path(path, key), f"a key of {section} (one of: {', '.join(allowed)}{hint})",
                         quoted(key))

    def entry(self, key: str, parsed: Fixed | Distribution, path: str) -> Entry:
        self.paths[key] = path
        return Const(key, parsed.value) if isinstance(parsed, Fixed) else Param(key, parsed)

    def value(self, value: Any, path: str, vtype: ValueType | None) -> Fixed | Distribution | None:
        """A literal, or a distribution where ``vtype`` is searchable; None after a problem."""
        if vtype is not None and vtype.searchable:
            return self.tunable(value, path, vtype)
        ok, converted = self.fixed(value, path, vtype)
        return Fixed(converted) if ok else None

    def fixed(self, value: Any, path: str, vtype: ValueType | None) -> tuple[bool, Any]:
        """Check a literal; (ok, converted value)."""
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS:
            expected = vtype.describe() if vtype else "a literal"
            self.add(path, f"a fixed value ({expected}): this setting is not searched", value)
            return False, value
        if vtype is None:
            ok = _json_safe(value)
            if not ok:
                self.add(path, "a JSON-safe literal (null, true/false, number, string, or lists of them)", value)
            return ok, value
        ok, converted = vtype.check(value)
        if not ok:
            self.add(path, vtype.describe(), value)
        return ok, converted

    def tunable(self, value: Any, path: str, vtype: ValueType | None) -> Fixed | Distribution | None:
        """A literal or one distribution; None after reporting a problem."""
        if not isinstance(value, dict):
            ok, converted = self.fixed(value, path, vtype)
            return Fixed(converted) if ok else None
        names = ", ".join(DISTRIBUTIONS)
        if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
            expected = vtype.describe() if vtype else "a literal"
            self.add(path, f"{expected}, or one distribution as a one-key mapping ({names})", value)
            return None
        kind, args = next(iter(value.items()))
        dpath = join_path(path, kind)
        if vtype is None or vtype.is_list:
            self.add(path, "a literal: only scalar settings can be searched (Optuna choices are scalars)", value)
            return None
        if kind in ("choice", "grid"):
            return self._categorical(kind, args, dpath, vtype)
        return self._range(kind, args, dpath, vtype)

    def _categorical(self, kind: str, args: Any, path: str, vtype: ValueType) -> Distribution | None:
        if not isinstance(args, list) or not args:
            self.add(path, f"a non-empty list of values for `{kind}`", args)
            return None
        values = []
        ok = True
        for index, item in enumerate(args):
            item_ok, converted = vtype.check(item)
            if not item_ok:
                self.add(join_path(path, index), vtype.describe(), item)
                ok = False
            elif converted in values:
                self.add(join_path(path, index), f"distinct values in `{kind}`", item)
                ok = False
            values.append(converted)
        cls = Grid if kind == "grid" else Choice
        return cls(tuple(values)) if ok else None

    def _range(self, kind: str, args: Any, path: str, vtype: ValueType) -> Distribution | None:
        wanted = "int" if kind == "int" else "float"
        if vtype.kind != wanted:
            hint = _DISTRIBUTIONS_FOR.get(vtype.kind, "`choice` or `grid`")
            self.add(path, f"{hint} for a setting that takes {vtype.describe()}", quoted(kind))
            return None
        number = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if kind == "int" else _is_number
        if not isinstance(args, list) or len(args) != 2 or not all(number(v) for v in args):
            what = "integers" if kind == "int" else "numbers"
            self.add(path, f"[lo, hi] with two {what} for `{kind}`", args)
            return None
        low, high = args
        ok = True
        if not low < high:
            self.add(path, "lo < hi", args)
            ok = False
        if kind == "loguniform" and low <= 0:
            self.add(path, "lo > 0 for `loguniform`", args)
            ok = False
        if ok and not all(vtype.check(bound)[0] for bound in args):
            self.add(path, f"bounds that are {vtype.describe()}", args)
            ok = False
        if not ok:
            return None
        if kind == "int":
            return IntRange(low, high)
        return (LogUniform if kind == "loguniform" else Uniform)(float(low), float(high))


def _is_number(value: Any) -> bool:
    # an int is finite however long (math.isfinite of a 400-digit int overflows)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (
        isinstance(value, int) or math.isfinite(value))


def _json_safe(value: Any) -> bool:
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, _SCALAR_TYPES)
