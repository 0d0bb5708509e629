"""ASHA with promotions: its rungs, the limiter that frees a paused trial's slot, and what Optuna
learns from a paused trial (the scheduler in a search: test_driver.py and test_driver_cli.py)."""

from __future__ import annotations

import math
from pathlib import Path
import pickle
from types import SimpleNamespace

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.driver._promotions import PausingLimiter, PromotingAsha, PromotionState, rung_top
from search.driver._rungs import rung_milestones
from search.driver._strategy import _Optuna
from search.driver._trainable import FINAL_KEY
from trainables.metric_names import LAST_EPOCH_KEY


@pytest.mark.parametrize(("epochs", "grace", "rf"), [(9, 1, 3), (9, 1, 2), (20, 2, 3), (6, 2, 3), (3, 1, 3), (100, 1, 4)])
def test_rungs_are_where_ray_asha_puts_them_below_the_last_epoch(epochs: int, grace: int, rf: float):
    ray_asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=epochs, grace_period=grace,
                                       reduction_factor=rf)
    (bracket,) = ray_asha._brackets
    expected = sorted(int(milestone) for milestone, _ in bracket._rungs if milestone < epochs)
    assert rung_milestones(epochs=epochs, grace_period=grace, reduction_factor=rf) == expected


def test_a_rung_promotes_its_top_third_and_every_trial_tied_with_the_last_of_them():
    # distinct scores: the top int(n / rf), best first
    assert rung_top({"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.3, "e": 0.2, "f": 0.0}, reduction_factor=3) == ["b", "c"]
    assert rung_top({"a": 0.1, "b": 0.9}, reduction_factor=3) == []  # fewer than rf: none yet
    # chance-level classifiers tie: the cutoff (the 2nd of 6) does not split them, in arrival order
    tied = {"a": 0.15, "b": 0.4, "c": 0.15, "d": 0.1, "e": 0.15, "f": 0.05}
    assert rung_top(tied, reduction_factor=3) == ["b", "a", "c", "e"]
    # a tie below the cutoff stays out; a trial that diverged (-inf) is never promoted
    assert rung_top({"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.1}, reduction_factor=2) == ["a", "b"]
    assert rung_top({"a": 0.5, **{t: -math.inf for t in "bcdef"}}, reduction_factor=1.5) == ["a"]
    assert rung_top({t: -math.inf for t in "abc"}, reduction_factor=3) == []
    # n / rf whole in decimals but not in floats (33 / 1.1, 81 / 2.7): the top 30, not 29
    assert len(rung_top({i: float(i) for i in range(33)}, reduction_factor=1.1)) == 30
    assert len(rung_top({i: float(i) for i in range(81)}, reduction_factor=2.7)) == 30
    # the same value rounded apart: (29 + 11 + 9) / 45 / 3 and (27 + 13 + 9) / 45 / 3, both 49/135
    # (before, only the first went on)
    a, b = (29 / 45 + 11 / 45 + 9 / 45) / 3, (27 / 45 + 13 / 45 + 9 / 45) / 3
    assert a != b and rung_top({"a": a, "b": b, "c": 0.1}, reduction_factor=3) == ["a", "b"]
    assert rung_top({"a": a, "b": a - 1e-6, "c": 0.1}, reduction_factor=3) == ["a"]  # a difference is one


def test_a_trial_tied_with_the_cutoff_runs_on_in_the_slot_of_the_next_to_pause():
    scheduler = PromotingAsha(metric="acc", mode="max", milestones=[1, 3], reduction_factor=3)
    trials = {t: _trial(t) for t in "abc"}
    controller = _Controller(list(trials.values()))
    for trial_id in "abc":  # all three at chance level after epoch 1
        assert scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 1, "acc": 0.15}) == (
            TrialScheduler.PAUSE)
        trials[trial_id].status = "PAUSED"
    assert scheduler.resume == ["a"]  # c made 3: a, first of the tie, runs on in c's slot
    trials["a"].status = "RUNNING"
    assert scheduler.on_trial_result(controller, trials["a"], {"epoch": 3, "acc": 0.5}) == TrialScheduler.PAUSE
    # a paused at the next rung, alone there: b, tied with it at the first, runs on in its slot
    assert scheduler.resume == ["b"] and scheduler.choose_trial_to_run(controller) is trials["b"]


class _Searcher(Searcher):
    """Records what the limiter passes on."""

    def __init__(self) -> None:
        super().__init__(metric="m", mode="max")
        self.calls: list[tuple] = []

    def suggest(self, trial_id: str) -> dict:
        return {"x": 1}

    def on_pause(self, trial_id: str) -> None:
        self.calls.append(("pause", trial_id))

    def on_unpause(self, trial_id: str) -> None:
        self.calls.append(("unpause", trial_id))

    def on_trial_complete(self, trial_id: str, result=None, error=False) -> None:
        self.calls.append(("complete", trial_id, result, error))


def test_the_limiter_gives_a_paused_trial_slot_to_a_new_trial_and_takes_it_back_on_resume():
    inner = _Searcher()
    limiter = PausingLimiter(inner, max_concurrent=1)
    assert limiter.suggest("a") == {"x": 1}
    assert limiter.suggest("b") is None  # one at a time
    limiter.on_pause("a")
    assert limiter.suggest("b") == {"x": 1}
    limiter.on_trial_complete("b", result={"m": 1.0})
    limiter.on_unpause("a")
    assert limiter.suggest("c") is None  # a runs again
    limiter.on_pause("a")
    # a stopped while paused: the searcher still hears of its end
    limiter.on_trial_complete("a")
    assert inner.calls == [("pause", "a"), ("complete", "b", {"m": 1.0}, False), ("unpause", "a"),
                           ("pause", "a"), ("complete", "a", None, False)]
    assert limiter.suggest("c") == {"x": 1}


def _optuna(**kwargs) -> _Optuna:
    searcher = _Optuna(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)}, metric="m", mode="max",
                       sampler=optuna.samplers.RandomSampler(seed=0), **kwargs)
    searcher.set_search_properties("m", "max", {})
    return searcher


