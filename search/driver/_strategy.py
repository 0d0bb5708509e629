"""How trials are proposed (Optuna through Tune's OptunaSearch) and stopped early (ASHA, median).

The scheduler only sees the primary objective; with several objectives Optuna optimises all of
them (its TPE sampler handles multi-objective studies) and the driver reports the Pareto set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.driver._promotions import PausingLimiter, PromotingAsha
from search.driver._rungs import grace_period, promotion_rungs
from search.driver._trainable import FAILED_KEY, FINAL_KEY
from search.driver._warm import WarmTrial
from search.space import Space
from search._optuna import quiet_optuna
from trainables.metric_names import LAST_EPOCH_KEY

__all__ = ["DefineByRun", "build_scheduler", "build_searcher", "grid_points", "startup_trials", "trial_threads"]


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


def startup_trials(num_samples: int) -> int:
    """Random trials TPE starts with: Optuna's default of 10, but at most a third of the budget (at
    least 3), so a small search still samples from the model. Under ASHA with promotions, the
    default scheduler, a start-up trial mostly costs the epochs to its first rung, and the model
    then learns from more points. Against random search, a fifth of the budget did worse on all
    three benchmark spaces, and half of it far worse on VIMH (bench/search_efficiency.py, README)."""
    return max(3, min(10, num_samples // 3))


def build_searcher(space: Space, define: DefineByRun, *, warm: Sequence[WarmTrial] = ()) -> tuple[Searcher, int]:
    """(OptunaSearch behind a concurrency limiter that frees a paused trial's slot, number of
    trials). ``warm``: trials of an earlier search the sampler starts from (they count towards
    TPE's random start-up)."""
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
            sampler = optuna.samplers.TPESampler(
                seed=settings.seed, multivariate=True, group=True, constant_liar=True,
                n_startup_trials=startup_trials(num_samples),
            )
    with quiet_optuna():
        searcher = _Optuna(
            space=define,
            metric=metrics if multi else metrics[0],
            mode=modes if multi else modes[0],
            sampler=sampler,
            points_to_evaluate=points or None,
            warm=warm,
        )
    return PausingLimiter(searcher, max_concurrent=settings.max_concurrent), num_samples


class _Optuna(OptunaSearch):
    """OptunaSearch that tells Optuna a trial ended with a failed final result (see
    ``search.driver._trainable``) as failed: its NaN objective is not a value to learn from; that
    adds the ``warm`` trials to its study; and that never trains a point twice.

    A trial's seed and config fix its metrics, so a proposal equal to a completed trial (TPE
    re-draws options without parameters, such as ``weighting: pcgrad``, again and again) is drawn
    anew, up to ``_REDRAWS`` times (then it runs: a small space may be exhausted). The repeat is
    told as failed: Optuna already has the point's value, and a second copy would weigh it twice
    and count towards TPE's random start-up."""

    _REDRAWS = 20

    def __init__(self, *, warm: Sequence[WarmTrial] = (), **kwargs: Any) -> None:
        self._warm = tuple(warm)
        self._pausing: set[str] = set()  # paused at the result Tune passes on next
        self._pruned: set[str] = set()  # told as pruned when they paused, not yet ended
        # the points of trials whose failure repeats on the same config and seed (FAILED_KEY)
        self._failed_points: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a searcher pickled by an older losstune (a search resumed after an upgrade)
        self.__dict__.update({"_pausing": set(), "_pruned": set(), "_failed_points": [], **state})

    def _setup_study(self, mode: str | list) -> None:
        super()._setup_study(mode)
        multi = isinstance(mode, list)
        for trial in self._warm:
            if trial.stopped:
                # as on_pause tells a trial paused at a rung (Optuna keeps no intermediate values
                # of a multi-objective trial: TPE would rank them by the study's one direction)
                told: dict[str, Any] = {
                    "state": optuna.trial.TrialState.PRUNED,
                    "intermediate_values": {} if multi else dict(trial.curve),
                }
            else:
                told = {"values": list(trial.values)} if multi else {"value": trial.values[0]}
            self._ot_study.add_trial(
                optuna.trial.create_trial(params=trial.params, distributions=trial.distributions, **told)
            )

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        for _ in range(self._REDRAWS):
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None or not self._repeats_a_point(trial_id, ot_trial.params):
                break
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            del self._ot_trials[trial_id]
            config = super().suggest(trial_id)
        return config

    def _repeats_a_point(self, trial_id: str, params: dict[str, Any]) -> bool:
        """Whether ``params``, proposed to ``trial_id``, is the point of another trial: trained
        (pruned: paused at a rung under ASHA with promotions; its values are known), failed in a
        way the same config and seed repeat (a diverged loss, a refused config), or training now
        (constant_liar keeps TPE off a running trial's point only where the point has a parameter
        to perturb). Training now means not ended in Tune: an Optuna trial stays RUNNING after a
        value Optuna refused (NaN), and its point may be drawn again."""
        trained = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if any(t.params == params for t in self._ot_study.get_trials(deepcopy=False, states=trained)):
            return True
        if params in self._failed_points:  # it would fail again: TPE, which skips failed trials, redraws it
            return True
        return any(other != trial_id and other not in self._completed_trials and t.params == params
                   for other, t in self._ot_trials.items())

    def on_pause(self, trial_id: str) -> None:
        """A trial paused at a rung (``PromotingAsha``) is told to Optuna as pruned there, with the
        values it reported, rung included: TPE counts it (towards its random start-up too) and
        learns from it now, not when the search ends. Tune asks the scheduler before it passes the
        rung's result on, so the trial is told with that result (``on_trial_result``). A trial that
        a promotion later lets run to its end is added again as a completed trial of the same point
        (``on_trial_complete``)."""
        if trial_id in self._ot_trials and trial_id not in self._pruned and trial_id not in self._completed_trials:
            self._pausing.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        pass  # its Optuna trial stays pruned; its end is added in on_trial_complete

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if result.get(FAILED_KEY) or trial_id in self._pruned:
            return
        super().on_trial_result(trial_id, result)
        if trial_id in self._pausing:
            self._pausing.remove(trial_id)
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._pruned.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result is not None and result.get(FAILED_KEY):
            if trial_id in self._ot_trials:
                self._failed_points.append(dict(self._ot_trials[trial_id].params))
            result, error = None, True
        self._pausing.discard(trial_id)
        if trial_id in self._pruned:
            self._pruned.remove(trial_id)
            self._completed_trials.add(trial_id)
            if result is not None and not error:  # ran to its end after a promotion (None: stopped while paused)
                ot_trial = self._ot_trials[trial_id]
                metrics = self.metric if isinstance(self.metric, list) else [self.metric]
                values = [result.get(metric) for metric in metrics]
                # as OptunaSearch tells a value Optuna refuses (NaN): not at all
                if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    self._ot_study.add_trial(optuna.trial.create_trial(
                        params=ot_trial.params, distributions=ot_trial.distributions, values=values))
            return
        if result is not None and not error and not result.get(FINAL_KEY) and trial_id not in self._completed_trials:
            # stopped by the scheduler (asha, median) or the time budget: its value is of fewer
            # epochs, not final; told as a trial paused at a rung is (with its curve, via on_trial_result)
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


class _FinishLastEpoch:
    """Never stop (or pause) a trial at its last epoch (its epochs, or its own patience, ran out:
    ``LAST_EPOCH_KEY``) or on its final result: the trial ends there anyway, and stopping it would
    only lose its test metrics (and count it as stopped early).
    A trial whose final result says it failed is dropped as a failed trial, not recorded.

    The scheduler is not asked at all there: MedianStoppingRule remembers every trial it decided
    to stop and fails an assertion when such a trial reports again; the last epoch's result still
    reaches both schedulers through ``on_trial_complete``."""

    epochs: int
    objective: str  # the metric and mode the scheduler was built with
    mode: str

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(FINAL_KEY) or result.get(LAST_EPOCH_KEY) or result.get("epoch", 0) >= self.epochs:
            return TrialScheduler.CONTINUE
        value = result.get(self.objective)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            return self._diverged(tune_controller, trial, result)
        return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]

    def _diverged(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """The decision on a NaN or infinite objective, which ranks last: Ray's schedulers never
        stopped it (NaN is never below a cutoff; Ray's median rule leaves it out)."""
        raise NotImplementedError

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # A failed final result carries no objective: the trial is dropped as after an error.
        if result.get(FAILED_KEY):
            super().on_trial_error(tune_controller, trial)  # type: ignore[misc]
        else:
            super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]


