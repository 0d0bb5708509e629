"""``search validate SPACE``: check a space file and print its dimensions."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from search import exit_codes
from search.commands._common import add_command, plugins_and_space

__all__ = ["add_parser", "plugin_lines", "run", "summary_lines"]

HELP = "check space files and print their dimensions"
DESCRIPTION = (
    "Check search-space files completely (types, ranges, loss names and parameters, "
    "heads of the data set, objective metrics) and print each one's dimensions, conditional ones "
    "under the loss they belong to."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search validate spaces/vimh.yaml
      python -m search validate spaces/*.yaml
      python -m search validate spaces/digits.yaml && python -m search run spaces/digits.yaml

    Every problem of every file is reported at once, as `file:line: yaml.path: rule, but got value`.
    Exit status: 0 all valid, 2 any invalid (or missing / not YAML).
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "validate", HELP, DESCRIPTION, EXAMPLES, space=False)
    parser.add_argument("spaces", nargs="+", metavar="SPACE", help="space files (YAML), e.g. spaces/*.yaml")
    return parser


def summary_lines(space: Any) -> list[str]:
    """What a space searches over, for the terminal."""
    from search.driver._rungs import scheduling_text
    from trainables.data import DATASETS

    data = space.data
    where = f" at {data.path}" if data.path else ""
    limit = f", limit {data.limit}" if data.limit is not None else ""
    labels = f", labels {data.labels}" if DATASETS[data.kind].reads_labels else ""
    heads = ", ".join(
        f"{name} ({info.num_classes} classes, {'ordinal' if info.ordinal else 'categorical'})"
        for name, info in space.heads.items()
    )
    objectives = ", ".join(f"{o.mode} {o.metric}" for o in space.objectives)
    if len(space.objectives) > 1:  # else the fixed objective.metric reads as the only objective searched
        objectives += " (each trial's best epoch and patience follow the first: objective.metric below)"
    s = space.search
    budget = f", time budget {s.time_budget_s:g} s" if s.time_budget_s is not None else ""
    return [
        f"name: {space.name}",
        f"data: {data.kind}{where} (val_fraction {data.val_fraction}{limit}{labels}, seed {data.seed})",
        f"heads: {heads}",
        f"objective: {objectives}",
        f"search: {space.num_trials} trials, {s.sampler} sampler, {s.max_concurrent} concurrent, seed {s.seed}{budget}",
        f"scheduler: {scheduling_text(space)}",
        f"resources per trial: {space.resources.cpu:g} cpu, {space.resources.gpu:g} gpu",
    ]


def plugin_lines(plugins: list[Any]) -> list[str]:
    """Where each plugin came from and what it added."""
    return [
        f"plugin {p.name}: {p.distribution} ({p.target}, {p.location}): adds {', '.join(p.added) or 'nothing'}"
        for p in plugins
    ]


def run(args: argparse.Namespace) -> int:
    status = exit_codes.OK
    for number, path in enumerate(args.spaces):
        if number:
            print()
        loaded = plugins_and_space(path)
        if loaded is None:
            status = exit_codes.INVALID
            continue
        plugins, space = loaded
        print(f"{path}: valid")
        for line in [*plugin_lines(plugins), *summary_lines(space), *space.dimensions()]:
            print(line)
        note = space.repeats_note()
        if note is not None:
            print(f"note: {note}")
    return status