def _result(value: float, epoch: int) -> dict:
    return {"m": value, "epoch": epoch, "training_iteration": epoch}


def test_optuna_counts_a_paused_trial_as_pruned_and_a_promoted_one_as_completed():
    # in Tune's order: the scheduler pauses a trial at its rung result, then the searcher sees it
    searcher = _optuna()
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
        searcher.on_pause(trial_id)
        searcher.on_trial_result(trial_id, _result(0.4 if trial_id == "b" else 0.1, 1))
    study = searcher._ot_study
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 3
    assert [t.intermediate_values for t in study.trials] == [{1: 0.1}, {1: 0.4}, {1: 0.1}]

    # b is promoted: its later results leave its pruned trial alone; its end adds a completed one
    searcher.on_unpause("b")
    searcher.on_trial_result("b", _result(0.6, 2))
    searcher.on_trial_complete("b", result=_result(0.7, 3))
    # a ends where it paused (Tune stops it without a result); c's end has no finite value
    searcher.on_trial_complete("a")
    searcher.on_trial_complete("c", result=_result(float("nan"), 1))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 3 + [optuna.trial.TrialState.COMPLETE]
    completed = study.trials[-1]
    assert completed.value == 0.7 and completed.params == study.trials[1].params
    assert study.trials[1].intermediate_values == {1: 0.4}
    # the paused point counts as trained: proposed again, it is drawn anew
    assert searcher._repeats_a_point("d", study.trials[0].params)


def test_a_trial_never_paused_is_told_to_optuna_as_before():
    ours, theirs = _optuna(), OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                                           metric="m", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    for searcher in (ours, theirs):
        searcher.suggest("a")
        searcher.on_trial_result("a", _result(0.2, 1))
        searcher.on_trial_complete("a", result={**_result(0.3, 2), FINAL_KEY: 1})
    assert [(t.state, t.value, t.params, t.intermediate_values) for t in ours._ot_study.trials] == [
        (t.state, t.value, t.params, t.intermediate_values) for t in theirs._ot_study.trials]


