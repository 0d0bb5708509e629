"""``search validate SPACE``: check a space file and print its dimensions."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

__all__ = ["add_parser", "run", "summary_lines"]

EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search validate spaces/vimh.yaml
      python -m search validate spaces/digits.yaml && python -m search run spaces/digits.yaml

    Every problem is reported at once, as `file:line: yaml.path: rule, but got value`.
    Exit status: 0 valid, 2 invalid (or missing / not YAML).
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate",
        help="check a space file and print its dimensions",
        description="Check a search-space file completely (types, ranges, loss names and parameters, "
        "heads of the data set, objective metrics) and print its dimensions, conditional ones "
        "under the loss they belong to.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("space", metavar="SPACE", help="space file (YAML), e.g. spaces/vimh.yaml")
    return parser


def summary_lines(space: Any) -> list[str]:
    """What a space searches over, for the terminal."""
    data = space.data
    where = f" at {data.path}" if data.path else ""
    limit = f", limit {data.limit}" if data.limit is not None else ""
    heads = ", ".join(
        f"{name} ({info.num_classes} classes, {'ordinal' if info.ordinal else 'categorical'})"
        for name, info in space.heads.items()
    )
    objectives = ", ".join(f"{o.mode} {o.metric}" for o in space.objectives)
    s = space.search
    budget = f", time budget {s.time_budget_s:g} s" if s.time_budget_s is not None else ""
    return [
        f"name: {space.name}",
        f"data: {data.kind}{where} (val_fraction {data.val_fraction}{limit}, labels {data.labels}, seed {data.seed})",
        f"heads: {heads}",
        f"objective: {objectives}",
        f"search: {s.num_samples} trials, {s.sampler} sampler, {s.scheduler} scheduler, "
        f"{s.max_concurrent} concurrent, seed {s.seed}{budget}",
        f"resources per trial: {space.resources.cpu:g} cpu, {space.resources.gpu:g} gpu",
    ]


def run(args: argparse.Namespace) -> int:
    from search.space import SpaceError, load_space

    try:
        space = load_space(args.space)
    except SpaceError as error:
        count = len(error.errors)
        print(f"{args.space}: invalid ({count} problem{'s' if count != 1 else ''})", file=sys.stderr)
        for line in error.listed():
            print(line, file=sys.stderr)
        return 2
    print(f"{args.space}: valid")
    for line in [*summary_lines(space), *space.dimensions()]:
        print(line)
    return 0
