"""The end-of-search summary table (no Ray: summaries built by hand)."""

from __future__ import annotations

import pandas as pd

from search import ranking
from search.driver import TrialSummary
from search.driver._summary import format_summary, summarize
from search.space import Objective

OBJECTIVES = [Objective(metric="val/acc_mean", mode="max")]


def _trial(index: int, state: str = "FINISHED") -> TrialSummary:
    config = {"heads.digit.loss": "ce", "train.lr": 0.001 * (index + 1)}
    return TrialSummary(trial_id=f"t{index:02d}", state=state, config=config, values=(index / 100,), epochs=3)


def test_the_summary_says_how_many_ranked_trials_it_does_not_show():
    trials = [_trial(i) for i in range(13)] + [_trial(13, "FAILED")]
    text = format_summary(trials, OBJECTIVES, title="Search 's'", everything="python -m search report s-1")
    shown = [line.split()[0] for line in text.splitlines() if line.split()[1:2] == ["FINISHED"]]
    assert shown == [f"t{i:02d}" for i in range(12, 2, -1)]
    assert "(3 more not shown; every trial: python -m search report s-1)" in text
    assert "t13 (digit=ce): None" in text  # the failed trial is listed under failed trials


def test_no_note_when_every_ranked_trial_is_shown():
    text = format_summary([_trial(i) for i in range(10)], OBJECTIVES, title="Search 's'", everything="python -m search report s-1")
    assert "not shown" not in text


def test_a_parameter_the_space_fixes_for_one_option_is_not_listed_as_varied():
    # before: `ordinal.distance=l1` on every ordinal trial, as if the search had varied it
    trials = [_trial(0), _trial(1)]
    trials[0].config.update({"heads.digit.loss": "ordinal", "heads.digit.ordinal.alpha": 0.1,
                             "heads.digit.ordinal.distance": "l1"})
    text = format_summary(trials, OBJECTIVES, title="Search 's'", everything="x",
                          searched={"train.lr", "heads.digit.loss", "heads.digit.ordinal.alpha"})
    (row,) = [line for line in text.splitlines() if line.startswith("t00 ")]
    assert "alpha=0.1" in row and "distance" not in row and "lr=0.001" in row


class _TuneTrial:
    """What summarize reads of a Tune trial."""

    def __init__(self, trial_id: str, status: str, last_result: dict) -> None:
        self.trial_id, self.status, self.last_result, self.config = trial_id, status, last_result, {}
        self.error_file = None


TWO_OBJECTIVES = [Objective(metric="val/acc_mean", mode="max"), Objective(metric="val/energy", mode="min")]


def test_a_stopped_trial_shows_every_objective_at_its_best_epoch():
    # Results of a trial the time budget stopped: its best epoch is 2 (the first of the tied
    # 0.8s); epoch 3 was reported twice (a retry), the later row counts.
    rows = [
        {"epoch": 1, "val/acc_mean": 0.5, "val/energy": 9.0, "best/val/acc_mean": 0.5},
        {"epoch": 2, "val/acc_mean": 0.8, "val/energy": 3.0, "best/val/acc_mean": 0.8},
        {"epoch": 3, "val/acc_mean": 0.9, "val/energy": 1.0, "best/val/acc_mean": 0.9},
        {"epoch": 3, "val/acc_mean": 0.8, "val/energy": 7.0, "best/val/acc_mean": 0.8},
        {"epoch": 4, "val/acc_mean": 0.6, "val/energy": 5.0, "best/val/acc_mean": 0.8},
    ]
    trials = [_TuneTrial("t00", "TERMINATED", rows[-1]), _TuneTrial("t01", "TERMINATED", rows[-1])]
    (stopped, unknown) = summarize(trials, TWO_OBJECTIVES, histories={"t00": pd.DataFrame(rows)})
    assert stopped.state == "STOPPED" and stopped.values == (0.8, 3.0)  # before: (0.8, 5.0)
    assert unknown.values == (0.8, 5.0)  # no results to read: the last result's, as before
    # one objective: the last result's best/..., no results needed
    (alone,) = summarize(trials[:1], TWO_OBJECTIVES[:1], histories={"t00": pd.DataFrame(rows)})
    assert alone.values == (0.8,)


def test_best_epoch_is_the_first_epoch_no_earlier_one_equals_or_beats():
    assert ranking.best_epoch({1: 0.5, 2: 0.8, 3: 0.8, 4: 0.6}, "max") == 2
    assert ranking.best_epoch({3: 2.0, 1: 1.0, 2: 1.0}, "min") == 1
    assert ranking.best_epoch({}, "min") is None


def test_the_pareto_set_comes_best_first_by_the_primary_objective():
    # (accuracy max, energy min): ids drawn so that their order is neither objective's
    def trial(trial_id: str, acc: float, energy: float, state: str = "FINISHED") -> TrialSummary:
        return TrialSummary(trial_id=trial_id, state=state, config={}, values=(acc, energy), epochs=3)

    trials = [trial("a", 0.20, 0.10), trial("b", 0.30, 0.30), trial("c", 0.25, 0.20), trial("d", 0.20, 0.40),
              trial("e", 0.30, 0.30), trial("f", 0.90, 0.01, state="STOPPED")]
    front = ranking.pareto_set(trials, ["max", "min"])
    assert [t.trial_id for t in front] == ["b", "e", "c", "a"]  # d is dominated by a; f did not finish
    assert [t.trial_id for t in ranking.pareto_set(trials, ["min", "max"])] == ["d"]  # it dominates every other


def test_trials_tied_in_the_primary_objective_rank_by_the_next_one_not_by_id():
    # Before, the tie went by trial id: the best trial (and best_config.yaml) could be a dominated
    # one, left out of the Pareto set the same summary printed.
    def trial(trial_id: str, acc: float, energy: float | None, state: str = "FINISHED") -> TrialSummary:
        return TrialSummary(trial_id=trial_id, state=state, config={}, values=(acc, energy), epochs=3)

    trials = [trial("a", 0.2, 0.117), trial("b", 0.2, 0.103), trial("c", 0.2, None), trial("d", 0.1, 0.01)]
    modes = ["max", "min"]
    assert [t.trial_id for t in ranking.ranked(trials, modes)] == ["b", "a", "c", "d"]
    assert ranking.best_trial(trials, modes).trial_id == "b"
    assert ranking.best_trial(trials, modes) in ranking.pareto_set(trials, modes)
