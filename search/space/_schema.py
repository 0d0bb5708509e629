"""The validated space and the driver's own settings (search, resources, mlflow).

A space file (YAML) has the sections of a trial (``trainables.config``: data, model, train,
heads, energy_weight, energy, objective, and any a plugin adds) and these of the driver::

    name: vimh-loss-search           # run directory and MLflow experiment name; default: the file name
    objective: {metric, mode}        # a val/ task metric the trainer reports, never a loss value
                                     # (losses of different types are not comparable); a list is
                                     # multi-objective, the first one drives early stopping
    search: {num_samples, sampler, scheduler, grace_period, reduction_factor, max_concurrent,
             seed, time_budget_s, max_failures, data_loading}
    resources: {cpu, gpu}            # per trial; fractions allowed
    mlflow: {tracking_uri, experiment}

Which trial settings may be a distribution, their types and bounds are stated with the trial
schema (``Rule(searchable=True)``), the driver's here, once each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from trainables.settings import SEED_RULE, Rule

if TYPE_CHECKING:
    from search.space._compile import Entry
    from search.space._distributions import SuggestTrial
    from trainables.data import DataSpec, HeadInfo

__all__ = ["ASHA_SCHEDULERS", "SEARCH_NAME_RULE", "MlflowSettings", "Objective", "Resources", "SearchSettings", "Space", "is_search_name"]

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


MAX_TRIALS = 100_000  # trials of one search: its num_samples, or the points of its grid
# the schedulers with rungs at grace x rf^k epochs (search.driver._rungs), which a reduction factor sets
ASHA_SCHEDULERS = ("asha", "asha_promotions")

# Upper bounds refuse what no machine can run (a billion trials, a year of budget) before the
# driver builds anything for it.
@dataclass(frozen=True)
class SearchSettings:
    num_samples: Annotated[int, Rule(minimum=1, maximum=MAX_TRIALS)] = 16
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    # asha_promotions: the ASHA paper's (pauses every trial at a rung and promotes the top 1/rf;
    # see search.driver._promotions); asha: Ray's (stops a trial below its rung's cutoff)
    scheduler: Literal["asha_promotions", "asha", "median", "none"] = "asha_promotions"
    # epochs a trial runs before a scheduler may stop or pause it; None: from train.epochs (see asha_grace)
    grace_period: Annotated[int | None, Rule(minimum=1)] = None
    # at least 1.1: there are log(epochs) / log(rf) rungs (1 + 1e-12 gave 2e12 to build: a hang)
    reduction_factor: Annotated[float, Rule(minimum=1.1, maximum=100.0)] = 3.0
    max_concurrent: Annotated[int, Rule(minimum=1, maximum=1_000)] = 2
    seed: Annotated[int, SEED_RULE] = 0
    # None: no wall-clock limit for the whole search
    time_budget_s: Annotated[float | None, Rule(minimum=0.0, min_open=True, maximum=366 * 24 * 3600.0)] = None
    max_failures: Annotated[int, Rule(minimum=0, maximum=100)] = 0  # retries of a crashed trial
    # driver: the driver loads the data set once and hands it to the trials through Ray's object
    # store (one copy per node, no shared file system needed); per_node: each trial loads
    # data.path itself, which must then be an absolute path that exists on every node.
    data_loading: Literal["driver", "per_node"] = "driver"


@dataclass(frozen=True)
class Resources:
    """Resources of one trial; fractions share a device between trials."""

    cpu: Annotated[float, Rule(minimum=0.0, min_open=True, maximum=1024.0)] = 1.0
    gpu: Annotated[float, Rule(minimum=0.0, maximum=64.0)] = 0.0


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
    # Settings no trial varies (train.epochs, train.threads, ...): flat key -> value.
    constants: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def num_trials(self) -> int:
        """The trials the search runs: ``search.num_samples``, or with the grid sampler one per
        point of the grid."""
        if self.search.sampler != "grid":
            return self.search.num_samples
        from search.space._compile import grid_size

        return grid_size(self.entries)

    def repeats_note(self) -> str | None:
        """A note where the space holds fewer distinct configurations than it runs trials (every
        searched value a choice): the rest repeat configurations, which train the same metrics
        (a config and its seed fix them), once the sampler's redraws find nothing new."""
        from search.space._compile import grid_size, grid_space

        if self.search.sampler == "grid" or grid_space(self.entries) is None:
            return None
        points, trials = grid_size(self.entries), self.search.num_samples
        if trials <= points:
            return None
        return (f"search.num_samples is {trials}, but the space holds {points} distinct configuration(s): "
                f"{trials - points} trial(s) repeat one, with the same metrics (num_samples: {points}, or "
                f"sampler: grid, runs each once)")

    def define_by_run(self, trial: SuggestTrial) -> dict[str, Any]:
        """Suggest every searched dimension under its flat trial-config key (loss parameters only
        for the loss the trial chose) and return the constants, so that suggested + returned is
        a complete flat trial config: what ``ray.tune.search.optuna.OptunaSearch(space=...)``
        expects from a define-by-run function."""
        from search.space._compile import define_by_run

        return define_by_run(self.entries, trial)

    def sample(self, *, seed: int) -> dict[str, Any]:
        """One complete flat trial config drawn with a seeded Optuna RandomSampler."""
        from search.space._compile import sample

        return sample(self.entries, seed=seed)

    def searched(self) -> dict[str, Any]:
        """Every searched flat key with its distribution (``search.space.to_json`` writes them)."""
        from search.space._compile import searched

        return searched(self.entries)

    def grid_search_space(self) -> dict[str, list[Any]] | None:
        """Every searched key with all its values (for ``optuna.samplers.GridSampler``), or None
        when a dimension is continuous (uniform, loguniform, int)."""
        from search.space._compile import grid_space

        return grid_space(self.entries)

    def dimensions(self) -> list[str]:
        """Human-readable lines: the searched dimensions (conditional ones indented under the
        loss they belong to), then the fixed values."""
        from search.space._compile import dimension_lines

        searched, fixed = dimension_lines(self.entries)
        count = sum(1 for line in searched if "  ~ " in line)
        conditional = sum(1 for line in searched if "  ~ " in line and line.startswith(" "))
        lines = [f"searched ({count} dimension{'s' if count != 1 else ''}, {conditional} conditional on a choice):"]
        lines += [f"  {line}" for line in searched] or ["  (none)"]
        lines += ["fixed:", *(f"  {line}" for line in fixed)]
        return lines
