"""Warm start: the scored trials of an earlier search, read back from MLflow, as Optuna trials of
this space (``search run SPACE --warm-start SEARCH``).

A trial fits when replaying this space's define-by-run on its flat config takes, at every searched
key it reaches, a value this space may draw there (a loss option this head offers, a number inside
the range), and every constant it reaches (epochs, data, ...) has this space's value. Its objective values are the ones the report ranks it by (at its best epoch); the
earlier search must have the same objectives, in the same order and directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.driver._plan import SearchInputError
from search.ranking import SCORED_STATES
from search.space import Space
from search.tracking._buffer import param_text

__all__ = ["WarmStart", "WarmTrial", "fitting_params", "read_warm_start"]


@dataclass(frozen=True)
class WarmTrial:
    params: dict[str, Any]  # searched key -> value, as this space's sampler names them
    distributions: dict[str, Any]  # searched key -> optuna distribution
    values: tuple[float, ...]  # one per objective


@dataclass(frozen=True)
class WarmStart:
    search_id: str  # the earlier search
    trials: tuple[WarmTrial, ...]
    unscored: int  # its trials that failed or never ended
    unfit: int  # its scored trials outside this space

    def note(self) -> str:
        return (
            f"warm start: the sampler starts from {len(self.trials)} scored trial(s) of search {self.search_id}"
            f" ({self.unfit} outside this space, {self.unscored} failed or unfinished left out)"
        )


# Where a trial ran, not what it computed: a trial fits whatever these were.
_WHERE_IT_RAN = frozenset({"train.threads", "train.device"})


class _DoesNotFit(Exception):
    pass


class _Replay:
    """A stand-in Optuna trial that answers every suggestion with the value of ``params`` when the
    distribution asked for contains it, and records the distributions."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.distributions: dict[str, Any] = {}
        self.params_taken: dict[str, Any] = {}

    def _take(self, name: str, distribution: Any, value: Any) -> Any:
        try:
            fits = distribution._contains(distribution.to_internal_repr(value))
        except (TypeError, ValueError):
            fits = False
        if not fits:
            raise _DoesNotFit
        self.distributions[name] = distribution
        self.params_taken[name] = value
        return value

    def _value(self, name: str) -> Any:
        if name not in self.params:
            raise _DoesNotFit
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _DoesNotFit
        return self._take(name, FloatDistribution(low, high, log=log), float(value))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        from optuna.distributions import IntDistribution

        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _DoesNotFit
        return self._take(name, IntDistribution(low, high), value)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        from optuna.distributions import CategoricalDistribution

        logged = param_text(self._value(name))
        # the choice itself: read back from MLflow, the string "1" is the number 1
        for choice in choices:
            if param_text(choice) == logged:
                return self._take(name, CategoricalDistribution(list(choices)), choice)
        raise _DoesNotFit


def fitting_params(space: Space, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(searched values, their optuna distributions) of the flat trial ``config`` in ``space``, or
    None when some searched key it reaches has a value ``space`` cannot draw."""
    replay = _Replay(config)
    try:
        constants = space.define_by_run(replay)
    except _DoesNotFit:
        return None
    for key, value in constants.items():
        if key not in _WHERE_IT_RAN and (key not in config or not _same(config[key], value)):
            return None
    return replay.params_taken, replay.distributions


def _same(logged: Any, value: Any) -> bool:
    """Whether a value read back from MLflow (where the string "1" and the number 1 look alike) is
    ``value``: compared as logged."""
    return param_text(logged) == param_text(value)


def read_warm_start(space: Space, *, tracking_uri: str, selector: str) -> WarmStart:
    """The scored trials of the search ``selector`` names (a search id or name, as ``search report``
    takes) in the MLflow store at ``tracking_uri`` that fit ``space``. SearchInputError when there
    is no such search, its objectives differ, or none of its trials fits, and when the space's
    sampler is not TPE (random and grid samplers learn nothing from earlier trials); TrackingUriError
    when the tracking server does not answer."""
    from mlflow.exceptions import MlflowException

    from search._preflight import check_reachable
    from search.report import ReportError, load_search, open_store

    if space.search.sampler != "tpe":
        raise SearchInputError(
            f"--warm-start needs search.sampler: tpe (a sampler that learns from earlier trials), "
            f"but got {space.search.sampler}"
        )
    check_reachable(tracking_uri)  # a server that is down fails here at once, not after MLflow's retries
    try:
        record, _ = load_search(open_store(tracking_uri), tracking_uri=tracking_uri, selector=selector)
    except ReportError as exc:
        raise SearchInputError(f"--warm-start must name an earlier search: {exc}") from None
    except MlflowException as exc:
        raise SearchInputError(f"--warm-start: reading search {selector!r} from {tracking_uri} failed: {exc}") from None
    wanted = [(o.metric, o.mode) for o in space.objectives]
    got = [(o.metric, o.mode) for o in record.objectives]
    if got != wanted:
        raise SearchInputError(
            f"--warm-start needs a search with this space's objectives {wanted}, but search "
            f"{record.search_id} has {got}"
        )
    trials: list[WarmTrial] = []
    unscored = unfit = 0
    for trial in record.trials:
        if trial.state not in SCORED_STATES or not all(v is not None and math.isfinite(v) for v in trial.values):
            unscored += 1
            continue
        fitting = fitting_params(space, trial.params)
        if fitting is None:
            unfit += 1
            continue
        trials.append(WarmTrial(params=fitting[0], distributions=fitting[1], values=tuple(trial.values)))
    if not trials:
        raise SearchInputError(
            f"--warm-start needs a search with scored trials that fit this space, but search "
            f"{record.search_id} has none ({unfit} outside this space, {unscored} failed or unfinished)"
        )
    return WarmStart(search_id=record.search_id, trials=tuple(trials), unscored=unscored, unfit=unfit)
