"""Validation problems: one SpaceIssue per problem, all of them raised together in a SpaceError."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Plain", "SpaceError", "SpaceIssue", "join_path", "quoted", "show_value"]

_MAX_SHOWN = 100  # characters of a value in a message
_MAX_LISTED = 50  # problems listed on the terminal


class Plain(str):
    """A description shown as written ("a missing file") instead of as a quoted YAML value."""


def _printable(text: str) -> str:
    """``text`` with its control characters escaped as JSON escapes them (a NUL made grep see binary)."""
    return "".join(ch if ch.isprintable() else json.dumps(ch)[1:-1] for ch in text)


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 3] + "..."


def quoted(name: Any, after: str = "") -> Plain:
    """A name from the file (a key, an option) in backticks, shortened and escaped as any value."""
    return Plain(f"`{_cut(_printable(str(name)[: _MAX_SHOWN + 1]), _MAX_SHOWN)}`{after}")


def show_value(value: Any) -> str:
    """Render a YAML value the way it reads in the file, on one line, shortened. Built piece by
    piece and stopped at ``_MAX_SHOWN`` characters, so a huge (or recursive) value costs no more
    than a small one."""
    if isinstance(value, Plain):
        return str(value)
    parts: list[str] = []
    room = _MAX_SHOWN + 1  # one more than shown, to know whether to cut

    def emit(text: str) -> bool:
        nonlocal room
        parts.append(text[:room])
        room -= len(text)
        return room > 0

    def walk(item: Any, active: tuple[int, ...]) -> bool:
        if isinstance(item, (dict, list, tuple)):
            if id(item) in active:  # a value that contains itself (YAML aliases)
                return emit("...")
            inner = (*active, id(item))
            pairs = item.items() if isinstance(item, dict) else ((None, v) for v in item)
            if not emit("{" if isinstance(item, dict) else "["):
                return False
            for index, (key, child) in enumerate(pairs):
                if index and not emit(", "):
                    return False
                if isinstance(item, dict) and not (walk(key, inner) and emit(": ")):
                    return False
                if not walk(child, inner):
                    return False
            return emit("}" if isinstance(item, dict) else "]")
        if isinstance(item, str):
            item = item[: _MAX_SHOWN + 1]  # before json.dumps: a megabyte string is not serialised
        try:
            text = json.dumps(item, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(item)[: _MAX_SHOWN + 1]
        return emit(text)

    walk(value, ())
    text = "".join(parts)
    return _cut(text, _MAX_SHOWN)


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
        # a path holds the file's keys, an unknown one as written: shortened like a value
        path = _cut(_printable(self.path[: 2 * _MAX_SHOWN + 1]), 2 * _MAX_SHOWN)
        prefix = f"{where}: {path}: " if self.path else f"{where}: "
        return f"{prefix}{self.rule}, but got {show_value(self.value)}"


class SpaceError(ValueError):
    """A space file that cannot be used; ``errors`` holds every problem found, in file order."""

    def __init__(self, errors: list[SpaceIssue]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        head = f"{count} problem{'s' if count != 1 else ''} in the space file"
        super().__init__("\n".join([head, *self.listed()]))

    def listed(self) -> list[str]:
        """The problems as indented lines for a terminal: the first ``_MAX_LISTED``, then how many more."""
        lines = [f"  {issue}" for issue in self.errors[:_MAX_LISTED]]
        if len(self.errors) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.errors) - _MAX_LISTED} more")
        return lines
