"""Safe YAML loading for space files: duplicate keys and YAML paths with line numbers.

Only what ``yaml.safe_load`` accepts is accepted (a ``SafeLoader`` subclass), plus YAML 1.2
floats such as ``1e-4``: PyYAML reads those as strings, which would turn the most common way of
writing a learning rate into a type error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search.space._issues import Plain, SpaceError, SpaceIssue, join_path

__all__ = ["ParsedYaml", "parse_yaml_text", "read_space_file", "safe_load_value"]


class _SpaceLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 exponent floats (``1e-4``, ``5E3``)."""


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


def safe_load_value(text: str) -> Any:
    """Load one YAML value (e.g. the right side of ``--set key=value``) with the space loader."""
    return yaml.load(text, Loader=_SpaceLoader)  # noqa: S506 - _SpaceLoader is a SafeLoader


def read_space_file(path: str | Path) -> tuple[str, ParsedYaml]:
    """Read and parse a space file; a missing/unreadable file or a syntax error is a SpaceError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError([SpaceIssue(file, "", "an existing space file", Plain("a missing file"))]) from None
    except IsADirectoryError:
        raise SpaceError([SpaceIssue(file, "", "a space file", Plain("a directory"))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError([SpaceIssue(file, "", "a readable UTF-8 file", Plain(str(exc)))]) from None
    return text, parse_yaml_text(text, file=file)


def parse_yaml_text(text: str, *, file: str) -> ParsedYaml:
    """Parse one YAML document; syntax errors raise SpaceError with the line, duplicates are issues."""
    loader = _SpaceLoader(text)
    try:
        node = loader.get_single_node()
        issues: list[SpaceIssue] = []
        lines: dict[str, int] = {}
        if node is not None:
            _walk(node, "", file=file, issues=issues, lines=lines, seen=set())
        value = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpaceError([SpaceIssue(file, "", "valid YAML", Plain(f"a syntax error: {problem}"), line=line)]) from None
    except yaml.YAMLError as exc:
        raise SpaceError([SpaceIssue(file, "", "valid YAML", Plain(f"a syntax error: {exc}"))]) from None
    finally:
        loader.dispose()
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
                        Plain(f"`{key}` again"),
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
