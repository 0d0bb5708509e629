"""The end-of-search summary table (no Ray: summaries built by hand)."""

from __future__ import annotations

from search.driver import TrialSummary
from search.driver._summary import format_summary
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
    text = format_summary([_trial(i) for i in range(10)], OBJECTIVES, title="Search 's'")
    assert "not shown" not in text
