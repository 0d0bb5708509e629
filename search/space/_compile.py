"""A validated space as a tree of entries, compiled to an Optuna define-by-run function.

Entries are flat trial-config keys: a constant, a searched parameter, or a head's loss switch
whose alternatives hold the entries of their own parameters. Walking the tree with a trial
suggests only what the trial's choices reach, so a loss parameter exists only in the trials
that chose that loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from search.space._distributions import Choice, Distribution, SuggestTrial, show_value
from search._optuna import quiet_optuna

__all__ = ["Const", "Entry", "LossSwitch", "Param", "define_by_run", "dimension_lines", "grid_space", "sample"]


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
class LossSwitch:
    """``heads.<head>.loss``: one loss (``distribution`` None) or a choice/grid over several.

    ``options`` maps each loss name to the entries of its parameters
    (``heads.<head>.<loss>.<param>``).
    """

    key: str
    options: dict[str, tuple[Entry, ...]]
    distribution: Choice | None = None


Entry = Const | Param | LossSwitch


def _walk(entries: tuple[Entry, ...], trial: SuggestTrial, constants: dict[str, Any], resolved: dict[str, Any]) -> None:
    for entry in entries:
        if isinstance(entry, Const):
            constants[entry.key] = resolved[entry.key] = entry.value
        elif isinstance(entry, Param):
            resolved[entry.key] = entry.distribution.suggest(trial, entry.key)
        else:
            if entry.distribution is None:
                (loss,) = entry.options
                constants[entry.key] = resolved[entry.key] = loss
            else:
                loss = resolved[entry.key] = entry.distribution.suggest(trial, entry.key)
            _walk(entry.options[loss], trial, constants, resolved)


def define_by_run(entries: tuple[Entry, ...], trial: SuggestTrial) -> dict[str, Any]:
    """Suggest every searched key the trial reaches; return the constants it reaches."""
    constants: dict[str, Any] = {}
    _walk(entries, trial, constants, {})
    return constants


def sample(entries: tuple[Entry, ...], *, seed: int) -> dict[str, Any]:
    """One complete flat trial config drawn with a seeded RandomSampler, in file order."""
    with quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        trial = study.ask()
        resolved: dict[str, Any] = {}
        _walk(entries, trial, {}, resolved)
    return resolved


def grid_space(entries: tuple[Entry, ...]) -> dict[str, list[Any]] | None:
    """Every searched key with its values (all loss alternatives included), or None when some
    dimension is continuous or an integer range."""
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        if isinstance(entry, Param):
            if not isinstance(entry.distribution, Choice):
                return None
            grid[entry.key] = list(entry.distribution.values)
        elif isinstance(entry, LossSwitch):
            if entry.distribution is not None:
                grid[entry.key] = list(entry.options)
            for option in entry.options.values():
                inner = grid_space(option)
                if inner is None:
                    return None
                grid.update(inner)
    return grid


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
            # Constants of one loss alternative only hold when that loss is chosen.
            (searched if indent else fixed).append(f"{indent}{entry.key} = {show_value(entry.value)}")
        elif isinstance(entry, Param):
            searched.append(f"{indent}{entry.key}  ~ {entry.distribution}")
        elif entry.distribution is None:
            (loss,) = entry.options
            (searched if indent else fixed).append(f"{indent}{entry.key} = {loss}")
            _describe(entry.options[loss], searched, fixed, indent=indent)
        else:
            searched.append(f"{indent}{entry.key}  ~ {entry.distribution}")
            for loss, option in entry.options.items():
                if option:
                    searched.append(f"{indent}  if {entry.key} == {loss}:")
                    _describe(option, searched, fixed, indent=indent + "    ")
