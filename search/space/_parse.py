"""Safe YAML loading for space files: bounded input, duplicate keys, YAML paths with line numbers.

Only what ``yaml.safe_load`` accepts is accepted (a ``SafeLoader`` subclass, libyaml's when PyYAML
has it), plus YAML 1.2 floats such as ``1e-4``: PyYAML reads those as strings, which would turn the
most common way of writing a learning rate into a type error.

A space file is read by people and by scripts, so what no space needs is refused before it can
cost time or memory: files over ``MAX_SPACE_BYTES`` or that are not regular files (``/dev/zero``,
a FIFO), nesting deeper than ``MAX_DEPTH``, and documents of more than ``MAX_VALUES`` values once
aliases are expanded. Aliases are allowed (sharing one range between heads is handy) but count
every value they repeat, so a few hundred bytes of nested aliases (a "billion laughs" file) fail
at once instead of expanding; an alias inside the node it names (a recursive value) is refused.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from search.space._issues import Plain, SpaceError, SpaceIssue, join_path, quoted

__all__ = ["MAX_DEPTH", "MAX_SPACE_BYTES", "MAX_VALUES", "ParsedYaml", "parse_yaml_text", "read_space_file", "safe_load_value"]

MAX_SPACE_BYTES = 1 << 20  # 1 MiB; the shipped spaces are about 2 KiB
MAX_DEPTH = 32  # nested mappings and lists; a space needs about 6
MAX_VALUES = 10_000  # scalars, mappings and lists, aliases expanded; a large space has a few hundred

_BaseLoader: type = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class _SpaceLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A safe loader with YAML 1.2 exponent floats (``1e-4``, ``5E3``). A value Python cannot
    build (an integer of more than 4300 digits, the date 2020-13-45) is a YAML error with its line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            shown = f"`{node.value[:40]}`" if isinstance(node, yaml.ScalarNode) else "a value"
            kind = node.tag.rsplit(":", 1)[-1]
            raise ConstructorError(None, None, f"{shown} cannot be read as a {kind} ({str(exc)[:80]})",
                                   node.start_mark) from None


_SpaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class ParsedYaml:
    """A loaded document, the problems found while loading it, and the line of every YAML path."""

    value: Any
    issues: list[SpaceIssue]
    lines: dict[str, int]


def safe_load_value(text: str, *, source: str = "value") -> Any:
    """Load one YAML value (e.g. the right side of ``--set key=value``, named ``source`` in errors)
    with the space loader and its limits (``_check_size``: aliases expanded, a value of 200 bytes
    was 35 MB)."""
    _check_size(text, file=source)
    return yaml.load(text, Loader=_SpaceLoader)  # noqa: S506 - _SpaceLoader is a SafeLoader


def _fail(file: str, rule: str, got: str, line: int | None = None) -> SpaceError:
    return SpaceError([SpaceIssue(file, "", rule, Plain(got), line=line)])


def read_space_file(path: str | Path, *, what: str = "space file") -> tuple[str, ParsedYaml]:
    """Read and parse a space file (or another YAML file a command reads, named by ``what``); a
    missing, special, oversized or unreadable file or a syntax error is a SpaceError. Nothing is
    read from a file that is not a regular file."""
    file = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise _fail(file, f"an existing {what}", "a missing file") from None
    except OSError as exc:
        raise _fail(file, f"a readable {what}", exc.strerror or type(exc).__name__) from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(file, f"a {what}", "a directory")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(file, "a regular file", "a device, FIFO or socket")
    too_big = f"a {what} of at most {MAX_SPACE_BYTES >> 20} MiB (no search space needs more)"
    if info.st_size > MAX_SPACE_BYTES:
        raise _fail(file, too_big, f"{info.st_size:,} bytes")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPACE_BYTES + 1)  # the file may have grown since stat()
        text = data.decode("utf-8")
    except OSError as exc:
        raise _fail(file, f"a readable {what}", exc.strerror or type(exc).__name__) from None
    except UnicodeDecodeError as exc:
        raise _fail(file, "a UTF-8 text file", f"byte {exc.start} is not UTF-8") from None
    if len(data) > MAX_SPACE_BYTES:
        raise _fail(file, too_big, "a file that grew past it while being read")
    return text, parse_yaml_text(text, file=file)


def _check_size(text: str, *, file: str) -> None:
    """Walk the event stream (no values built) and refuse deep nesting, recursive aliases and
    documents that expand past MAX_VALUES: before the composer, which recurses once per level
    and expands nothing yet, but whose result the validator would walk in full."""
    loader = _SpaceLoader(text)
    # One frame per open mapping/list: [its anchor, values in it so far]; aliases add their anchor's size.
    open_frames: list[list[Any]] = [[None, 0]]
    sizes: dict[str, int] = {}
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, _OPENING):
                if len(open_frames) > MAX_DEPTH:
                    raise _fail(file, f"at most {MAX_DEPTH} levels of nested mappings and lists",
                                "deeper nesting", line)
                open_frames.append([event.anchor, 1])
            elif isinstance(event, _CLOSING):
                anchor, size = open_frames.pop()
                if anchor is not None:
                    sizes[anchor] = size
                open_frames[-1][1] += size
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    raise _fail(file, "an alias to a value defined before it (not inside the value it names)",
                                f"`*{event.anchor[:50]}`", line)
                open_frames[-1][1] += sizes[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                open_frames[-1][1] += 1
            if open_frames[0][1] + sum(size for _, size in open_frames[1:]) > MAX_VALUES:
                raise _fail(file, f"at most {MAX_VALUES:,} values, aliases expanded (no search space needs more)",
                            "more", line)
    finally:
        loader.dispose()


def _character_at(text: str, line: int, column: int) -> str:
    rows = text.splitlines()
    return rows[line][column:column + 1] if line < len(rows) else ""


def parse_yaml_text(text: str, *, file: str) -> ParsedYaml:
    """Parse one YAML document; syntax errors raise SpaceError with the line, duplicates are issues."""
    try:
        _check_size(text, file=file)
        loader = _SpaceLoader(text)
        try:
            node = loader.get_single_node()
            issues: list[SpaceIssue] = []
            lines: dict[str, int] = {}
            if node is not None:
                _walk(node, "", file=file, issues=issues, lines=lines, seen=set())
            value = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        at = f" at column {mark.column + 1}" if mark is not None else ""
        if mark is not None and _character_at(text, mark.line, mark.column) == "\t":
            at += " (a tab: YAML indents with spaces)"  # libyaml says only "found character"
        raise _fail(file, "valid YAML", f"a syntax error{at}: {problem[:300]}", line) from None
    except yaml.YAMLError as exc:  # a reader error: its first line says what (the rest, where)
        first = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise _fail(file, "valid YAML", f"a syntax error: {first[:300]}") from None
    return ParsedYaml(value=value, issues=issues, lines=lines)


def _walk(
    node: yaml.Node, path: str, *, file: str, issues: list[SpaceIssue], lines: dict[str, int], seen: set[int]
) -> None:
    """Record the line of every path and report keys given twice in one mapping."""
    lines.setdefault(path, node.start_mark.line + 1)
    # Aliases share nodes (and may be recursive): walk each node once.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            child = join_path(path, key)
            line = key_node.start_mark.line + 1
            if key in first_line:
                issues.append(
                    SpaceIssue(
                        file,
                        child,
                        f"each key once per mapping (first given on line {first_line[key]})",
                        quoted(key, " again"),
                        line=line,
                    )
                )
                continue
            first_line[key] = line
            lines.setdefault(child, line)
            _walk(value_node, child, file=file, issues=issues, lines=lines, seen=seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, join_path(path, index), file=file, issues=issues, lines=lines, seen=seen)
