"""The one ranking of a search's trials and its Pareto set, for the driver's summary and the report.

Trials that ran to their end come first, then those stopped early (their value is from fewer
epochs), then failed ones; within each, by the primary objective at the trial's best epoch; ties
by the other objectives in their order (a trial equal in the first and worse in the second is
dominated: it must not be named best), then by trial id. Trials without a value of the primary
objective come last, by trial id. The best
trial is the first finished or stopped one with a value. ``summary.txt`` and ``report.md`` both
name it from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

__all__ = ["RANKED_STATES", "SCORED_STATES", "TIE_TOLERANCE", "Ranked", "best_epoch", "best_line", "better", "best_trial", "pareto_set", "ranked", "same_value"]

# Relative difference within which two values of a metric are one: float rounding of the same
# value (a mean of per-head accuracies, 49/135, came out one ulp apart by two sums).
TIE_TOLERANCE = 1e-9


def same_value(a: float, b: float) -> bool:
    """Whether ``a`` and ``b`` are one value but for float rounding (``TIE_TOLERANCE``)."""
    return math.isclose(a, b, rel_tol=TIE_TOLERANCE)


# States in rank order; any other (running, interrupted, pending) ranks after them.
RANKED_STATES = ("FINISHED", "STOPPED", "FAILED")
# States whose value counts: a trial that ran to its end or was stopped early.
SCORED_STATES = RANKED_STATES[:2]


class Ranked(Protocol):
    """What a ranked trial has (the driver's TrialSummary and the report's TrialRecord)."""

    trial_id: str
    state: str
    values: tuple[float | None, ...]  # one per objective, at the trial's best epoch


_T = TypeVar("_T", bound=Ranked)


def _value(trial: Ranked, index: int = 0) -> float | None:
    value = trial.values[index]
    return value if value is not None and math.isfinite(value) else None


def better(a: float, b: float, mode: str) -> bool:
    """Whether value ``a`` of an objective in ``mode`` ("min" or "max") beats ``b``."""
    return a > b if mode == "max" else a < b


def best_epoch(curve: Mapping[int, float], mode: str) -> int | None:
    """A trial's best epoch from its objective per epoch (finite values), as the trainer picks it:
    the first epoch that no earlier one equals or beats. None for an empty curve."""
    best = None
    for epoch in sorted(curve):
        if best is None or better(curve[epoch], curve[best], mode):
            best = epoch
    return best


def ranked(trials: Sequence[_T], modes: Sequence[str]) -> list[_T]:
    """``trials`` best first (see the module); ``modes``: "min" or "max" per objective."""
    signs = [-1.0 if mode == "max" else 1.0 for mode in modes]
    order = {state: i for i, state in enumerate(RANKED_STATES)}

    def key(trial: _T) -> tuple:
        if _value(trial) is None:
            return (1, 0, (), trial.trial_id)
        values = [_value(trial, i) for i in range(len(signs))]
        # a later objective without a value after those with one
        scores = tuple((0, sign * v) if v is not None else (1, 0.0) for sign, v in zip(signs, values))
        return (0, order.get(trial.state, len(order)), scores, trial.trial_id)

    return sorted(trials, key=key)


def best_trial(trials: Sequence[_T], modes: Sequence[str]) -> _T | None:
    """The first ranked trial that is finished or stopped and has a value; None if none is."""
    return next((t for t in ranked(trials, modes) if t.state in SCORED_STATES and _value(t) is not None), None)


def best_line(trial: Ranked | None, metric: str) -> str:
    """How the summary and the report name the best trial."""
    if trial is None:
        return f"best trial: none (no finished or stopped trial has a value of {metric})"
    return f"best trial: {trial.trial_id} ({metric}={trial.values[0]:.6g}, {trial.state.lower()})"


def pareto_set(trials: Sequence[_T], modes: Sequence[str], *, states: Sequence[str] = ("FINISHED",)) -> list[_T]:
    """The trials in ``states`` with every objective that no other such trial is at least as good
    as in every objective and better in one; best first by the objectives in their order, ties in
    trial id order."""
    signs = [1.0 if mode == "max" else -1.0 for mode in modes]
    candidates = [t for t in trials if t.state in states and all(_value(t, i) is not None for i in range(len(modes)))]
    score: Callable[[_T], list[float]] = lambda t: [s * _value(t, i) for i, s in enumerate(signs)]  # noqa: E731

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    front = [t for t in candidates if not any(dominates(score(o), score(t)) for o in candidates if o is not t)]
    return sorted(front, key=lambda t: ([-x for x in score(t)], t.trial_id))
