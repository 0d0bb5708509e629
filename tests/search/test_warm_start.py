"""Sampling: TPE's start-up and ASHA's rungs from the budget, no point trained twice, and warm
starts from an earlier search read back from MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler

from search.driver import SearchInputError, SearchOptions, plan_search
from search.driver._strategy import DefineByRun, asha_grace, build_searcher, grace_period, startup_trials
from search.driver._warm import WarmTrial, fitting_params
from search.space import load_space

from .test_driver import FIXED_HEADS, search, write_space

TWO_POINTS = """\
  digit: {loss: ce}
  thickness: {loss: {choice: [ce, ordinal]}}
  smoothness: {loss: ce}"""


@pytest.mark.parametrize(("epochs", "factor", "rungs"), [(9, 3, [1, 3, 9]), (20, 3, [2, 6, 18]), (27, 3, [1, 3, 9, 27]),
                                                        (8, 2, [1, 2, 4, 8]), (2, 3, [2]), (1, 3, [1])])
def test_asha_rungs_follow_the_epochs(epochs, factor, rungs):
    grace = asha_grace(epochs, factor)
    scheduler = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=epochs, grace_period=grace,
                                        reduction_factor=factor)
    # the rungs Ray itself builds from it: (milestone, recorded values) per rung
    assert sorted(milestone for milestone, _ in scheduler._brackets[0]._rungs) == rungs


def test_median_stopping_waits_one_epoch_unless_the_space_says(tmp_path: Path):
    for settings, expected in (("{scheduler: median}", 1), ("{scheduler: median, grace_period: 4}", 4),
                               ("{scheduler: asha}", 2), ("{scheduler: asha, grace_period: 4}", 4)):
        space = load_space(write_space(tmp_path, epochs=20, search=settings))
        assert grace_period(space, epochs=20) == expected, settings


def test_tpe_starts_with_a_third_of_the_budget_within_3_and_10():
    assert [startup_trials(n) for n in (1, 9, 12, 15, 29, 30, 50, 1000)] == [3, 3, 4, 5, 9, 10, 10, 10]


def _searcher(tmp_path: Path, heads: str, *, warm=(), seed: int = 0):
    settings = f"{{num_samples: 4, sampler: tpe, scheduler: none, seed: {seed}}}"
    space = load_space(write_space(tmp_path, heads=heads, search=settings))
    limited, _ = build_searcher(space, DefineByRun(space, threads=1), warm=warm)
    return space, limited.searcher


def _warm_trial(space, config, value):
    params, distributions = fitting_params(space, config)
    return WarmTrial(params=params, distributions=distributions, values=(value,))


def test_a_point_already_trained_is_told_as_a_failed_draw_and_drawn_anew(tmp_path: Path):
    space, _ = _searcher(tmp_path, TWO_POINTS)
    config = {**space.sample(seed=0), "heads.thickness.loss": "ce"}
    repeats = []
    for seed in range(6):  # seeded: in some of them the sampler draws ce first
        _, searcher = _searcher(tmp_path, TWO_POINTS, warm=[_warm_trial(space, config, 0.7)], seed=seed)
        proposal = searcher.suggest("a")
        assert proposal["heads.thickness.loss"] == "ordinal"  # ce is known: never proposed to train
        study = searcher._ot_study
        # told as failed draws: the point's one value stays the only one TPE learns from
        assert [t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))] == [0.7]
        repeats += [t for t in study.trials[1:] if t.state == optuna.trial.TrialState.FAIL]
    assert repeats and all(t.params == {"heads.thickness.loss": "ce"} for t in repeats)

    searcher.on_trial_complete("a", {"val/acc_mean": 0.5, "epoch": 3})
    before = len(study.trials)
    searcher.suggest("b")  # both points known: after the redraws the space is taken as exhausted
    failed_draws = [t for t in study.trials[before:] if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed_draws) == searcher._REDRAWS
    assert study.trials[-1].state == optuna.trial.TrialState.RUNNING  # the repeat that runs


def test_warm_trials_enter_the_study_before_any_proposal(tmp_path: Path):
    space, _ = _searcher(tmp_path, TWO_POINTS)
    configs = [{**space.sample(seed=0), "heads.thickness.loss": loss} for loss in ("ce", "ordinal")]
    warm = [_warm_trial(space, c, v) for c, v in zip(configs, (0.4, 0.6))]
    _, searcher = _searcher(tmp_path, TWO_POINTS, warm=warm)
    trials = searcher._ot_study.trials
    assert [(t.params["heads.thickness.loss"], t.value) for t in trials] == [("ce", 0.4), ("ordinal", 0.6)]


def test_a_config_fits_a_space_only_with_values_it_may_draw_and_its_constants(tmp_path: Path):
    space = load_space(write_space(tmp_path))  # digit: ce (smoothing 0-0.1) or focal (gamma 1-2); thickness: ce/ordinal
    config = {**space.sample(seed=3), "heads.digit.loss": "focal", "heads.digit.focal.gamma": 1.5}
    config.pop("heads.digit.ce.label_smoothing", None)
    params, distributions = fitting_params(space, config)
    assert params["heads.digit.focal.gamma"] == 1.5 and set(params) == set(distributions)
    assert fitting_params(space, {**config, "train.threads": 7}) is not None  # where it ran
    assert fitting_params(space, {**config, "heads.digit.focal.gamma": 2.5}) is None  # outside the range
    assert fitting_params(space, {**config, "heads.digit.loss": "ordinal"}) is None  # an option not offered
    assert fitting_params(space, {**config, "train.epochs": 30}) is None  # another budget
    assert fitting_params(space, {**config, "heads.thickness.loss": True}) is None  # a choice of another type


def test_warm_start_names_an_earlier_search_with_the_same_objectives(tmp_path: Path, toy_store: Path):
    space = load_space(write_space(tmp_path))
    uri = f"sqlite:///{toy_store / 'mlflow.db'}"
    with pytest.raises(SearchInputError, match="--warm-start must name an earlier search.*'nope'"):
        plan_search(space, SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, warm_start="nope"))
    # the toy search's trial configs are not complete configs of this space: none fits
    with pytest.raises(SearchInputError, match=r"scored trials that fit this space, but search toy-\S+ has none "
                                               r"\(4 outside this space, 1 failed or unfinished\)"):
        plan_search(space, SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, warm_start="toy"))
    grid = load_space(write_space(tmp_path, name="grid", heads=FIXED_HEADS, lr="{grid: [0.01, 0.02]}",
                                  search="{sampler: grid}"))
    with pytest.raises(SearchInputError, match="--warm-start needs search.sampler: tpe .*, but got grid"):
        plan_search(grid, SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, warm_start="toy"))
    other = load_space(write_space(tmp_path, name="other", objective="{metric: val/mae_norm_mean, mode: min}"))
    with pytest.raises(SearchInputError, match=r"objectives \[\('val/mae_norm_mean', 'min'\)\], but search toy"):
        plan_search(other, SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, warm_start="toy"))


def test_a_search_warm_started_from_an_earlier_one_learns_from_its_trials(ray_session, tmp_path: Path):
    grid = "{sampler: grid, scheduler: none, max_concurrent: 2}"
    first_file = write_space(tmp_path, name="first", heads=FIXED_HEADS, lr="{choice: [0.02, 0.05]}", search=grid)
    first, client = search(tmp_path, first_file)
    assert first.exit_code == 0

    tpe = "{num_samples: 1, sampler: tpe, scheduler: none, max_concurrent: 1, seed: 0}"
    second_file = write_space(tmp_path, name="second", heads=FIXED_HEADS, lr="{choice: [0.02, 0.05, 0.1]}", search=tpe)
    second, _ = search(tmp_path, second_file, warm_start=first.plan.search_id)
    assert second.exit_code == 0
    assert any(f"2 scored trial(s) of search {first.plan.search_id}" in note for note in second.plan.notes)
    experiment = client.get_experiment_by_name(second.plan.experiment)
    (parent,) = client.search_runs([experiment.experiment_id], filter_string="tags.`losstune.role` = 'search'")
    assert parent.data.params["search.warm_start"] == first.plan.search_id
    # the two learning rates trained before are known: the new search trains the third
    assert [t.config["train.lr"] for t in second.trials] == [0.1]
    assert math.isfinite(second.trials[0].values[0])
