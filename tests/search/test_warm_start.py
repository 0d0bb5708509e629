"""Sampling: TPE's start-up and ASHA's rungs from the budget, no point trained twice, and warm
starts from an earlier search read back from MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler

from search._shell import search_command
from search.driver import RunLocation, SearchInputError, SearchOptions, plan_search
from search.driver._plan import write_meta
from search.driver._rungs import asha_grace, grace_period
from search.driver._strategy import DefineByRun, build_searcher, startup_trials
from search.driver._trainable import FINAL_KEY
from search.driver._warm import DoesNotFit, WarmTrial, check_fit, fitting_params, read_warm_start
from search.space import load_space

from .conftest import start_toy_search
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


def test_a_point_still_training_is_not_proposed_again(tmp_path: Path):
    # constant_liar keeps TPE off a running point only through its parameters: the two options
    # here have none, and the second proposal repeated the first on some seeds
    for seed in range(8):
        _, searcher = _searcher(tmp_path, TWO_POINTS, seed=seed)
        first, second = searcher.suggest("a"), searcher.suggest("b")  # a still runs
        assert first["heads.thickness.loss"] != second["heads.thickness.loss"]
        # a trial ended with a value Optuna refuses (NaN) stays RUNNING in the study: not training
        searcher.on_trial_complete("a", {"val/acc_mean": math.nan, "epoch": 3, FINAL_KEY: 1})
        assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.RUNNING
        assert not searcher._repeats_a_point("c", searcher._ot_trials["a"].params)


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
    # a head since removed: its loss computed a mean over heads this space does not have
    with pytest.raises(DoesNotFit) as misfit:
        check_fit(space, {**config, "heads.extra.loss": "ce"})
    assert (misfit.value.key, misfit.value.here, misfit.value.there) == ("heads.extra.loss", None, "ce")
    with pytest.raises(DoesNotFit) as misfit:
        check_fit(space, {**config, "heads.digit.focal.gamma": 2.5})
    assert (misfit.value.key, misfit.value.here, misfit.value.there) == ("heads.digit.focal.gamma", "a number in [1.0, 2.0]", "2.5")


def test_a_string_choice_an_earlier_version_logged_bare_fits_as_that_string():
    # Before param_text, the pattern "1011" was logged as 1011, which MLflow gives back as a number.
    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "temporal_energy.yaml")
    config = {**space.sample(seed=0), "temporal.pattern": "1011"}
    params, _ = fitting_params(space, {**config, "temporal.pattern": 1011})
    assert params["temporal.pattern"] == "1011"
    assert fitting_params(space, config)[0] == params  # as logged now
    for other in (1012, 1011.0, "1012", [1, 0, 1, 1]):
        assert fitting_params(space, {**config, "temporal.pattern": other}) is None, other
    # a constant string, logged bare before
    constants = [key for key, value in space.constants.items() if isinstance(value, (int, float))]
    assert constants and fitting_params(space, {**config, constants[0]: str(space.constants[constants[0]])}) is None


def _earlier_search(uri: str, name: str, trials, *, search_id: str | None = None) -> str:
    """A finished search of ``trials`` (trial id, flat config, val/acc_mean per epoch, end state),
    logged as the driver logs one; its search id."""
    tracker = start_toy_search(uri, name=name, search_id=search_id)
    for trial_id, config, curve, state in trials:
        tracker.trial_started(trial_id, config)
        for epoch, value in enumerate(curve, 1):
            tracker.log_epoch(trial_id, {"epoch": epoch, "val/acc_mean": value}, epoch=epoch)
        if state == "finished":
            tracker.log_final(trial_id, {"best_epoch": 1 + curve.index(max(curve))}, epoch=len(curve))
        tracker.trial_ended(trial_id, state=state, reason=state)
    tracker.end_search(end="finished")
    return tracker.settings.search_id


def test_warm_trials_stopped_early_enter_as_pruned_with_their_curve_and_each_point_once(tmp_path: Path, toy_store: Path):
    space = load_space(write_space(tmp_path))
    uri = f"sqlite:///{toy_store / 'mlflow.db'}"
    finished, stopped = space.sample(seed=0), space.sample(seed=1)
    assert fitting_params(space, finished)[0] != fitting_params(space, stopped)[0]
    search_id = _earlier_search(uri, "pruned-warm", [
        ("a", stopped, [0.3, 0.35], "stopped_early"),
        ("b", finished, [0.5, 0.7, 0.6], "finished"),
        ("c", stopped, [0.3, 0.35, 0.5], "finished"),  # the stopped point, run to its end again
        ("d", finished, [0.5, 0.7, 0.6], "finished"),  # a repeat: the same point, the same values
        ("e", {**finished, "heads.extra.loss": "ce"}, [0.9, 0.9, 0.9], "finished"),  # a head since removed
        ("f", space.sample(seed=2), [0.2], "stopped_early"),
    ])
    warm = read_warm_start(space, tracking_uri=uri, selector=search_id)
    assert (len(warm.trials), warm.repeats, warm.unfit, warm.unscored) == (3, 2, 1, 0)
    assert "3 scored trial(s)" in warm.note() and "1 of them stopped early (told as pruned)" in warm.note()
    limited, _ = build_searcher(space, DefineByRun(space, threads=1), warm=warm.trials)
    study = limited.searcher._ot_study
    assert len(study.trials) == 3
    states = sorted((t.state.name, t.value, dict(t.intermediate_values)) for t in study.trials)
    # a value of fewer epochs is not a final value: TPE ranks a pruned trial by its last step
    assert states == [("COMPLETE", 0.5, {}), ("COMPLETE", 0.7, {}), ("PRUNED", None, {1: 0.2})]


def test_a_warm_start_that_fits_nothing_names_the_most_common_difference(tmp_path: Path, toy_store: Path):
    space = load_space(write_space(tmp_path))
    uri = f"sqlite:///{toy_store / 'mlflow.db'}"
    here = space.sample(seed=0)["train.epochs"]
    search_id = _earlier_search(uri, "other-budget", [
        (trial_id, {**space.sample(seed=seed), "train.epochs": 99}, [0.5], "finished")
        for trial_id, seed in (("a", 0), ("b", 1))
    ])
    with pytest.raises(SearchInputError, match=rf"has none \(2 outside this space, 0 failed or unfinished\); "
                                               rf"most often train.epochs: {here} here, 99 there \(2 trial\(s\)\)"):
        read_warm_start(space, tracking_uri=uri, selector=search_id)


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


def test_a_stopped_warm_trial_of_a_multi_objective_search_is_pruned_without_a_curve(tmp_path: Path):
    # Optuna keeps no intermediate values of a multi-objective trial (TPE would ask for the
    # study's one direction to rank them)
    space = load_space(write_space(tmp_path, search="{num_samples: 4, sampler: tpe, scheduler: none, seed: 0}",
                                   objective="[{metric: val/acc_mean, mode: max}, {metric: val/energy, mode: min}]"))
    configs = [space.sample(seed=seed) for seed in range(8)]
    warm = [WarmTrial(*fitting_params(space, c), values=(0.5 + i / 10, 0.1)) for i, c in enumerate(configs[:3])]
    warm += [WarmTrial(*fitting_params(space, c), values=(), curve=((1, 0.2),)) for c in configs[3:]]
    limited, _ = build_searcher(space, DefineByRun(space, threads=1), warm=warm)
    study = limited.searcher._ot_study
    assert [(t.state.name, dict(t.intermediate_values)) for t in study.trials[3:]] == [("PRUNED", {})] * 5
    assert limited.searcher.suggest("next") is not None  # TPE samples from the model with them


def test_a_restart_in_its_own_parent_run_is_not_warm_started_from_itself(tmp_path: Path, toy_store: Path):
    # `kill -9` before Tune saved any state: the same command starts the search again in its
    # parent run, which the selector (the experiment's name) now names too, as the newest
    space = load_space(write_space(tmp_path, name="restarted"))
    uri = f"sqlite:///{toy_store / 'mlflow.db'}"
    first, second = space.sample(seed=0), space.sample(seed=1)
    earlier = _earlier_search(uri, "restarted", [("a", first, [0.5], "finished")], search_id="restarted-1")
    itself = _earlier_search(uri, "restarted", [("a", second, [0.6], "finished")], search_id="restarted-2")
    warm = read_warm_start(space, tracking_uri=uri, selector="restarted")
    assert warm.search_id == itself and "the newest of 2 searches 'restarted' names" in warm.note()
    # the command that lists them reads the same store (before: `search report restarted`, the default's)
    assert f"`{search_command('report', 'restarted', '--tracking-uri', uri)}` lists them" in warm.note()

    write_meta(RunLocation(str(tmp_path / "runs"), "restarted"),
               {"search_id": itself, "tracking_uri": uri, "experiment": "restarted"})
    plan = plan_search(space, SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, warm_start="restarted"))
    assert (plan.search_id, plan.warm.search_id) == (itself, earlier)
    assert "newest of" not in plan.warm.note()


def test_a_failed_warm_start_read_does_not_show_the_stores_password(monkeypatch):
    # before, the URI went into the message as given: the password on the terminal and in job logs
    from mlflow.exceptions import MlflowException

    import search._preflight
    import search.report

    def fails(*args, **kwargs):
        raise MlflowException("INTERNAL_ERROR: permission denied for table runs")

    monkeypatch.setattr(search._preflight, "check_reachable", lambda uri: None)
    monkeypatch.setattr(search.report, "open_store", lambda uri: object())
    monkeypatch.setattr(search.report, "load_search", fails)
    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "digits.yaml")
    with pytest.raises(SearchInputError) as error:
        read_warm_start(space, tracking_uri="postgresql://mlflow:S3cr3t@db:5432/mlflow", selector="digits-loss-search")
    assert "S3cr3t" not in str(error.value) and "mlflow:***@db:5432" in str(error.value)