# A diverged trial's value to Ray's ASHA: worse than any real one, yet finite (an inf among the
# values made the next cutoff NaN).
_WORST = 1e300


class _Asha(_FinishLastEpoch, AsyncHyperBandScheduler):
    def __init__(self, *, epochs: int, metric: str, mode: str, **kwargs: Any) -> None:
        super().__init__(metric=metric, mode=mode, **kwargs)
        self.epochs, self.objective, self.mode = epochs, metric, mode

    def _diverged(self, tune_controller: Any, trial: Any, result: dict) -> str:
        # The worst value counts at its rung, as PromotingAsha counts it, and the trial stops
        # wherever it is: Ray's cutoff comes from the other trials, so a NaN first at its rung, or
        # between rungs, ran on (a diverged model does not come back).
        worst = {**result, self.objective: _WORST if self.mode == "min" else -_WORST}
        AsyncHyperBandScheduler.on_trial_result(self, tune_controller, trial, worst)
        return TrialScheduler.STOP


class _Median(_FinishLastEpoch, MedianStoppingRule):
    def __init__(self, *, epochs: int, metric: str, mode: str, **kwargs: Any) -> None:
        super().__init__(metric=metric, mode=mode, **kwargs)
        self.epochs, self.objective, self.mode = epochs, metric, mode

    def _diverged(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return TrialScheduler.STOP  # stopped at once: it can only be worse than the median

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        # Too few trials reached this epoch to compare: run on. Ray's rule pauses the trial while
        # another waits, so that it catches up; each pause would cost a new worker and a checkpoint
        # restore, every epoch (its min_time_slice does not spare the first).
        return TrialScheduler.CONTINUE


def build_scheduler(space: Space, *, epochs: int) -> TrialScheduler:
    """ASHA / median stopping on the primary objective, with epochs as the time axis, after
    ``grace_period``."""
    settings = space.search
    objective = space.objectives[0]
    grace = grace_period(space, epochs=epochs)
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
    if settings.scheduler == "asha_promotions":
        return PromotingAsha(metric=objective.metric, mode=objective.mode,
                             milestones=promotion_rungs(space, epochs=epochs), reduction_factor=settings.reduction_factor)
    if settings.scheduler == "median":
        return _Median(
            epochs=epochs, time_attr="epoch", metric=objective.metric, mode=objective.mode, grace_period=grace
        )
    return FIFOScheduler()
