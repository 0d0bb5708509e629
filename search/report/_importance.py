"""Parameter importance: an in-memory Optuna study rebuilt from the trial runs, scored with fANOVA.

The study's distributions come from the dimensions the search logged (so a log-uniform
parameter is analysed on its log scale) and, where those do not say, from the logged values.
Optuna's evaluators use the parameters every trial has; a loss's own parameters exist only in
the trials that chose that loss, so they drop out and the loss switch itself is what is scored.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from search._optuna import quiet_optuna
from search.report._load import SearchRecord, TrialRecord, is_value
from search.report._tables import scored
from search.space._distributions import Choice, Distribution, IntRange, LogUniform

__all__ = ["importance_trials", "parameter_importance"]

_HIDDEN = ("train.threads", "objective.metric", "objective.mode")
_CATEGORICAL_TYPES = (str, bool, type(None))


def _distribution(values: Sequence[Any], searched: Distribution | None) -> Any:
    """An Optuna distribution holding every logged value, or None for a value type it cannot hold."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if any(isinstance(v, (tuple, list, dict)) for v in values):
        return None
    if isinstance(searched, Choice) or any(isinstance(v, _CATEGORICAL_TYPES) for v in values):
        return CategoricalDistribution(sorted(set(values), key=repr))
    low, high = min(values), max(values)
    if searched is not None:
        low, high = min(low, searched.low), max(high, searched.high)
    if isinstance(searched, IntRange) or all(isinstance(v, int) for v in values):
        return IntDistribution(int(low), int(high))
    return FloatDistribution(float(low), float(high), log=isinstance(searched, LogUniform) and low > 0)


def _searched_keys(trials: Sequence[TrialRecord]) -> list[str]:
    """Keys every trial has and whose value differs between trials."""
    common = set(trials[0].params)
    for trial in trials[1:]:
        common &= set(trial.params)
    return sorted(k for k in common if k not in _HIDDEN and len({repr(t.params[k]) for t in trials}) > 1)


def importance_trials(search: SearchRecord, *, objective: int = 0) -> list[TrialRecord]:
    """The trials importance is computed from: finished or stopped (as for the best trial) with a
    value of objective number ``objective``."""
    return [t for t in scored(search.trials, objective=objective) if is_value(t.values[objective])]


def parameter_importance(search: SearchRecord, *, objective: int = 0, seed: int = 0) -> dict[str, float] | str:
    """fANOVA importance (normalised to sum 1) of the parameters every scored trial (finished or
    stopped, as for the best trial) has, for objective number ``objective``; or why it cannot be
    computed (too few trials, nothing varied, the evaluator failed)."""
    metric = search.objectives[objective].metric
    trials = importance_trials(search, objective=objective)
    if len(trials) < 2:
        return f"needs at least 2 finished or stopped trials with a value of {metric}, but got {len(trials)}"
    if len({t.values[objective] for t in trials}) < 2:
        return f"every trial has the same {metric}: nothing to explain"
    distributions: dict[str, Any] = {}
    for key in _searched_keys(trials):
        dist = _distribution([t.params[key] for t in trials], (search.dimensions or {}).get(key))
        if dist is not None:
            distributions[key] = dist
    if not distributions:
        return "needs a parameter that every trial has and that differs between trials, but got none"
    try:
        return _fanova(search, trials, distributions=distributions, objective=objective, seed=seed)
    except Exception as exc:  # noqa: BLE001 - importance is one part of the report; the rest stands without it
        said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return f"could not be computed: Optuna's fANOVA evaluator failed ({said})"


def _fanova(
    search: SearchRecord, trials: Sequence[TrialRecord], *, distributions: dict[str, Any], objective: int, seed: int
) -> dict[str, float]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    direction = "maximize" if search.objectives[objective].mode == "max" else "minimize"
    # numpy's overflow warnings on extreme values say nothing the returned reason does not.
    with quiet_optuna(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        study = optuna.create_study(direction=direction)
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params={k: t.params[k] for k in distributions},
                    distributions=distributions,
                    value=t.values[objective],
                )
                for t in trials
            ]
        )
        importances = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
    return {k: float(v) for k, v in importances.items()}