def test_a_trial_the_scheduler_stops_is_told_to_optuna_as_pruned_with_its_curve():
    # scheduler asha or median, or the time budget: Ray's OptunaSearch told it complete, with the
    # value of the epoch it was stopped at (not final, and not even its best)
    searcher = _optuna()
    searcher.suggest("a")
    searcher.on_trial_result("a", _result(0.4, 1))
    searcher.on_trial_complete("a", result=_result(0.1, 2))  # Tune stops it at this result
    (trial,) = searcher._ot_study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values == {1: 0.4}
    assert "a" in searcher._completed_trials


class _Controller:
    """The scheduler's view of Tune: trials, the search algorithm and the searcher behind it."""

    def __init__(self, trials: list, *, finished: bool = False) -> None:
        self.trials = trials
        self.searcher = _Searcher()
        self.search_alg = SimpleNamespace(searcher=self.searcher, is_finished=lambda: finished)
        self.stopped: list[str] = []
        self.marked: list[str] = []

    def get_trials(self) -> list:
        return self.trials

    def stop_trial(self, trial) -> None:
        self.stopped.append(trial.trial_id)
        trial.status = "TERMINATED"

    def _mark_trial_to_checkpoint(self, trial) -> None:
        self.marked.append(trial.trial_id)

    def _set_trial_status(self, trial, status: str) -> None:
        trial.status = status


def _trial(trial_id: str, status: str = "RUNNING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status)


def test_min_mode_ranks_the_lowest_value_first_and_a_pausing_trial_hands_its_slot_to_the_best():
    scheduler = PromotingAsha(metric="loss", mode="min", milestones=[1, 3], reduction_factor=3)
    a, b, c = _trial("a"), _trial("b"), _trial("c")
    controller = _Controller([a, b, c])
    assert scheduler.on_trial_result(controller, a, {"epoch": 1, "loss": 0.5}) == TrialScheduler.PAUSE
    a.status = "PAUSED"
    assert scheduler.on_trial_result(controller, b, {"epoch": 1, "loss": 0.2}) == TrialScheduler.PAUSE
    b.status = "PAUSED"
    # c makes 3 at the rung; b (lowest loss) is promoted into c's slot
    assert scheduler.on_trial_result(controller, c, {"epoch": 1, "loss": 0.9}) == TrialScheduler.PAUSE
    assert controller.searcher.calls == [("pause", "a"), ("pause", "b"), ("unpause", "b"), ("pause", "c")]
    c.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is b
    b.status = "RUNNING"
    assert scheduler.on_trial_result(controller, b, {"epoch": 2, "loss": 0.1}) == TrialScheduler.CONTINUE
    # b alone at the second rung: paused there; nothing promotable, nothing to start
    assert scheduler.on_trial_result(controller, b, {"epoch": 3, "loss": 0.1}) == TrialScheduler.PAUSE
    b.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is None and controller.stopped == []

    # no configuration will come and nothing runs: the best trial waiting at the highest rung,
    # b, runs on, as no trial ran on from there (before, b too ended paused at epoch 3)
    controller.search_alg.is_finished = lambda: True
    assert scheduler.choose_trial_to_run(controller) is b and controller.stopped == []
    b.status = "RUNNING"
    assert scheduler.on_trial_result(controller, b, {"epoch": 4, "loss": 0.05}) == TrialScheduler.CONTINUE
    scheduler.on_trial_complete(controller, b, {"epoch": 4, "loss": 0.05})
    b.status = "TERMINATED"
    # b ran on from rung 1 already: every other paused trial ends, saved as ended
    assert scheduler.choose_trial_to_run(controller) is None
    assert controller.stopped == controller.marked == ["a", "c"]


def test_a_search_too_small_to_promote_at_its_highest_rung_still_trains_its_best_trial_to_the_end():
    # 2 trials, rf 3: none ranks at rung 1 (int(2 / 3) = 0); before, both ended paused there
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1, 3], reduction_factor=3)
    a, b = _trial("a"), _trial("b")
    controller = _Controller([a, b], finished=True)
    for trial, value in ((a, 0.3), (b, 0.6)):
        assert scheduler.on_trial_result(controller, trial, {"epoch": 1, "m": value}) == TrialScheduler.PAUSE
        trial.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is b
    b.status = "RUNNING"
    # alone at rung 3 and nothing else to run: paused, then sent on again, to its last epoch
    assert scheduler.on_trial_result(controller, b, {"epoch": 3, "m": 0.7}) == TrialScheduler.PAUSE
    b.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is b
    b.status = "RUNNING"
    scheduler.on_trial_complete(controller, b, {"epoch": 9, "m": 0.8})
    b.status = "TERMINATED"
    assert scheduler.choose_trial_to_run(controller) is None and controller.stopped == ["a"]


