"""Ray's schedulers as the driver builds them (`scheduler: asha`, `median`): a diverged trial is
the worst, and the median rule never pauses a trial to let others catch up."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from search.driver._strategy import _Asha, _Median
from trainables.metric_names import LAST_EPOCH_KEY


class _Trial:  # hashable, as Ray's schedulers key their state by trial
    def __init__(self, trial_id: str, status: str = "RUNNING") -> None:
        self.trial_id, self.status = trial_id, status


def _trial(trial_id: str, status: str = "RUNNING") -> _Trial:
    return _Trial(trial_id, status)


def test_the_median_rule_never_pauses_a_trial_while_another_waits():
    # max_concurrent 2 on one CPU: b waits while a runs. Ray's rule paused the running trial at
    # every epoch while fewer than 3 trials had reached it (each pause: a new worker, a restore).
    a, b = _trial("a"), _trial("b", "PENDING")
    controller = SimpleNamespace(get_live_trials=lambda: [a, b])
    scheduler = _Median(epochs=6, time_attr="epoch", metric="val/mae_norm_mean", mode="min", grace_period=1)
    decisions = [scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val/mae_norm_mean": 0.5 / epoch})
                 for epoch in range(1, 6) for trial in (a, b)]  # fmt: skip
    assert decisions == [TrialScheduler.CONTINUE] * 10


@pytest.mark.parametrize(("mode", "diverged"), [("min", math.nan), ("max", math.nan), ("max", math.inf),
                                                ("min", -math.inf)])
def test_asha_stops_a_diverged_trial_as_the_worst_and_judges_the_next_as_before(mode, diverged):
    # Ray's ASHA never stopped a NaN (NaN < cutoff is False), and an inf made the next cutoff NaN
    scheduler = _Asha(epochs=9, time_attr="epoch", metric="m", mode=mode, max_t=9, grace_period=1,
                      reduction_factor=3)  # fmt: skip
    trials = [_trial(str(i)) for i in range(6)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    good = [0.5, 0.6, 0.7] if mode == "max" else [0.5, 0.4, 0.3]
    for trial, value in zip(trials, good):
        scheduler.on_trial_result(None, trial, {"epoch": 1, "m": value})
    assert scheduler.on_trial_result(None, trials[3], {"epoch": 1, "m": diverged}) == TrialScheduler.STOP
    best, worst = (0.9, 0.0) if mode == "max" else (0.1, 9.0)
    assert scheduler.on_trial_result(None, trials[4], {"epoch": 1, "m": best}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, trials[5], {"epoch": 1, "m": worst}) == TrialScheduler.STOP


@pytest.mark.parametrize("epoch", [1, 2])  # first at its rung; between rungs
def test_asha_stops_a_diverged_trial_with_no_other_trial_to_compare_or_between_rungs(epoch):
    # before: Ray's cutoff, from the other trials' values, let it run on
    scheduler = _Asha(epochs=9, time_attr="epoch", metric="m", mode="max", max_t=9, grace_period=1,
                      reduction_factor=3)  # fmt: skip
    trial = _trial("0")
    scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, trial, {"epoch": epoch, "m": math.nan}) == TrialScheduler.STOP


@pytest.mark.parametrize("scheduler_class", [_Asha, _Median])
def test_a_trial_whose_own_patience_ends_is_never_stopped_at_its_last_epoch(scheduler_class):
    # stopping it there would only lose its test metrics and count it as stopped early
    options = {"max_t": 9, "reduction_factor": 3} if scheduler_class is _Asha else {}
    scheduler = scheduler_class(epochs=9, time_attr="epoch", metric="m", mode="max", grace_period=1, **options)
    trials = [_trial(str(i)) for i in range(5)]
    controller = SimpleNamespace(get_live_trials=lambda: trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    for trial, value in zip(trials, (0.9, 0.8, 0.7)):
        scheduler.on_trial_result(controller, trial, {"epoch": 1, "m": value})
    worst = {"epoch": 1, "m": 0.0}
    assert scheduler.on_trial_result(controller, trials[3], worst) == TrialScheduler.STOP
    assert scheduler.on_trial_result(controller, trials[4], {**worst, LAST_EPOCH_KEY: 1.0}) == TrialScheduler.CONTINUE


def test_the_median_rule_stops_a_diverged_trial_at_once():
    # Ray's rule leaves a non-finite running mean out and never stopped such a trial
    scheduler = _Median(epochs=9, time_attr="epoch", metric="m", mode="max", grace_period=1)
    trials = [_trial(str(i)) for i in range(2)]
    controller = SimpleNamespace(get_live_trials=lambda: trials)
    assert scheduler.on_trial_result(controller, trials[0], {"epoch": 1, "m": 0.5}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(controller, trials[1], {"epoch": 1, "m": math.nan}) == TrialScheduler.STOP
