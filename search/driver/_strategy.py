"""How trials are proposed (Optuna through Tune's OptunaSearch) and stopped early (ASHA, median).

The scheduler only sees the primary objective; with several objectives Optuna optimises all of
them (its TPE sampler handles multi-objective studies) and the driver reports the Pareto set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.driver._trainable import FAILED_KEY, FINAL_KEY
from search.space import Space
from search._optuna import quiet_optuna

__all__ = ["DefineByRun", "build_scheduler", "build_searcher", "grid_points", "trial_threads"]


def trial_threads(space: Space) -> int:
    """torch threads of a trial: the space's train.threads, else its whole-CPU share (at least 1)."""
    fixed = space.constants["train.threads"]
    return int(fixed) if fixed else max(1, math.floor(space.resources.cpu))


class DefineByRun:
    """The space's define-by-run function with ``train.threads`` set to the trial's CPU share, so
    the config Tune, MLflow and ``best_config.yaml`` see is the one ``train`` runs.

    A class, not a closure: Tune pickles the searcher (with this) into the experiment state."""

    def __init__(self, space: Space, *, threads: int) -> None:
        self.space = space
        self.threads = threads

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {**self.space.define_by_run(trial), "train.threads": self.threads}


class _NotGrid(ValueError):
    pass


class _Enumerator:
    """A stand-in Optuna trial that takes choice number ``forced[k]`` at its k-th choice (0 beyond)."""

    def __init__(self, forced: list[int]) -> None:
        self.forced = forced
        self.taken: list[tuple[int, int]] = []  # (index, number of choices) per decision
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        k = len(self.taken)
        index = self.forced[k] if k < len(self.forced) else 0
        self.taken.append((index, len(choices)))
        self.params[name] = choices[index]
        return choices[index]

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        raise _NotGrid(f"search.sampler grid needs choice/grid values only, but {name} is continuous")

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        raise _NotGrid(f"search.sampler grid needs choice/grid values only, but {name} is an integer range")


def grid_points(define: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """Every distinct trial of a space made of choices, conditional ones included: a loss's
    parameters are enumerated only under that loss (a plain product over all keys would repeat
    each config once per value of the parameters of losses it did not choose)."""
    points: list[dict[str, Any]] = []
    forced: list[int] = []
    while True:
        trial = _Enumerator(forced)
        define(trial)
        points.append(trial.params)
        taken = list(trial.taken)
        while taken and taken[-1][0] + 1 >= taken[-1][1]:
            taken.pop()
        if not taken:
            return points
        forced = [index for index, _ in taken[:-1]] + [taken[-1][0] + 1]


def build_searcher(space: Space, define: DefineByRun) -> tuple[Searcher, int]:
    """(OptunaSearch behind a ConcurrencyLimiter, number of trials)."""
    settings = space.search
    metrics = [o.metric for o in space.objectives]
    modes = [o.mode for o in space.objectives]
    multi = len(metrics) > 1
    points: list[dict[str, Any]] = []
    num_samples = settings.num_samples
    if settings.sampler == "grid":
        points = grid_points(define)
        num_samples = len(points)
        # Every trial is enqueued; the sampler below only fills what a point leaves open (nothing).
        sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=settings.seed)
    elif settings.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=settings.seed)
    else:
        # multivariate + group: TPE models the loss parameters jointly within each loss choice
        # (a conditional space); constant_liar keeps parallel trials from proposing the same point.
        with quiet_optuna():
            sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=True, group=True, constant_liar=True)
    with quiet_optuna():
        searcher = _Optuna(
            space=define,
            metric=metrics if multi else metrics[0],
            mode=modes if multi else modes[0],
            sampler=sampler,
            points_to_evaluate=points or None,
        )
    return ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent), num_samples


class _Optuna(OptunaSearch):
    """OptunaSearch that tells Optuna a trial ended with a failed final result (see
    ``search.driver._trainable``) as failed: its NaN objective is not a value to learn from."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not result.get(FAILED_KEY):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and result.get(FAILED_KEY):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)


class _FinishLastEpoch:
    """Never stop (or pause) a trial at its last epoch or on its final result: the trial ends there
    anyway, and stopping it would only lose its test metrics (and count it as stopped early).
    A trial whose final result says it failed is dropped as a failed trial, not recorded.

    The scheduler is not asked at all there: MedianStoppingRule remembers every trial it decided
    to stop and fails an assertion when such a trial reports again; the last epoch's result still
    reaches both schedulers through ``on_trial_complete``."""

    epochs: int

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(FINAL_KEY) or result.get("epoch", 0) >= self.epochs:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # A failed final result carries no objective: the trial is dropped as after an error.
        if result.get(FAILED_KEY):
            super().on_trial_error(tune_controller, trial)  # type: ignore[misc]
        else:
            super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]


class _Asha(_FinishLastEpoch, AsyncHyperBandScheduler):
    def __init__(self, *, epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epochs = epochs


class _Median(_FinishLastEpoch, MedianStoppingRule):
    def __init__(self, *, epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epochs = epochs


def build_scheduler(space: Space, *, epochs: int) -> TrialScheduler:
    """ASHA / median stopping on the primary objective, with epochs as the time axis."""
    settings = space.search
    objective = space.objectives[0]
    grace = min(settings.grace_period, epochs)
    if settings.scheduler == "asha":
        return _Asha(
            epochs=epochs,
            time_attr="epoch",
            metric=objective.metric,
            mode=objective.mode,
            max_t=epochs,
            grace_period=grace,
            reduction_factor=settings.reduction_factor,
        )
    if settings.scheduler == "median":
        return _Median(
            epochs=epochs, time_attr="epoch", metric=objective.metric, mode=objective.mode, grace_period=grace
        )
    return FIFOScheduler()