def test_a_trial_that_diverged_is_not_sent_on_at_the_end():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    a = _trial("a")
    controller = _Controller([a], finished=True)
    assert scheduler.on_trial_result(controller, a, {"epoch": 1, "m": float("nan")}) == TrialScheduler.PAUSE
    a.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is None and controller.stopped == ["a"]


@pytest.mark.parametrize(("epochs", "grace", "expected"), [
    (9, None, [1, 3]), (20, None, [2, 6]), (10, None, [1, 3]), (30, None, [1, 3, 9]),
    # a grace period the space sets gives the rungs its default would: before, 18 of 20 as Ray's,
    # and a rung at 3 of 4 epochs where the default (also 1) had none
    (20, 2, [2, 6]), (4, 1, [1]), (4, None, [1]), (20, 5, [5]),
])
def test_asha_with_promotions_takes_the_rung_at_about_the_epochs_for_the_end(
    epochs, grace, expected
):
    # before: 20 epochs gave rungs 2, 6, 18, and a trial trained past 18 only once 3 had waited there
    import dataclasses

    from search.driver._strategy import build_scheduler
    from search.space import load_space

    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "digits.yaml")
    space = dataclasses.replace(space, search=dataclasses.replace(
        space.search, scheduler="asha_promotions", grace_period=grace, reduction_factor=3.0))
    assert build_scheduler(space, epochs=epochs).milestones == expected


def test_a_finished_trial_hands_its_slot_to_a_paused_trial_that_ranks_before_a_new_configuration():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    trials = {t: _trial(t) for t in "abcdef"}
    controller = _Controller(list(trials.values()))

    def reach_rung(trial_id: str, value: float) -> None:
        assert scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 1, "m": value}) == (
            TrialScheduler.PAUSE)
        trials[trial_id].status = "PAUSED"

    def finish(trial_id: str) -> None:
        scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 2, "m": 0.9})
        scheduler.on_trial_complete(controller, trials[trial_id], {"epoch": 2, "m": 0.9})
        trials[trial_id].status = "TERMINATED"

    for trial_id, value in zip("abc", (0.5, 0.2, 0.1)):
        reach_rung(trial_id, value)
    assert scheduler.resume == ["a"]  # c made 3: a runs on in its slot
    finish("a")
    assert scheduler.resume == []  # no other trial ranks: a new configuration comes
    for trial_id, value in zip("def", (0.2, 0.2, 0.0)):
        reach_rung(trial_id, value)
    # f made 6: the top two are a and b, and d and e tie with b; b runs on in f's slot
    assert scheduler.resume == ["b"]
    finish("b")
    assert scheduler.resume == ["d"]  # b's slot goes to d, not to a new configuration
    finish("d")
    assert scheduler.resume == ["e"]
    finish("e")
    assert scheduler.resume == []
    assert [call[1] for call in controller.searcher.calls if call[0] == "unpause"] == ["a", "b", "d", "e"]


def test_a_trial_that_fails_for_good_hands_its_slot_on_and_one_tune_retries_keeps_it():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    trials = {t: _trial(t) for t in "abcdef"}
    controller = _Controller(list(trials.values()))
    for trial_id, value in zip("abcdef", (0.5, 0.2, 0.1, 0.2, 0.2, 0.0)):
        scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 1, "m": value})
        trials[trial_id].status = "PAUSED"
    assert scheduler.resume == ["a", "b"]  # d and e tie with b and wait
    # b crashes once: Tune sets it to error, retries it from its checkpoint; it keeps its slot
    trials["b"].status = "ERROR"
    scheduler.on_trial_error(controller, trials["b"])
    assert scheduler.resume == ["a"]
    # a crashes for good while it runs: its slot goes to d
    trials["a"].status = "RUNNING"
    scheduler.on_trial_error(controller, trials["a"])
    assert scheduler.resume == ["d"] and "a" in scheduler.ended


