"""A validated space as a tree of entries, compiled to an Optuna define-by-run function.

Entries are flat trial-config keys: a constant, a searched parameter, or a branch (a switch: a
head's loss, a model kind, a plugin's dimension) whose options hold the entries of their own
parameters. Walking the tree with a trial suggests only what the trial's choices reach, so an
option's parameter exists only in the trials that chose that option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search.space._distributions import Choice, Distribution, SuggestTrial
from trainables.settings import show_literal

__all__ = [
    "Branch",
    "Const",
    "Entry",
    "Param",
    "define_by_run",
    "dimension_lines",
    "grid_size",
    "grid_space",
    "sample",
    "searched",
]


@dataclass(frozen=True)
class Const:
    """A fixed trial-config value."""

    key: str
    value: Any


@dataclass(frozen=True)
class Param:
    """A searched trial-config value."""

    key: str
    distribution: Distribution


@dataclass(frozen=True)
class Branch:
    """A switch (``heads.<head>.loss``, ``model.kind``): one option (``distribution`` None) or a
    choice/grid over several. ``options`` maps each option to the entries of its parameters
    (``heads.<head>.<loss>.<param>``, ``model.<kind>.<param>``)."""

    key: str
    options: dict[str, tuple[Entry, ...]]
    distribution: Choice | None = None


Entry = Const | Param | Branch
# The name searches started before switches were general pickled (Tune's saved searcher state).
LossSwitch = Branch


def _walk(entries: tuple[Entry, ...], trial: SuggestTrial, constants: dict[str, Any], resolved: dict[str, Any]) -> None:
    for entry in entries:
        if isinstance(entry, Const):
            constants[entry.key] = resolved[entry.key] = entry.value
        elif isinstance(entry, Param):
            resolved[entry.key] = entry.distribution.suggest(trial, entry.key)
        else:
            if entry.distribution is None:
                (option,) = entry.options
                constants[entry.key] = resolved[entry.key] = option
            else:
                option = resolved[entry.key] = entry.distribution.suggest(trial, entry.key)
            _walk(entry.options[option], trial, constants, resolved)


def define_by_run(entries: tuple[Entry, ...], trial: SuggestTrial) -> dict[str, Any]:
    """Suggest every searched key the trial reaches; return the constants it reaches."""
    constants: dict[str, Any] = {}
    _walk(entries, trial, constants, {})
    return constants


def sample(entries: tuple[Entry, ...], *, seed: int) -> dict[str, Any]:
    """One complete flat trial config drawn with a seeded RandomSampler, in file order."""
    import optuna  # here: validating a space needs no sampler

    from search._optuna import quiet_optuna

    with quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        trial = study.ask()
        resolved: dict[str, Any] = {}
        _walk(entries, trial, {}, resolved)
    return resolved


def grid_space(entries: tuple[Entry, ...]) -> dict[str, list[Any]] | None:
    """Every searched key with its values (all options included), or None when some
    dimension is continuous or an integer range."""
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        if isinstance(entry, Param):
            if not isinstance(entry.distribution, Choice):
                return None
            grid[entry.key] = list(entry.distribution.values)
        elif isinstance(entry, Branch):
            if entry.distribution is not None:
                grid[entry.key] = list(entry.options)
            for option in entry.options.values():
                inner = grid_space(option)
                if inner is None:
                    return None
                grid.update(inner)
    return grid


def grid_size(entries: tuple[Entry, ...]) -> int:
    """How many distinct trials a grid over ``entries`` holds (``grid_space`` not None), counted
    without listing them: a switch's options each with the grid of their own parameters."""
    size = 1
    for entry in entries:
        if isinstance(entry, Param):
            size *= len(entry.distribution.values)
        elif isinstance(entry, Branch):
            size *= sum(grid_size(option) for option in entry.options.values())
    return size


def searched(entries: tuple[Entry, ...]) -> dict[str, Distribution]:
    """Every searched key with its distribution, every option's included (a switch's choice as a
    choice over its options)."""
    found: dict[str, Distribution] = {}
    for entry in entries:
        if isinstance(entry, Param):
            found[entry.key] = entry.distribution
        elif isinstance(entry, Branch):
            if entry.distribution is not None:
                found[entry.key] = entry.distribution
            for option in entry.options.values():
                found.update(searched(option))
    return found


def dimension_lines(entries: tuple[Entry, ...]) -> tuple[list[str], list[str]]:
    """(searched lines with the conditional structure indented, fixed lines)."""
    searched: list[str] = []
    fixed: list[str] = []
    _describe(entries, searched, fixed, indent="")
    width = max((len(line.split("  ~ ")[0]) for line in searched), default=0)
    aligned = [_align(line, width) for line in searched]
    return aligned, fixed


def _align(line: str, width: int) -> str:
    if "  ~ " not in line:
        return line
    name, rest = line.split("  ~ ", 1)
    return f"{name.ljust(width)}  ~ {rest}"


def _describe(entries: tuple[Entry, ...], searched: list[str], fixed: list[str], *, indent: str) -> None:
    for entry in entries:
        if isinstance(entry, Const):
            # Constants of one option only hold when that option is chosen.
            (searched if indent else fixed).append(f"{indent}{entry.key} = {show_literal(entry.value)}")
        elif isinstance(entry, Param):
            searched.append(f"{indent}{entry.key}  ~ {entry.distribution}")
        elif entry.distribution is None:
            (option,) = entry.options
            (searched if indent else fixed).append(f"{indent}{entry.key} = {option}")
            _describe(entry.options[option], searched, fixed, indent=indent)
        else:
            searched.append(f"{indent}{entry.key}  ~ {entry.distribution}")
            for option, inner in entry.options.items():
                if inner:
                    searched.append(f"{indent}  if {entry.key} == {option}:")
                    _describe(inner, searched, fixed, indent=indent + "    ")
