"""Warm start: the scored trials of an earlier search, read back from MLflow, as Optuna trials of
this space (``search run SPACE --warm-start SEARCH``).

A trial fits when replaying this space's define-by-run on its flat config takes, at every searched
key it reaches, a value this space may draw there (a loss option this head offers, a number inside
the range), every constant it reaches (epochs, data, ...) has this space's value, and its config
has no key this space does not reach (a head since removed). Its objective values are the ones
the report ranks it by (at its best epoch); the earlier search must have the same objectives, in
the same order and directions. A trial stopped early enters Optuna as a live search tells it a
trial paused at a rung: pruned, with its curve as intermediate values (single objective), so TPE
ranks it below the trials that ran to their end instead of taking a value of fewer epochs as final.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.driver._plan import SearchInputError
from search.ranking import SCORED_STATES
from search.space import Space
from search.tracking import param_text, param_value, redact_text, redact_uri

__all__ = ["DoesNotFit", "WarmStart", "WarmTrial", "check_fit", "fitting_params", "read_warm_start"]


@dataclass(frozen=True)
class WarmTrial:
    params: dict[str, Any]  # searched key -> value, as this space's sampler names them
    distributions: dict[str, Any]  # searched key -> optuna distribution
    values: tuple[float, ...]  # one per objective (a trial that ran to its end; empty when stopped)
    curve: tuple[tuple[int, float], ...] = ()  # (epoch, primary objective) of a trial stopped early

    @property
    def stopped(self) -> bool:
        return not self.values


@dataclass(frozen=True)
class WarmStart:
    search_id: str  # the earlier search
    trials: tuple[WarmTrial, ...]
    unscored: int  # its trials that failed or never ended
    unfit: int  # its scored trials outside this space
    repeats: int = 0  # its scored trials of a point already among ``trials``
    selector: str = ""  # what --warm-start said
    matches: int = 1  # searches the selector named (this one the newest)
    tracking_uri: str = ""  # the store they were read from

    def note(self) -> str:
        from search._shell import report_command

        stopped = sum(t.stopped for t in self.trials)
        repeated = f", {self.repeats} repeated point(s)" if self.repeats else ""
        listing = report_command(self.selector, tracking_uri=self.tracking_uri)
        chosen = (
            f" (the newest of {self.matches} searches {self.selector!r} names; `{listing}` "
            f"lists them, --warm-start SEARCH_ID takes another)" if self.matches > 1 else ""
        )
        return (
            f"warm start: the sampler starts from {len(self.trials)} scored trial(s) of search {self.search_id}"
            f"{chosen}, {stopped} of them stopped early (told as pruned)"
            f" ({self.unfit} outside this space, {self.unscored} failed or unfinished{repeated} left out)"
        )


# Where a trial ran, not what it computed: a trial fits whatever these were.
_WHERE_IT_RAN = frozenset({"train.threads", "train.device"})


class DoesNotFit(Exception):
    """Why a trial config does not fit a space: at ``key``, ``here`` is what the space takes and
    ``there`` the config's value as logged (None: absent)."""

    def __init__(self, key: str, *, here: str | None, there: Any) -> None:
        self.key, self.here = key, here
        self.there = param_text(there) if there is not None else None
        super().__init__(misfit_text(self.key, self.here, self.there))


def misfit_text(key: str, here: str | None, there: str | None) -> str:
    return f"{key}: {here if here is not None else 'absent'} here, {there if there is not None else 'absent'} there"


class _Replay:
    """A stand-in Optuna trial that answers every suggestion with the value of ``params`` when the
    distribution asked for contains it, and records the distributions."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.distributions: dict[str, Any] = {}
        self.params_taken: dict[str, Any] = {}

    def _take(self, name: str, distribution: Any, value: Any, here: str) -> Any:
        try:
            fits = distribution._contains(distribution.to_internal_repr(value))
        except (TypeError, ValueError):
            fits = False
        if not fits:
            raise DoesNotFit(name, here=here, there=value)
        self.distributions[name] = distribution
        self.params_taken[name] = value
        return value

    def _value(self, name: str, here: str) -> Any:
        if name not in self.params:
            raise DoesNotFit(name, here=here, there=None)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        from optuna.distributions import FloatDistribution

        here = f"a number in [{low}, {high}]"
        value = self._value(name, here)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DoesNotFit(name, here=here, there=value)
        return self._take(name, FloatDistribution(low, high, log=log), float(value), here)

    def suggest_int(self, name: str, low: int, high: int) -> int:
        from optuna.distributions import IntDistribution

        here = f"an integer in [{low}, {high}]"
        value = self._value(name, here)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DoesNotFit(name, here=here, there=value)
        return self._take(name, IntDistribution(low, high), value, here)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        from optuna.distributions import CategoricalDistribution

        here = "one of " + ", ".join(param_text(c) for c in choices)
        value = self._value(name, here)
        # the choice itself, an exact match first (a space may offer both the number 1 and "1")
        exact = [choice for choice in choices if param_text(choice) == param_text(value)]
        found = exact or [choice for choice in choices if _same(value, choice)]
        if not found:
            raise DoesNotFit(name, here=here, there=value)
        return self._take(name, CategoricalDistribution(list(choices)), found[0], here)


def fitting_params(space: Space, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(searched values, their optuna distributions) of the flat trial ``config`` in ``space``, or
    None when it does not fit (``check_fit`` says why)."""
    try:
        return check_fit(space, config)
    except DoesNotFit:
        return None


