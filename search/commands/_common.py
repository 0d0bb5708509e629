"""What the commands share: how a command is declared, and reading the plugins and the space."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_command", "plugins_and_space"]


def add_command(
    subparsers: Any, name: str, help: str, description: str, examples: str, *, space: bool = True
) -> argparse.ArgumentParser:
    """A subcommand with its help, description and examples (as written); ``space``: it takes
    a space file as its first argument."""
    parser = subparsers.add_parser(name, help=help, description=description, epilog=examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    if space:
        parser.add_argument("space", metavar="SPACE", help="space file (YAML), e.g. spaces/vimh.yaml")
    return parser


def plugins_and_space(path: str) -> tuple[list[Any], Any] | None:
    """(the plugins loaded, the validated space); None after printing why not: a plugin that
    fails, or every problem of the space as `file:line: yaml.path: rule, but got value`."""
    from search.space import SpaceError, load_space
    from trainables.plugins import PluginError, load_plugins

    try:
        plugins = load_plugins()
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    try:
        return plugins, load_space(path)
    except SpaceError as error:
        count = len(error.errors)
        print(f"{path}: invalid ({count} problem{'s' if count != 1 else ''})", file=sys.stderr)
        for line in error.listed():
            print(line, file=sys.stderr)
        return None
