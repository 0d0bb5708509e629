"""Validation problems: one SpaceIssue per problem, all of them raised together in a SpaceError."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Plain", "SpaceError", "SpaceIssue", "join_path", "show_value"]

_MAX_SHOWN = 100


class Plain(str):
    """A description shown as written ("a missing file") instead of as a quoted YAML value."""


def show_value(value: Any) -> str:
    """Render a YAML value the way it reads in the file, on one line, shortened."""
    if isinstance(value, Plain):
        return str(value)
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a recursive structure made with YAML aliases
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def join_path(path: str, key: Any) -> str:
    """`heads` + `pitch` -> `heads.pitch`; `objective` + 1 -> `objective[1]`."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


@dataclass(frozen=True)
class SpaceIssue:
    """One problem in a space file.

    ``path`` is the YAML path (``heads.pitch.loss.choice.ordinal.alpha``, empty for the whole
    file), ``rule`` what is required and ``value`` what the file holds; ``line`` is the line of the
    path in the file where known.
    """

    file: str
    path: str
    rule: str
    value: Any
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        prefix = f"{where}: {self.path}: " if self.path else f"{where}: "
        return f"{prefix}{self.rule}, but got {show_value(self.value)}"


class SpaceError(ValueError):
    """A space file that cannot be used; ``errors`` holds every problem found, in file order."""

    def __init__(self, errors: list[SpaceIssue]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        head = f"{count} problem{'s' if count != 1 else ''} in the space file"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.errors)]))
