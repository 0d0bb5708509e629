"""The parsed, validated space: settings dataclasses and the Space the driver and the CLI use.

A space file (YAML) has these sections; ``~`` marks the values that may be a distribution
(``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{int: [lo, hi]}``, ``{choice: [...]}``,
``{grid: [...]}``), every other value is a literal::

    name: vimh-loss-search           # MLflow experiment name; default: the file name
    data: {kind, path, val_fraction, limit, labels, seed}      # fixed: one data set per search
    model: {kind, hidden ~, dropout ~}
    train: {epochs, batch_size ~, lr ~, weight_decay ~, grad_clip ~, patience, seed, threads,
            amp, device}
    heads:                           # the heads to train (names from the data set); without this
                                     # section every head trains with {weight: 1.0, loss: ce}
      <head>: {weight ~, loss}       # loss: a name, {name: {param: value ~}}, or
                                     # {choice: {name: {param: value ~}, ...}} / {grid: ...}
    energy_weight: ~                 # >= 0; 0 disables the energy term
    energy: {p ~}
    objective: {metric, mode}        # a val/ task metric the trainer reports, never a loss value
                                     # (losses of different types are not comparable); a list is
                                     # multi-objective, the first one drives early stopping
    search: {num_samples, sampler, scheduler, grace_period, reduction_factor, max_concurrent,
             seed, time_budget_s, max_failures}
    resources: {cpu, gpu}            # per trial; fractions allowed
    mlflow: {tracking_uri, experiment}

Why these may be searched and the others not: epochs and patience set the budget the scheduler
divides (ASHA's ``max_t``), the seed makes a trial reproducible, and the data set, the model kind
and the devices define what is compared; searching them would compare different problems.
``data.path`` is resolved against the current working directory when the space is loaded (trials
run in their own directories); the default for ``kind: vimh`` is ``data/vimh-default``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from search.space import _compile
from search.space._compile import Entry
from search.space._distributions import SuggestTrial
from trainables.data import DataSpec, HeadInfo

__all__ = ["SEARCH_NAME_RULE", "MlflowSettings", "Objective", "Resources", "SearchSettings", "Space", "is_search_name"]

# A search's name names its run directory (<storage>/<name>) and is part of its MLflow search id.
SEARCH_NAME_RULE = "a search name of 1 to 100 letters, digits, '.', '_' or '-' that starts with a letter or digit"
_SEARCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_search_name(name: object) -> bool:
    """Whether ``name`` may name a search (see SEARCH_NAME_RULE): no path separators, no ``..``."""
    return isinstance(name, str) and _SEARCH_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class Objective:
    """A task metric reported by the trainer (``val/...``) and its direction."""

    metric: str
    mode: Literal["min", "max"]


@dataclass(frozen=True)
class SearchSettings:
    num_samples: int = 16
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    scheduler: Literal["asha", "median", "none"] = "asha"
    grace_period: int = 1  # epochs a trial runs before a scheduler may stop it
    reduction_factor: float = 3.0
    max_concurrent: int = 2
    seed: int = 0
    time_budget_s: float | None = None  # None: no wall-clock limit for the whole search
    max_failures: int = 0  # retries of a crashed trial (from its last checkpoint)


@dataclass(frozen=True)
class Resources:
    """Resources of one trial; fractions share a device between trials."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI or the project default
    experiment: str | None = None  # None: the space's name


@dataclass(frozen=True)
class Space:
    """A validated search space. Build it with ``load_space``."""

    name: str
    path: Path
    text: str
    data: DataSpec
    heads: dict[str, HeadInfo]
    objectives: list[Objective]
    search: SearchSettings
    resources: Resources
    mlflow: MlflowSettings
    entries: tuple[Entry, ...] = field(repr=False, default=())

    def define_by_run(self, trial: SuggestTrial) -> dict[str, Any]:
        """Suggest every searched dimension under its flat trial-config key (loss parameters only
        for the loss the trial chose) and return the constants, so that suggested + returned is
        a complete flat trial config: what ``ray.tune.search.optuna.OptunaSearch(space=...)``
        expects from a define-by-run function."""
        return _compile.define_by_run(self.entries, trial)

    def sample(self, *, seed: int) -> dict[str, Any]:
        """One complete flat trial config drawn with a seeded Optuna RandomSampler."""
        return _compile.sample(self.entries, seed=seed)

    def grid_search_space(self) -> dict[str, list[Any]] | None:
        """Every searched key with all its values (for ``optuna.samplers.GridSampler``), or None
        when a dimension is continuous (uniform, loguniform, int)."""
        return _compile.grid_space(self.entries)

    def dimensions(self) -> list[str]:
        """Human-readable lines: the searched dimensions (conditional ones indented under the
        loss they belong to), then the fixed values."""
        searched, fixed = _compile.dimension_lines(self.entries)
        count = sum(1 for line in searched if "  ~ " in line)
        conditional = sum(1 for line in searched if "  ~ " in line and line.startswith(" "))
        lines = [f"searched ({count} dimension{'s' if count != 1 else ''}, {conditional} conditional on a loss):"]
        lines += [f"  {line}" for line in searched] or ["  (none)"]
        lines += ["fixed:", *(f"  {line}" for line in fixed)]
        return lines