def test_a_nan_at_a_rung_ranks_last_and_an_ended_trial_is_never_promoted():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    values = {"a": float("nan"), "b": 0.9, "c": 0.2, "d": 0.1, "e": 0.05, "f": 0.01}
    trials = {t: _trial(t) for t in values}
    controller = _Controller(list(trials.values()))
    for trial_id in "abcde":
        assert scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 1, "m": values[trial_id]}) == (
            TrialScheduler.PAUSE)
        trials[trial_id].status = "PAUSED"
        if trial_id == "b":  # the best fails while paused: it still counts at the rung
            scheduler.on_trial_error(controller, trials["b"])
            trials["b"].status = "ERROR"
    assert scheduler.resume == []  # 3 to 5 at the rung: the top one is b, which ended
    # f makes 6: the top two are b and c (a's NaN ranks last); c runs on in f's slot
    assert scheduler.on_trial_result(controller, trials["f"], {"epoch": 1, "m": 0.01}) == TrialScheduler.PAUSE
    assert scheduler.resume == ["c"]


def test_a_trial_whose_own_patience_ends_at_a_rung_finishes_there_and_counts_at_the_rung():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1, 3], reduction_factor=3)
    trials = {t: _trial(t) for t in "abcd"}
    controller = _Controller(list(trials.values()))
    for trial_id, value in zip("abc", (0.5, 0.4, 0.3)):
        assert scheduler.on_trial_result(controller, trials[trial_id], {"epoch": 1, "m": value}) == TrialScheduler.PAUSE
        trials[trial_id].status = "PAUSED"
    # d's patience ran out at the rung (its last epoch): not paused, whatever its rank
    last = {"epoch": 1, "m": 0.1, LAST_EPOCH_KEY: 1.0}
    assert scheduler.on_trial_result(controller, trials["d"], last) == TrialScheduler.CONTINUE
    assert scheduler.scores[0]["d"] == 0.1 and not scheduler._paused_at_rung("d")
    scheduler.on_trial_complete(controller, trials["d"], {**last, FINAL_KEY: 1})
    assert scheduler.resume == ["a"]  # its slot goes to the best paused trial, as any ending trial's


def test_a_trial_tune_retries_after_a_crash_stays_at_its_rung_and_is_promoted_like_any_other():
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    a, b, c = _trial("a"), _trial("b", "PENDING"), _trial("c", "PENDING")
    controller = _Controller([a, b, c])
    assert scheduler.on_trial_result(controller, a, {"epoch": 1, "m": 0.9}) == TrialScheduler.PAUSE
    # a crashes while Tune saves its pause; Tune retries it as it does: the scheduler hears of
    # the error, then of the trial added again, pending
    a.status = "ERROR"
    scheduler.on_trial_error(controller, a)
    a.status = "PENDING"
    scheduler.on_trial_add(controller, a)
    assert scheduler.choose_trial_to_run(controller) is b and a.status == "PAUSED"  # it waits at its rung
    b.status = "RUNNING"
    assert scheduler.on_trial_result(controller, b, {"epoch": 1, "m": 0.5}) == TrialScheduler.PAUSE
    b.status = "PAUSED"
    assert scheduler.choose_trial_to_run(controller) is c
    c.status = "RUNNING"
    # c makes 3 at the rung, and a, the best, runs on in its slot
    assert scheduler.on_trial_result(controller, c, {"epoch": 1, "m": 0.1}) == TrialScheduler.PAUSE
    assert scheduler.resume == ["a"] and scheduler.choose_trial_to_run(controller) is a
    # a final error is an end: Tune sets the trial to error, and never adds it again
    scheduler.on_trial_error(controller, a)
    assert scheduler.resume == [] and "a" in scheduler.ended