def check_fit(space: Space, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(searched values, their optuna distributions) of the flat trial ``config`` in ``space``;
    DoesNotFit at the first key where they differ."""
    replay = _Replay(config)
    constants = space.define_by_run(replay)
    for key, value in constants.items():
        if key not in _WHERE_IT_RAN and (key not in config or not _same(config[key], value)):
            raise DoesNotFit(key, here=param_text(value), there=config.get(key))
    # a key this space never reaches (a head since removed): the trial computed something else
    for key in sorted(set(config) - set(replay.params_taken) - set(constants) - _WHERE_IT_RAN):
        raise DoesNotFit(key, here=None, there=config[key])
    return replay.params_taken, replay.distributions


def _same(logged: Any, value: Any) -> bool:
    """Whether a value read back from MLflow is ``value``: compared as logged, or as a search logged
    it before strings JSON reads as something else were logged as JSON (the pattern "1", logged
    bare, reads back as the number 1)."""
    if param_text(logged) == param_text(value):
        return True
    if not isinstance(value, str) or param_text(value) == value:
        return False
    bare = param_value(value)
    return type(bare) is type(logged) and bare == logged


def read_warm_start(space: Space, *, tracking_uri: str, selector: str, exclude: str | None = None) -> WarmStart:
    """The scored trials of the search ``selector`` names (a search id or name, as ``search report``
    takes; the newest where several match) in the MLflow store at ``tracking_uri`` that fit
    ``space``, never the search whose id is ``exclude`` (the search that starts: a restart finds its
    own parent run under the selector's name). SearchInputError when there
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
        record, _ = load_search(open_store(tracking_uri), tracking_uri=tracking_uri, selector=selector, exclude=exclude)
    except ReportError as exc:
        raise SearchInputError(f"--warm-start must name an earlier search: {exc}") from None
    except MlflowException as exc:
        raise SearchInputError(f"--warm-start: reading search {selector!r} from {redact_uri(tracking_uri)} failed: "
                               f"{redact_text(str(exc), tracking_uri)}") from None
    wanted = [(o.metric, o.mode) for o in space.objectives]
    got = [(o.metric, o.mode) for o in record.objectives]
    if got != wanted:
        raise SearchInputError(
            f"--warm-start needs a search with this space's objectives {wanted}, but search "
            f"{record.search_id} has {got}"
        )
    trials: dict[tuple, WarmTrial] = {}  # by point: each enters Optuna once
    unscored = unfit = repeats = 0
    misfits: Counter[tuple[str, str | None, str | None]] = Counter()
    # trials that ran to their end first: a point both stopped and finished enters as finished
    for trial in sorted(record.trials, key=lambda t: t.state != "FINISHED"):
        if trial.state not in SCORED_STATES or not all(v is not None and math.isfinite(v) for v in trial.values):
            unscored += 1
            continue
        try:
            params, distributions = check_fit(space, trial.params)
        except DoesNotFit as misfit:
            unfit += 1
            misfits[(misfit.key, misfit.here, misfit.there)] += 1
            continue
        point = tuple(sorted((key, param_text(value)) for key, value in params.items()))
        if point in trials:
            repeats += 1
            continue
        if trial.state == "FINISHED":
            trials[point] = WarmTrial(params=params, distributions=distributions, values=tuple(trial.values))
        else:
            trials[point] = WarmTrial(params=params, distributions=distributions, values=(), curve=trial.curve)
    if not trials:
        why = ""
        if misfits:
            where, count = misfits.most_common(1)[0]
            why = f"; most often {misfit_text(*where)} ({count} trial(s))"
        raise SearchInputError(
            f"--warm-start needs a search with scored trials that fit this space, but search "
            f"{record.search_id} has none ({unfit} outside this space, {unscored} failed or unfinished){why}"
        )
    return WarmStart(search_id=record.search_id, trials=tuple(trials.values()), unscored=unscored, unfit=unfit,
                     repeats=repeats, selector=selector, matches=record.matches, tracking_uri=tracking_uri)