def test_a_resumed_search_keeps_its_rungs_pauses_waiting_trials_again_and_runs_the_promoted_one():
    # Tune pickles the scheduler and its callbacks together when a search starts (tuner.pkl) and
    # restores both from that pickle, then gives the callbacks the state they saved.
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1, 3], reduction_factor=3)
    started = pickle.dumps((scheduler, PromotionState(scheduler)))
    a, b, c, d = (_trial(t) for t in "abcd")
    controller = _Controller([a, b, c, d])
    for trial, value in ((a, 0.5), (b, 0.9), (c, 0.1)):
        assert scheduler.on_trial_result(controller, trial, {"epoch": 1, "m": value}) == TrialScheduler.PAUSE
        trial.status = "PAUSED"
    assert scheduler.resume == ["b"]  # promoted when c paused; then the driver is killed
    saved = PromotionState(scheduler).get_state()

    restored, callback = pickle.loads(started)
    assert callback.scheduler is restored and restored.scores == [{}, {}]
    callback.set_state(saved)
    # Tune sets every unfinished trial to pending and starts them all unless they are paused again
    trials = [_trial(t, "PENDING") for t in "abcd"]
    controller = _Controller(trials)
    assert restored.choose_trial_to_run(controller) is trials[1]  # b, promoted before the kill
    assert [t.status for t in trials] == ["PAUSED", "PENDING", "PAUSED", "PENDING"]  # d never reached a rung
    trials[1].status = "RUNNING"
    assert restored.on_trial_result(controller, trials[1], {"epoch": 2, "m": 0.95}) == TrialScheduler.CONTINUE
    assert restored.resume == [] and restored.choose_trial_to_run(controller) is trials[3]


def test_a_point_whose_failure_would_repeat_is_not_trained_again():
    # Before, a trial that failed for good (FAILED_KEY: a diverged loss, a refused config) was told
    # to Optuna as failed, which TPE and the repeat check both skip: its point was proposed again
    # (pcgrad failing every time was trained 8 to 9 times in 15 trials).
    from search.driver._trainable import FAILED_KEY

    searcher = _optuna()
    searcher.suggest("a")
    failed = dict(searcher._ot_trials["a"].params)
    searcher.on_trial_complete("a", result={"m": math.nan, FAILED_KEY: 1, FINAL_KEY: 1})
    assert searcher._repeats_a_point("b", failed)
    # a failure of the worker (an error, no failed result) may pass: its point may be drawn again
    searcher.suggest("c")
    lost = dict(searcher._ot_trials["c"].params)
    searcher.on_trial_complete("c", error=True)
    assert not searcher._repeats_a_point("d", lost)
    # kept across Tune's pickle of the searcher (a resumed search)
    import pickle

    assert pickle.loads(pickle.dumps(searcher))._repeats_a_point("b", failed)


def test_at_the_end_a_free_worker_takes_a_trial_that_ranks_instead_of_idling():
    # 3 trials tied at rung 1 with 2 workers: all three rank (ties rank with the last of the top
    # third); c's arrival resumed a into its own slot. Before, b waited for a to end although the
    # second worker was free: no configuration was left to come and take it.
    scheduler = PromotingAsha(metric="m", mode="max", milestones=[1], reduction_factor=3)
    a, b, c = _trial("a"), _trial("b"), _trial("c")
    controller = _Controller([a, b, c], finished=True)
    limiter = PausingLimiter(_Searcher(), max_concurrent=2)
    controller.search_alg.searcher = limiter
    for trial in (a, b, c):
        limiter.live_trials.add(trial.trial_id)
    for trial in (a, b, c):
        assert scheduler.on_trial_result(controller, trial, {"epoch": 1, "m": 0.15}) == TrialScheduler.PAUSE
        limiter.on_pause(trial.trial_id)
        trial.status = "PAUSED"
    assert scheduler.resume == ["a"] and limiter.live_trials == {"a"}
    assert scheduler.choose_trial_to_run(controller) is a
    a.status = "RUNNING"
    assert scheduler.choose_trial_to_run(controller) is b  # the second worker is free
    b.status = "RUNNING"
    assert limiter.live_trials == {"a", "b"}
    assert scheduler.choose_trial_to_run(controller) is None  # both workers busy: c waits
