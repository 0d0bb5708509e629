"""search.driver with real Ray Tune, Optuna and MLflow (a SQLite store in tmp_path), in process.

Trials train a 16-unit MLP on 300 digits for a few epochs. All tests share one Ray instance
(``ray_session``); fault injection wraps ``trainables.train.train`` here, not in the product.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shlex
import shutil
import signal
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray.cloudpickle
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType
from ray import tune
from ray.tune.schedulers import MedianStoppingRule

from search._ray import MALLOC_TUNABLES, RayHandle, trial_actor_env
from search._shell import mlflow_ui_command, python_path, search_command
from search.driver import RunLocation, SearchInputError, SearchOptions, plan_search, run_search
from search.driver._plan import space_digest
from search.driver._state import KEPT_DIR, SNAPSHOT_FILE, StateSnapshot, usable_state
from search.driver._strategy import build_scheduler, grid_points
from search.space import load_space
from trainables.config import TrialConfig
from trainables.train import CHECKPOINT_NAME, train

# Trials run in Ray workers, which cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

DIGITS = """\
name: {name}
data: {{kind: digits, val_fraction: 0.2, limit: 300, labels: measured}}
model: {{kind: mlp, hidden: {hidden}, dropout: 0.0}}
train: {{epochs: {epochs}, batch_size: 64, lr: {lr}, patience: 5, seed: 0}}
heads:
{heads}
objective: {objective}
search: {search}
resources: {{cpu: 1}}
"""


# Loss choices with continuous parameters (for Optuna's TPE / random samplers).
SEARCHED_HEADS = """\
  digit:
    loss:
      choice:
        ce: {label_smoothing: {uniform: [0.0, 0.1]}}
        focal: {gamma: {uniform: [1.0, 2.0]}}
  thickness: {loss: {choice: [ce, ordinal]}}
  smoothness: {loss: ce}"""
# Fixed losses, for grid searches over other settings.
FIXED_HEADS = """\
  digit: {loss: ce}
  thickness: {loss: ce}
  smoothness: {loss: ce}"""


def write_space(tmp_path: Path, **fields: Any) -> Path:
    values = {
        "name": "tiny",
        "heads": SEARCHED_HEADS,
        "hidden": 16,
        "epochs": 3,
        "lr": 0.02,
        "objective": "{metric: val/acc_mean, mode: max}",
        "search": "{num_samples: 6, sampler: tpe, scheduler: none, max_concurrent: 2, seed: 0}",
    }
    values.update(fields)
    path = tmp_path / f"{values['name']}.yaml"
    path.write_text(DIGITS.format(**values))
    return path


def search(tmp_path: Path, space_file: Path, **options: Any):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    plan = plan_search(
        load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=uri, **options)
    )
    return run_search(plan), MlflowClient(uri)


def runs_of(client: MlflowClient, outcome, role: str) -> list:
    experiment = client.get_experiment_by_name(outcome.plan.experiment)
    query = f"tags.`losstune.search_id` = '{outcome.plan.search_id}' and tags.`losstune.role` = '{role}'"
    return client.search_runs([experiment.experiment_id], filter_string=query)


def epochs_logged(client: MlflowClient, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/acc_mean"))


# --- grid enumeration (no Ray) --------------------------------------------------------------


def test_grid_points_enumerate_conditional_choices_without_repeats(tmp_path: Path):
    heads = """\
  digit:
    loss:
      grid:
        ce: {label_smoothing: {grid: [0.0, 0.1, 0.2]}}
        focal: {gamma: 2.0}
  thickness: {loss: ce}
  smoothness: {loss: ce}"""
    space = load_space(write_space(tmp_path, heads=heads, hidden="{grid: [8, 16]}", search="{sampler: grid}"))
    points = grid_points(space.define_by_run)
    keys = [tuple(sorted(p.items())) for p in points]
    # hidden (2) x (ce with 3 label smoothings + focal): a product over every key would give 2 x 2 x 3.
    assert len(keys) == len(set(keys)) == 2 * (3 + 1) == space.num_trials  # counted without listing them
    focal = [p for p in points if p["heads.digit.loss"] == "focal"]
    assert len(focal) == 2 and all("heads.digit.ce.label_smoothing" not in p for p in focal)


def test_grid_points_refuse_continuous_dimensions(tmp_path: Path):
    space = load_space(write_space(tmp_path, lr="{loguniform: [0.001, 0.01]}", heads=FIXED_HEADS))
    with pytest.raises(ValueError, match="train.lr is continuous"):
        grid_points(space.define_by_run)


# --- Tune's saved state (no Ray) ---------------------------------------------------------------


def _state(iteration: int, *trials: str) -> str:
    return json.dumps({"trial_data": list(trials), "runner_data": {"_iteration": iteration}})


def _tune_trial(staging: Path, run_dir: Path, checkpoint: Path | None = None) -> SimpleNamespace:
    storage = SimpleNamespace(experiment_driver_staging_path=str(staging), experiment_fs_path=str(run_dir))
    return SimpleNamespace(storage=storage, checkpoint=SimpleNamespace(path=str(checkpoint)) if checkpoint else None)


def test_a_state_file_cut_off_by_a_crash_is_put_back_from_the_snapshot(tmp_path: Path):
    staging, run_dir = tmp_path / "staging", tmp_path / "run"
    staging.mkdir()
    run_dir.mkdir()
    files = {"experiment_state-s1.json": _state(3).encode(), "searcher-state-s1.pkl": pickle.dumps({"study": 1})}
    for name, data in files.items():
        (staging / name).write_bytes(data)
        (run_dir / name).write_bytes(data)
    StateSnapshot().on_step_end(iteration=1, trials=[_tune_trial(staging, run_dir)])
    assert usable_state(run_dir) == (True, False)

    (run_dir / "searcher-state-s1.pkl").write_bytes(files["searcher-state-s1.pkl"][:5])
    assert usable_state(run_dir) == (True, True)
    assert (run_dir / "searcher-state-s1.pkl").read_bytes() == files["searcher-state-s1.pkl"]

    # A snapshot cut off too (it is not fsynced: a power loss) counts as no snapshot.
    snapshot = (run_dir / SNAPSHOT_FILE).read_bytes()
    (run_dir / SNAPSHOT_FILE).write_bytes(snapshot[: len(snapshot) // 2])
    (run_dir / "experiment_state-s1.json").write_bytes(b'{"trial_da')
    assert usable_state(run_dir) == (False, False)

    (run_dir / SNAPSHOT_FILE).unlink()
    assert usable_state(run_dir) == (False, False)


def _state_dirs(tmp_path: Path) -> tuple[Path, Path, SimpleNamespace]:
    """Staging and run directory of a search whose saved state names trial_a's checkpoint_000001."""
    staging, run_dir = tmp_path / "staging", tmp_path / "run"
    staging.mkdir()
    run_dir.mkdir()
    for directory in (staging, run_dir):  # Tune saved its state and copied it into the run directory
        (directory / "experiment_state-s1.json").write_text(_state(1, "checkpoint_000001"))
    checkpoint = run_dir / "trial_a" / "checkpoint_000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_NAME).write_bytes(b"epoch 1")
    return staging, run_dir, _tune_trial(staging, run_dir, checkpoint)


def _tune_replaces_the_checkpoint(run_dir: Path) -> Path:
    newer = run_dir / "trial_a" / "checkpoint_000002"
    newer.mkdir()
    (newer / CHECKPOINT_NAME).write_bytes(b"epoch 2")
    shutil.rmtree(run_dir / "trial_a" / "checkpoint_000001")
    return newer


def test_a_checkpoint_tune_deleted_before_it_saved_its_state_is_put_back_on_resume(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    snapshot = StateSnapshot()
    snapshot.on_step_end(iteration=2, trials=[trial])  # step 1 saved a state naming checkpoint_000001

    # In step 2 Tune registers checkpoint_000002 and deletes checkpoint_000001; the driver dies
    # before Tune saves the state that names checkpoint_000002.
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    newer = _tune_replaces_the_checkpoint(run_dir)

    assert usable_state(run_dir) == (True, False)
    assert (run_dir / "trial_a" / "checkpoint_000001" / CHECKPOINT_NAME).read_bytes() == b"epoch 1"
    assert (newer / CHECKPOINT_NAME).read_bytes() == b"epoch 2"
    assert not (run_dir / "trial_a" / KEPT_DIR).exists()


def test_a_kept_checkpoint_the_resumed_state_no_longer_names_is_dropped_not_put_back(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    snapshot = StateSnapshot()
    snapshot.on_step_end(iteration=2, trials=[trial])
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    newer = _tune_replaces_the_checkpoint(run_dir)
    # Step 2 saved the state that names checkpoint_000002, and Tune copied it into the run
    # directory; the driver died before the snapshot of that step dropped the kept one.
    for directory in (staging, run_dir):
        (directory / "experiment_state-s1.json").write_text(_state(2, "checkpoint_000002"))

    assert usable_state(run_dir) == (True, False)
    assert sorted(p.name for p in (run_dir / "trial_a").iterdir()) == ["checkpoint_000002"]
    assert (newer / CHECKPOINT_NAME).read_bytes() == b"epoch 2"


def test_a_checkpoint_kept_by_an_earlier_losstune_without_its_step_is_put_back(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    StateSnapshot().on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    step_files = list((run_dir / "trial_a" / KEPT_DIR).glob("*.step"))
    assert len(step_files) == 1
    step_files[0].unlink()
    _tune_replaces_the_checkpoint(run_dir)
    (run_dir / "experiment_state-s1.json").write_text(_state(5, "checkpoint_000002"))

    assert usable_state(run_dir) == (True, False)
    assert (run_dir / "trial_a" / "checkpoint_000001" / CHECKPOINT_NAME).read_bytes() == b"epoch 1"
    assert not (run_dir / "trial_a" / KEPT_DIR).exists()


def test_a_kept_checkpoint_replaces_one_tune_was_deleting_when_the_driver_died(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    original = run_dir / "trial_a" / "checkpoint_000001"
    (original / "model.bin").write_bytes(b"weights")
    snapshot = StateSnapshot()
    snapshot.on_step_end(iteration=2, trials=[trial])
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    (original / "model.bin").unlink()  # Tune's delete got this far

    assert usable_state(run_dir) == (True, False)
    assert (original / "model.bin").read_bytes() == b"weights"
    assert (original / CHECKPOINT_NAME).read_bytes() == b"epoch 1"


def test_a_kept_checkpoint_is_dropped_once_a_saved_state_names_the_next(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    kept = run_dir / "trial_a" / KEPT_DIR
    snapshot = StateSnapshot()
    snapshot.on_step_end(iteration=2, trials=[trial])  # the state step 1 saved
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    assert (kept / "checkpoint_000001" / CHECKPOINT_NAME).read_bytes() == b"epoch 1"
    snapshot.on_step_end(iteration=3, trials=[trial])  # Tune saved nothing new: still kept
    assert (kept / "checkpoint_000001").exists()

    # Step 2 saved a state naming checkpoint_000002 (states of other lengths: the fingerprint
    # must not rest on mtimes alone); Tune then replaced that one too while stopping actors.
    trial.checkpoint.path = str(_tune_replaces_the_checkpoint(run_dir))
    (staging / "experiment_state-s1.json").write_text(_state(2, "checkpoint_000002", "x"))
    snapshot.on_checkpoint(iteration=3, trials=[trial], trial=trial, checkpoint=None)
    snapshot.on_step_end(iteration=3, trials=[trial])
    assert sorted(p.name for p in kept.iterdir() if p.is_dir()) == ["checkpoint_000002"]

    # A save cut off half way (a full disk) is no state: nothing is dropped.
    (staging / "experiment_state-s1.json").write_text(_state(3, "checkpoint_000003")[:20])
    snapshot.on_experiment_end(trials=[trial])
    assert sorted(p.name for p in kept.iterdir() if p.is_dir()) == ["checkpoint_000002"]
    with zipfile.ZipFile(run_dir / SNAPSHOT_FILE) as archive:
        assert json.loads(archive.read("experiment_state-s1.json"))["runner_data"] == {"_iteration": 2}

    # Tune's last save, after its last step.
    (staging / "experiment_state-s1.json").write_text(_state(3, "checkpoint_000003", "x", "the end"))
    snapshot.on_experiment_end(trials=[trial])
    assert not kept.exists()


def test_an_experiment_ended_by_an_error_before_tune_saved_again_keeps_the_checkpoint(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    snapshot = StateSnapshot()
    snapshot.on_step_end(iteration=2, trials=[trial])
    # Replaced after step 1's save, then an error ended the experiment: Tune made no last save, but
    # wrote staging files the snapshot has not seen (another session's, say).
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    (staging / "search_gen_state-s1.json").write_text("{}")
    snapshot.on_experiment_end(trials=[trial])
    assert (run_dir / "trial_a" / KEPT_DIR / "checkpoint_000001" / CHECKPOINT_NAME).read_bytes() == b"epoch 1"


def test_a_checkpoint_that_cannot_be_kept_is_logged_and_tune_goes_on(tmp_path: Path, caplog):
    staging, run_dir, trial = _state_dirs(tmp_path)
    (run_dir / "trial_a" / KEPT_DIR).write_text("in the way")  # a file where the folder goes
    with caplog.at_level("WARNING"):
        StateSnapshot().on_checkpoint(iteration=1, trials=[trial], trial=trial, checkpoint=None)
    assert "could not keep checkpoint" in caplog.text


def test_a_snapshot_pickled_by_an_earlier_losstune_keeps_checkpoints_when_resumed(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    earlier = StateSnapshot()
    earlier.__dict__ = {"run_dir": "/moved/away", "_fingerprint": None}  # its fields back then
    snapshot = pickle.loads(pickle.dumps(earlier))
    snapshot.on_checkpoint(iteration=2, trials=[trial], trial=trial, checkpoint=None)
    assert (run_dir / "trial_a" / KEPT_DIR / "checkpoint_000001").is_dir()
    snapshot.on_step_end(iteration=2, trials=[trial])
    assert (run_dir / SNAPSHOT_FILE).exists()  # where Tune keeps the run now


def test_the_snapshot_replaces_tune_copy_of_its_state_when_that_copy_lags(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    StateSnapshot().on_step_end(iteration=1, trials=[trial])
    # Tune's background copy is a save behind, and an older session left a state of its own.
    (run_dir / "experiment_state-s1.json").write_text(_state(0))
    (run_dir / "experiment_state-s0.json").write_text(_state(9))

    assert usable_state(run_dir) == (True, False)
    assert (run_dir / "experiment_state-s1.json").read_bytes() == (staging / "experiment_state-s1.json").read_bytes()
    assert not (run_dir / "experiment_state-s0.json").exists()


def test_tune_copy_of_its_state_is_kept_when_it_is_later_than_the_snapshot(tmp_path: Path):
    staging, run_dir, trial = _state_dirs(tmp_path)
    StateSnapshot().on_step_end(iteration=1, trials=[trial])
    # Tune's last save (a finished search) or a new session's first one, with no snapshot after it.
    for later in (_state(5, "all finished"), _state(0, "resumed")):
        name = "experiment_state-s1.json" if "finished" in later else "experiment_state-s2.json"
        (run_dir / name).write_text(later)
        assert usable_state(run_dir) == (True, False)
        assert (run_dir / name).read_text() == later


# --- searches ---------------------------------------------------------------------------------


def test_multi_objective_search_tracks_every_trial(ray_session, tmp_path: Path, capsys, monkeypatch):
    space_file = write_space(
        tmp_path,
        lr="{loguniform: [0.003, 0.03]}",
        objective="[{metric: val/acc_mean, mode: max}, {metric: val/energy, mode: min}]",
    )
    kept: list[str] = []  # the checkpoints Tune was about to delete, kept until its state named the next
    keep = StateSnapshot.on_checkpoint

    def recording_keep(self, iteration, trials, trial, checkpoint, **info):
        keep(self, iteration, trials, trial, checkpoint, **info)
        if trial.checkpoint is not None:
            assert trial.checkpoint.path != checkpoint.path  # called before Tune registers the new one
            assert (Path(trial.checkpoint.path).parent / KEPT_DIR / Path(trial.checkpoint.path).name).is_dir()
            kept.append(trial.trial_id)

    monkeypatch.setattr(StateSnapshot, "on_checkpoint", recording_keep)
    outcome, client = search(tmp_path, space_file)
    out = capsys.readouterr().out
    # Every epoch after the first replaced a checkpoint; none is left kept once the search ended.
    assert sorted(kept) == sorted([t.trial_id for t in outcome.trials] * 2)
    assert not list((tmp_path / "runs").glob(f"tiny/*/{KEPT_DIR}"))
    trial_dirs = list((tmp_path / "runs" / "tiny").glob("trial_*"))
    assert len(trial_dirs) == 6 and all(len(list(d.glob("checkpoint_*"))) == 1 for d in trial_dirs)

    assert outcome.exit_code == 0
    assert len(outcome.trials) == 6 and all(t.state == "FINISHED" for t in outcome.trials)
    # One line per epoch and one per finished trial, as they happen.
    for trial in outcome.trials:
        for epoch in (1, 2, 3):
            assert f"[{trial.trial_id}] epoch {epoch}/3" in out
        assert f"[{trial.trial_id}] done after 3 epochs" in out
    assert "Pareto set" in out and f"MLflow UI: {mlflow_ui_command(outcome.plan.tracking_uri)}" in out
    # commands to copy, each runnable as printed: the best config's path itself (before, `--config ...`)
    best_config = tmp_path / "runs" / "tiny" / "best_config.yaml"
    assert f"({search_command('train', str(space_file), '--config', str(best_config))})" in out, out[-2000:]

    # Pareto set: finished trials, none dominated by another.
    assert outcome.pareto
    for p in outcome.pareto:
        assert not any(
            o.values[0] >= p.values[0] and o.values[1] <= p.values[1] and o.values != p.values
            for o in outcome.trials
        )

    (parent,) = runs_of(client, outcome, "search")
    children = runs_of(client, outcome, "trial")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.num_samples"] == "6"
    # scheduler none reads neither (before, both were logged as if they had acted)
    assert "search.grace_period" not in parent.data.params and "search.reduction_factor" not in parent.data.params
    # the best trial by its MLflow run id too, which the UI finds (the trial id is Ray's)
    (best_run,) = [c for c in children if c.data.tags["losstune.trial_id"] == outcome.best.trial_id]
    assert parent.data.tags["losstune.best_run_id"] == best_run.info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "space.yaml",
        "summary.txt",
        "best_config.yaml",
        "pareto.json",
    }
    best = client.get_metric_history(parent.info.run_id, "search/best/val/acc_mean")
    values = [m.value for m in sorted(best, key=lambda m: m.step)]
    assert values == sorted(values) and values[-1] == pytest.approx(max(t.values[0] for t in outcome.trials))

    assert len(children) == 6
    assert {c.data.tags["trial_id"] for c in children} == {t.trial_id for t in outcome.trials}
    by_trial = {t.trial_id: t for t in outcome.trials}
    for child in children:
        trial = by_trial[child.data.tags["losstune.trial_id"]]
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["loss.digit"] == trial.config["heads.digit.loss"]
        assert child.data.params["train.lr"] == str(trial.config["train.lr"])
        assert child.data.params["train.threads"] == "1"  # the trial's CPU share
        assert epochs_logged(client, child) == [1, 2, 3]
        assert "test/acc_mean" in child.data.metrics and "val/energy" in child.data.metrics

    # Tune's own record of every result (its JSON and CSV loggers), without TensorBoard event files.
    for trial_dir in outcome.plan.run_dir.glob("trial_*"):
        epochs = [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()]
        assert epochs[:3] == [1, 2, 3] and (trial_dir / "progress.csv").is_file()
        assert not list(trial_dir.glob("events.out.tfevents*"))
    assert len(list(outcome.plan.run_dir.glob("trial_*"))) == 6

    # best_config.yaml is the best trial's flat config: training it again reproduces the trial.
    best_config = yaml.safe_load((outcome.plan.run_dir / "best_config.yaml").read_text())
    assert best_config == outcome.best.config
    again = train(best_config, report=lambda metrics: None)
    assert again["val/acc_mean"] == pytest.approx(outcome.best.values[0], abs=1e-9)


def test_asha_stops_hopeless_trials_early(ray_session, tmp_path: Path):
    # One trial at a time in grid order: two that learn set the first rung, then two whose
    # learning rate is too small to move the weights fall below it at epoch 1.
    space_file = write_space(
        tmp_path,
        name="asha",
        heads=FIXED_HEADS,
        epochs=4,
        lr="{grid: [0.05, 0.03, 1.0e-7, 2.0e-7]}",
        search="{sampler: grid, scheduler: asha, grace_period: 1, reduction_factor: 2, max_concurrent: 1}",
    )
    outcome, client = search(tmp_path, space_file)

    assert outcome.exit_code == 0
    states = {t.config["train.lr"]: t.state for t in outcome.trials}
    assert states == {0.05: "FINISHED", 0.03: "FINISHED", 1e-7: "STOPPED", 2e-7: "STOPPED"}
    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    for trial in outcome.trials:
        run = runs[trial.trial_id]
        if trial.state == "STOPPED":
            # A normal end in a search: FINISHED in MLflow (no red cross), the reason as a tag.
            assert run.info.status == "FINISHED" and run.data.tags["losstune.state"] == "stopped_early"
            assert run.data.tags["losstune.end_reason"] == "stopped early by the scheduler"
            assert epochs_logged(client, run) == [1]
            assert "test/acc_mean" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and epochs_logged(client, run) == [1, 2, 3, 4]


class ScriptedCurves:
    """``train`` for real, but reporting ``val/acc_mean`` from a curve chosen by the trial's learning
    rate (and the curve's best as the final value), so a scheduler's decisions are known in advance."""

    def __init__(self, curves: dict[float, list[float]]) -> None:
        self.curves = curves

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        curve = self.curves[config.train.lr]

        def scripted(metrics):
            epoch = metrics["epoch"]
            report({**metrics, "val/acc_mean": curve[epoch - 1], "best/val/acc_mean": max(curve[:epoch])})

        final = train(config, report=scripted, checkpoint_dir=checkpoint_dir, **given)
        best_epoch = curve.index(max(curve)) + 1
        return {**final, "val/acc_mean": max(curve), "best/val/acc_mean": max(curve), "best_epoch": best_epoch}


def test_median_stopping_stops_a_trial_below_the_median_and_lets_the_last_epoch_finish(ray_session, tmp_path: Path):
    # One trial at a time in grid order. Three trials set the median; 0.02 is far below it at
    # epoch 1 and is stopped; 0.01 is above it at epoch 1 and below it at its last epoch, where
    # the rule is not asked (it would stop the trial and lose its test metrics; MedianStoppingRule
    # then failed an assertion on the trial's final result and the whole search crashed).
    curves = {0.05: [0.5, 0.8], 0.04: [0.5, 0.8], 0.03: [0.5, 0.8], 0.02: [0.1, 0.1], 0.01: [0.55, 0.56]}
    space_file = write_space(
        tmp_path,
        name="median",
        heads=FIXED_HEADS,
        epochs=2,
        lr="{grid: [0.05, 0.04, 0.03, 0.02, 0.01]}",
        search="{sampler: grid, scheduler: median, grace_period: 1, max_concurrent: 1}",
    )
    assert isinstance(build_scheduler(load_space(space_file), epochs=2), MedianStoppingRule)
    outcome, client = search(tmp_path, space_file, train_fn=ScriptedCurves(curves))

    assert outcome.exit_code == 0
    states = {t.config["train.lr"]: t.state for t in outcome.trials}
    assert states == {0.05: "FINISHED", 0.04: "FINISHED", 0.03: "FINISHED", 0.02: "STOPPED", 0.01: "FINISHED"}
    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    for trial in outcome.trials:
        run = runs[trial.trial_id]
        if trial.state == "STOPPED":
            assert run.info.status == "FINISHED" and epochs_logged(client, run) == [1]
            assert run.data.tags["losstune.state"] == "stopped_early"
            assert run.data.tags["losstune.end_reason"] == "stopped early by the scheduler"
        else:
            assert run.info.status == "FINISHED" and "test/acc_mean" in run.data.metrics


class SlowTrain:
    """``train`` that waits ``seconds`` after reporting each epoch, so a search outlasts its budget;
    with ``marks``, it leaves a file there as it reports each epoch."""

    def __init__(self, seconds: float, marks: Path | None = None) -> None:
        self.seconds = seconds
        self.marks = None if marks is None else str(marks)

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        def slow_report(metrics):
            if self.marks is not None:
                Path(self.marks, f"epoch-{metrics['epoch']}-{time.time_ns()}").touch()
            report(metrics)
            time.sleep(self.seconds)

        return train(config, report=slow_report, checkpoint_dir=checkpoint_dir, **given)


def test_the_time_budget_ends_a_search_and_its_cut_short_trials_runs(ray_session, tmp_path: Path, capsys):
    # Each trial takes at least 15 s, one at a time: the first starts well within the 12 s budget
    # (even on a loaded machine, which once needed over 6 s to start a first trial) and is still
    # running when the budget runs out.
    space_file = write_space(
        tmp_path,
        name="budget",
        heads=FIXED_HEADS,
        search="{num_samples: 4, sampler: random, scheduler: none, max_concurrent: 1, time_budget_s: 12}",
    )
    outcome, client = search(tmp_path, space_file, train_fn=SlowTrain(5.0))
    out = capsys.readouterr().out

    assert outcome.exit_code == 0 and not outcome.interrupted
    assert "ended by its time budget (search.time_budget_s: 12 s)" in out
    assert (outcome.plan.run_dir / "summary.txt").read_text().count("ended by its time budget") == 1
    assert len(outcome.trials) < 4 or any(t.state == "STOPPED" for t in outcome.trials)
    (parent,) = runs_of(client, outcome, "search")
    assert parent.info.status == "FINISHED" and parent.data.tags["losstune.end_reason"] == "time_budget"

    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    assert all(run.info.status != "RUNNING" for run in runs.values())
    # The trial running when the budget ran out has a run, ended (never left RUNNING).
    cut_short = [runs[t.trial_id] for t in outcome.trials if t.state == "STOPPED" and t.trial_id in runs]
    assert cut_short
    for run in cut_short:
        assert run.info.status == "FINISHED" and run.data.tags["losstune.state"] == "stopped_by_budget"
        assert run.data.tags["losstune.end_reason"] == "stopped by the time budget"
    for trial in outcome.trials:
        if trial.state == "FINISHED":
            assert runs[trial.trial_id].info.status == "FINISHED"


def test_trials_the_time_budget_ended_before_they_started_are_never_run_not_stopped(ray_session, tmp_path: Path,
                                                                                    capsys):
    # before: "trials: 2 stopped" and the parent's losstune.num_trials 2, where MLflow and the
    # report had no trial at all; and "best trial: none yet" for a search that had ended
    space_file = write_space(tmp_path, name="instant", heads=FIXED_HEADS,
                             search="{num_samples: 5, sampler: random, scheduler: none, max_concurrent: 2, "
                                    "time_budget_s: 0.2}")
    outcome, client = search(tmp_path, space_file, train_fn=SlowTrain(5.0))
    out = capsys.readouterr().out
    runs = {c.data.tags["losstune.trial_id"] for c in runs_of(client, outcome, "trial")}
    assert {t.trial_id for t in outcome.trials} == runs
    (parent,) = runs_of(client, outcome, "search")
    assert parent.data.tags["losstune.num_trials"] == str(len(runs))
    assert "of 5 trials stopped by it or never run" in out
    if not runs:
        assert "\ntrials: none run\n" in out and "best trial: none (no finished or stopped trial" in out


def _interrupted_after_an_epoch(tmp_path: Path, space_file: Path, train_fn: SlowTrain):
    """``search`` of ``space_file`` stopped by a Ctrl-C once a trial reported an epoch."""
    marks = Path(train_fn.marks)
    marks.mkdir(exist_ok=True)

    def ctrl_c_after_the_first_epoch() -> None:
        deadline = time.monotonic() + 120
        while not any(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # inside Tune's fit, whose handler stops it and saves

    waiter = threading.Thread(target=ctrl_c_after_the_first_epoch, daemon=True)
    waiter.start()
    outcome, client = search(tmp_path, space_file, train_fn=train_fn)
    waiter.join(timeout=10)
    assert outcome.interrupted
    return outcome, client


def test_a_search_resumed_with_a_time_budget_ends_by_what_is_left_of_it(ray_session, tmp_path: Path, capsys):
    # Tune restores its budget's stopper with what is left of the budget; the driver compared the
    # resumed attempt's own time with the whole budget, so the search ended interrupted (exit 130,
    # no summary), and again at every resume. A Ctrl-C once the first trial trains an epoch, then
    # a resume: its 3 epochs of 5 s and the next trial outlast what is left of the 20 s.
    space_file = write_space(
        tmp_path,
        name="budget-resume",
        heads=FIXED_HEADS,
        search="{num_samples: 4, sampler: random, scheduler: none, max_concurrent: 1, time_budget_s: 20}",
    )
    train_fn = SlowTrain(5.0, tmp_path / "marks")
    first, client = _interrupted_after_an_epoch(tmp_path, space_file, train_fn)
    assert first.exit_code == 130
    capsys.readouterr()

    second, _ = search(tmp_path, space_file, train_fn=train_fn, resume=True)
    out = capsys.readouterr().out
    assert second.exit_code == 0 and not second.interrupted
    assert "ended by its time budget (search.time_budget_s: 20 s)" in out
    assert (second.plan.run_dir / "summary.txt").read_text().count("ended by its time budget") == 1
    (parent,) = runs_of(client, second, "search")
    assert parent.info.status == "FINISHED" and parent.data.tags["losstune.end_reason"] == "time_budget"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Tune's handler did not stay


class ScriptedObjectives:
    """``train`` reporting scripted objectives: best at epoch 1, worse at epoch 2, after which it
    waits ``seconds`` (past the search's time budget)."""

    SCRIPT = {1: {"val/acc_mean": 0.9, "val/energy": 1.0}, 2: {"val/acc_mean": 0.5, "val/energy": 2.0}}

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        def scripted(metrics):
            report({**metrics, **self.SCRIPT[metrics["epoch"]], "best/val/acc_mean": 0.9})
            if metrics["epoch"] == 2:
                time.sleep(self.seconds)

        return train(config, report=scripted, checkpoint_dir=checkpoint_dir, **given)


def test_a_trial_the_budget_stopped_is_summarised_at_its_best_epoch_in_every_objective(ray_session, tmp_path: Path):
    # Before, its secondary objective was its last epoch's (val/energy 2.0) beside the primary's best.
    space_file = write_space(
        tmp_path,
        name="budget-objectives",
        heads=FIXED_HEADS,
        objective="[{metric: val/acc_mean, mode: max}, {metric: val/energy, mode: min}]",
        search="{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 1, time_budget_s: 12}",
    )
    outcome, _ = search(tmp_path, space_file, train_fn=ScriptedObjectives(15.0))

    (stopped,) = [t for t in outcome.trials if t.state == "STOPPED"]
    assert stopped.epochs == 2 and stopped.values == (0.9, 1.0)
    (row,) = [line.split() for line in (outcome.plan.run_dir / "summary.txt").read_text().splitlines()
              if line.startswith(stopped.trial_id)]
    assert row[:5] == [stopped.trial_id, "STOPPED", "2", "0.9000", "1.0000"]
    # the space file itself is recorded, for a resume after the file changed
    assert json.loads((outcome.plan.run_dir / "losstune.json").read_text())["space_text"] == space_file.read_text()


def test_the_time_budget_ends_a_search_with_paused_trials_as_finished(ray_session, tmp_path: Path, capsys):
    # ASHA with promotions, one trial at a time, a rung at epoch 1 of 3, learning rates apart (no
    # ties at the rung): trials that rank below the top third pause at epoch 1 and are still
    # paused when the 15 s budget runs out. The budget leaves a loaded machine over 10 s to start
    # the first trial (6 s did not, once, in CI). A trial paused at the rung is stopped during its
    # wait, so only the promoted trials' epochs 2 and 3 wait 8 s each: at least 16 s after the
    # first pause, which outlasts the budget however fast the machine (2 s waits did not, once).
    space_file = write_space(
        tmp_path,
        name="budget-paused",
        heads=FIXED_HEADS,
        lr="{loguniform: [1.0e-4, 0.05]}",
        search="{num_samples: 6, sampler: random, scheduler: asha_promotions, max_concurrent: 1, time_budget_s: 15}",
    )
    outcome, client = search(tmp_path, space_file, train_fn=SlowTrain(8.0))

    assert outcome.exit_code == 0 and not outcome.interrupted
    assert any(t.state == "STOPPED" and t.epochs == 1 for t in outcome.trials)
    (parent,) = runs_of(client, outcome, "search")
    assert parent.info.status == "FINISHED" and parent.data.tags["losstune.end_reason"] == "time_budget"
    runs = runs_of(client, outcome, "trial")
    assert runs and all(run.info.status == "FINISHED" for run in runs)

    # Tune's saved state still shows the paused trials unfinished; a --resume shows the summary
    # again and neither trains them nor touches the search's runs or files.
    capsys.readouterr()
    run_dir = outcome.plan.run_dir
    saved = tune.ExperimentAnalysis(str(run_dir)).trials
    assert any(trial.status in ("PAUSED", "PENDING") for trial in saved)
    files = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()}
    epochs = {run.info.run_id: epochs_logged(client, run) for run in runs}
    again, _ = search(tmp_path, space_file, train_fn=SlowTrain(1.0), resume=True)
    out = capsys.readouterr().out

    assert again.exit_code == 0 and again.plan.finished and not again.interrupted
    assert "already finished" in out and (run_dir / "summary.txt").read_text().rstrip("\n") in out
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()} == files
    assert {run.info.run_id: epochs_logged(client, run) for run in runs_of(client, outcome, "trial")} == epochs
    (parent_again,) = runs_of(client, outcome, "search")
    assert parent_again.info.end_time == parent.info.end_time


class FreeingTrain:
    """``train``, then 200 MiB allocated, filled and freed in 1 MiB blocks before it returns; every
    call appends its worker's pid, ``GLIBC_TUNABLES`` and resident bytes (at its start, and after
    the frees) to ``marks``."""

    def __init__(self, marks: Path) -> None:
        self.marks = marks

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        import ctypes

        def resident() -> int:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        start = resident()
        final = train(config, report=report, checkpoint_dir=checkpoint_dir, **given)
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(1 << 20) for _ in range(200)]
        for block in blocks:
            ctypes.memset(block, 1, 1 << 20)
        for block in blocks:
            libc.free(block)
        with open(self.marks, "a") as f:
            f.write(json.dumps([os.getpid(), os.environ.get("GLIBC_TUNABLES"), start, resident()]) + "\n")
        return final


def test_a_reused_trial_worker_starts_its_next_trial_without_the_memory_the_last_one_freed(ray_session, tmp_path):
    space_file = write_space(
        tmp_path,
        name="freeing",
        heads=FIXED_HEADS,
        search="{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 1, seed: 0}",
    )
    marks = tmp_path / "marks"
    # as `search run` on an instance it did not start: the trial actors' runtime env carries
    # the workers' malloc settings (the test session's instance was started without them)
    with trial_actor_env(RayHandle(owned=False, address=None)):
        outcome, _ = search(tmp_path, space_file, train_fn=FreeingTrain(marks))

    assert outcome.exit_code == 0
    (pid, tunables, _, kept), (next_pid, _, next_start, _) = [json.loads(line) for line in marks.read_text().splitlines()]
    assert next_pid == pid  # Tune reused the actor
    # the worker keeps freed memory (else this test proves nothing)...
    assert tunables.startswith(MALLOC_TUNABLES), tunables
    # ...until the trial's training returned
    assert next_start < kept - 150 * (1 << 20), (kept, next_start)


class FaultyTrain:
    """``train`` with faults chosen by ``model.hidden``; every call is recorded in ``marks/calls``:

    - 16: warns, then trains normally;
    - 17: trains with a learning rate of 1e30 and diverges (NaN) in epoch 1;
    - 18: raises RuntimeError before training, every attempt;
    - 19: raises RuntimeError once, right after reporting epoch 2 (a flaky trial);
    - 20: its process is killed once, right after reporting epoch 2 (a lost worker);
    - 21: raises ValueError before training (a config the model refuses).
    """

    def __init__(self, marks: Path) -> None:
        self.marks = marks

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        hidden = config.model.params["hidden"]
        with open(self.marks / "calls", "a") as f:
            f.write(f"{hidden}\n")
        if hidden == 17:
            diverging = TrialConfig.from_flat({**config.to_flat(), "train.lr": 1e30})
            return train(diverging, report=report, checkpoint_dir=checkpoint_dir, **given)
        if hidden == 18:
            raise RuntimeError("injected fault")
        if hidden == 21:
            raise ValueError("injected config error")
        if hidden == 16:
            warnings.warn("injected warning", RuntimeWarning, stacklevel=1)
        if hidden not in (19, 20):
            return train(config, report=report, checkpoint_dir=checkpoint_dir, **given)
        failed = self.marks / f"failed-{hidden}"
        if failed.exists() and os.path.exists(os.path.join(checkpoint_dir, CHECKPOINT_NAME)):
            (self.marks / f"restarted-{hidden}").touch()

        def flaky_report(metrics):
            report(metrics)
            if metrics["epoch"] == 2 and not failed.exists():
                failed.touch()
                if hidden == 19:
                    raise RuntimeError("injected flaky fault")
                os.kill(os.getpid(), signal.SIGKILL)

        return train(config, report=flaky_report, checkpoint_dir=checkpoint_dir, **given)


def test_a_failure_that_would_repeat_is_not_retried_and_crashes_are_retried_from_their_checkpoint(
    ray_session, tmp_path: Path, capsys
):
    space_file = write_space(
        tmp_path,
        name="faults",
        heads=FIXED_HEADS,
        hidden="{grid: [16, 17, 18, 19, 20, 21]}",
        search="{sampler: grid, scheduler: asha, grace_period: 3, max_concurrent: 2, max_failures: 1}",
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    outcome, client = search(tmp_path, space_file, train_fn=FaultyTrain(marks))
    out = capsys.readouterr().out

    assert outcome.exit_code == 0  # the search finished; its failed trials are listed
    by_hidden = {t.config["model.mlp.hidden"]: t for t in outcome.trials}
    states = {hidden: t.state for hidden, t in by_hidden.items()}
    assert states == {16: "FINISHED", 17: "FAILED", 18: "FAILED", 19: "FINISHED", 20: "FINISHED", 21: "FAILED"}
    assert by_hidden[17].error.startswith("TrainingDiverged: ") and "finite" in by_hidden[17].error
    assert by_hidden[18].error == "RuntimeError: injected fault"
    assert by_hidden[21].error == "ValueError: injected config error"
    # A diverged loss and a refused config would fail the same way again: one attempt each. The
    # error that may pass, the flaky error and the killed worker are retried (max_failures: 1).
    calls = (marks / "calls").read_text().split()
    assert {h: calls.count(str(h)) for h in range(16, 22)} == {16: 1, 17: 1, 18: 2, 19: 2, 20: 2, 21: 1}
    assert (marks / "restarted-19").exists() and (marks / "restarted-20").exists()

    # One line per failure on the terminal, naming the traceback file; never Tune's traceback.
    for hidden in (17, 21):
        trial_id = by_hidden[hidden].trial_id
        (line,) = [line for line in out.splitlines() if line.startswith(f"[{trial_id}] FAILED")]
        assert "(not retried: it would fail the same way)" in line
        path = Path(line.split("full traceback: ")[1].split("  (")[0])
        assert path.is_file() and "Traceback (most recent call last)" in path.read_text()
    assert "Traceback" not in out
    # A trial's warnings reach the terminal as lines of the driver.
    assert f"[{by_hidden[16].trial_id}] warning: RuntimeWarning: injected warning" in out

    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    assert len(runs) == 6
    for hidden, trial in by_hidden.items():
        run = runs[trial.trial_id]
        if trial.state == "FAILED":
            assert run.info.status == "FAILED" and run.data.tags["losstune.state"] == "failed"
            assert run.data.tags["losstune.error"] == trial.error
            error_txt = Path(client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path / trial.trial_id)))
            assert 'File "' in error_txt.read_text() and trial.error.split(": ", 1)[1] in error_txt.read_text()
        else:
            assert run.info.status == "FINISHED"
            assert epochs_logged(client, run) == [1, 2, 3]  # a retried epoch is not logged twice
    assert {h: runs[by_hidden[h].trial_id].data.tags.get("losstune.retries") for h in (16, 17, 18, 19, 20, 21)} == {
        16: None, 17: None, 18: "1", 19: "1", 20: "1", 21: None
    }


def test_a_search_whose_every_trial_fails_exits_1(ray_session, tmp_path: Path):
    space_file = write_space(
        tmp_path,
        name="doomed",
        heads=FIXED_HEADS,
        hidden=18,
        search="{num_samples: 1, sampler: random, scheduler: none, max_failures: 0}",
    )
    outcome, client = search(tmp_path, space_file, train_fn=FaultyTrain(tmp_path))

    assert outcome.exit_code == 1
    assert [(t.state, t.error) for t in outcome.trials] == [("FAILED", "RuntimeError: injected fault")]
    (parent,) = runs_of(client, outcome, "search")
    (child,) = runs_of(client, outcome, "trial")
    assert parent.info.status == "FAILED" and child.info.status == "FAILED"
    # The parent's end state and its end reason agree.
    assert parent.data.tags["losstune.end_reason"] == "all_failed"
    assert not (outcome.plan.run_dir / "best_config.yaml").exists()
    # Resumed, it shows its summary and exits as it did.
    again, _ = search(tmp_path, space_file, train_fn=FaultyTrain(tmp_path), resume=True)
    assert again.plan.finished and again.exit_code == 1


def test_a_search_again_after_its_run_directory_was_removed_keeps_both_searches_runs(ray_session, tmp_path: Path):
    # What `make clean` used to lead to: the store stays, runs/ goes, the same space runs again.
    space_file = write_space(
        tmp_path, name="again", heads=FIXED_HEADS, lr="{grid: [0.02, 0.03]}", search="{sampler: grid, scheduler: none}"
    )
    first, client = search(tmp_path, space_file)
    shutil.rmtree(first.plan.run_dir)
    second, _ = search(tmp_path, space_file)

    assert first.exit_code == second.exit_code == 0
    assert first.plan.search_id != second.plan.search_id
    experiment = client.get_experiment_by_name("again")
    everything = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert all(r.info.lifecycle_stage == "active" for r in everything)
    for outcome in (first, second):
        (parent,) = runs_of(client, outcome, "search")
        assert parent.info.status == "FINISHED" and parent.data.tags["losstune.end_reason"] == "finished"
        children = runs_of(client, outcome, "trial")
        assert {c.data.tags["losstune.trial_id"] for c in children} == {t.trial_id for t in outcome.trials}
        assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        assert all(epochs_logged(client, c) == [1, 2, 3] for c in children)
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        # Each parent's best-so-far history is its own search's.
        best = client.get_metric_history(parent.info.run_id, "search/best/val/acc_mean")
        assert max(m.value for m in best) == pytest.approx(max(t.values[0] for t in outcome.trials))
        assert len(best) <= 2 * 3  # at most one improvement per epoch result of this search


def test_resume_with_a_search_id_must_name_the_search_of_the_run_directory(tmp_path: Path):
    space_file = write_space(tmp_path, name="named")
    run_dir = tmp_path / "runs" / "named"
    run_dir.mkdir(parents=True)
    (run_dir / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    meta = {"search_id": "named-1", "tracking_uri": "sqlite:///m.db", "experiment": "named", "status": "running"}
    (run_dir / "losstune.json").write_text(json.dumps(meta))
    options = SearchOptions(storage=str(tmp_path / "runs"), resume=True, resume_id="named-2")
    with pytest.raises(SearchInputError, match="--resume named-2 must name the search in .* but got search named-1"):
        plan_search(load_space(space_file), options)


def _unfinished_search(tmp_path: Path, space_file: Path, **recorded: Any) -> None:
    run_dir = tmp_path / "runs" / "named"
    run_dir.mkdir(parents=True)
    (run_dir / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    (run_dir / "experiment_state-2026-12-07_00-00-00.json").write_text('{"runner_data": {}}')
    meta = {"search_id": "named-1", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}", "experiment": "named",
            "status": "running", "space_sha256": space_digest(load_space(space_file)), **recorded}
    (run_dir / "losstune.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(("resources", "gpu", "expected"), [
    ({"CPU": 2.0}, "", 2), ({"CPU": 16.0, "GPU": 1.0}, ", gpu: 0.25", 4), ({"CPU": 64.0}, "", 8)])
def test_a_local_search_runs_at_most_the_trials_that_fit_at_once(tmp_path: Path, monkeypatch, resources, gpu, expected):
    # before: max_concurrent 8 on 2 CPUs drew 8 configurations before any result, TPE's as random search's
    import ray

    from search.driver import fit_concurrency

    space_file = write_space(tmp_path, search="{num_samples: 8, sampler: tpe, scheduler: none, max_concurrent: 8}")
    space_file.write_text(space_file.read_text().replace("resources: {cpu: 1}", f"resources: {{cpu: 1{gpu}}}"))
    plan = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"),
                                                             tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))
    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    fitted, note = fit_concurrency(plan)
    assert fitted.space.search.max_concurrent == expected
    assert (note is None) == (expected == 8)
    if note is not None:
        assert note.startswith(f"search.max_concurrent is 8, but {expected} trial(s) fit at once on this machine's Ray")


def test_a_folder_of_the_user_s_own_is_no_run_directory(tmp_path: Path):
    # before: a new search cleared "an earlier attempt's" Tune files from it: results-2024.json and
    # model-v1.pkl of the user's were deleted, and Tune wrote its files beside the rest
    space_file = write_space(tmp_path)
    mine = tmp_path / "runs" / "tiny"
    mine.mkdir(parents=True)
    for name in ("results-2024.json", "model-v1.pkl", "notes.txt"):
        (mine / name).write_text("keep me")
    options = SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(SearchInputError, match="or an empty or absent one, but got .*tiny, which holds model-v1.pkl, "
                                                "notes.txt, results-2024.json; pass --name NEW"):
        plan_search(load_space(space_file), options)
    assert sorted(p.name for p in mine.iterdir()) == ["model-v1.pkl", "notes.txt", "results-2024.json"]
    (mine.parent / "empty").mkdir()
    assert plan_search(load_space(space_file), dataclasses.replace(options, name="empty")).resume is False


def test_a_store_given_again_with_other_credentials_is_used_with_them(tmp_path: Path):
    # before: the first URI recorded won for good, a mistyped or rotated password with it, and the
    # note said "continues in ... http://alice:***@... (not http://alice:***@...)"
    from search.driver._plan import write_meta

    space_file = write_space(tmp_path)
    write_meta(RunLocation(str(tmp_path / "runs"), "tiny"),
               {"search_id": "tiny-1", "tracking_uri": "http://alice:wrongPW@127.0.0.1:1", "experiment": "tiny"})
    right = "http://alice:rightPW@127.0.0.1:1"
    plan = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=right))
    assert plan.tracking_uri == right and plan.search_id == "tiny-1"
    assert not any("continues in the MLflow store" in note for note in plan.notes)
    other = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"),
                                                              tracking_uri="http://alice:rightPW@127.0.0.1:2"))
    assert other.tracking_uri == "http://alice:wrongPW@127.0.0.1:1"  # another store: the recorded one, noted
    assert any("continues in the MLflow store it started with" in note for note in other.notes)


def test_the_resume_command_repeats_the_options_the_saved_state_lacks(tmp_path: Path):
    # Before, it dropped the command's Ray options: a search run with --num-cpus 2 (or on a cluster
    # by --address) resumed on every CPU of a new local instance; and a storage path with a space
    # was not quoted.
    from search.driver._run import resume_command

    PYTHON = shlex.quote(python_path())  # this interpreter, as a shell here runs it

    space_file = write_space(tmp_path, name="named")
    storage = tmp_path / "my runs"
    options = SearchOptions(storage=str(storage), name="mine", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                            ray_flags=("--address", "10.0.0.5:6379", "--num-cpus", "2", "--dashboard"))
    plan = plan_search(load_space(space_file), options)
    assert resume_command(plan) == (f"{PYTHON} -m search run {space_file} --resume --storage '{storage}' --name mine "
                                    "--address 10.0.0.5:6379 --num-cpus 2 --dashboard")
    plain = plan_search(load_space(space_file), SearchOptions(storage="runs", tracking_uri=options.tracking_uri))
    assert resume_command(plain) == f"{PYTHON} -m search run {space_file} --resume --storage runs"
    # a submitted search's, for where it was submitted from: before, `--address ... --tracking-uri ...`
    secret = "http://me:s3cret@mlflow:5000"
    job = plan_search(load_space(space_file), SearchOptions(
        storage=str(storage), tracking_uri=secret, ray_job="losstune-named-1", space_shown="/home/me/x.yaml",
        submitted_to="http://127.0.0.1:8266"))
    assert resume_command(job) == (f"python -m search submit /home/me/x.yaml --resume --storage '{storage}' "
                                   "--address http://127.0.0.1:8266 --tracking-uri 'http://me:***@mlflow:5000'")


def test_a_search_resumed_after_its_space_file_changed_runs_the_space_it_started_with(tmp_path: Path):
    # before, only Tune's pickled searcher and scheduler were the original's: the data set, the
    # objectives and the budget came from the edited file
    space_file = write_space(tmp_path, name="named", epochs=3)
    _unfinished_search(tmp_path, space_file, space_text=space_file.read_text())
    space_file.write_text(space_file.read_text().replace("limit: 300", "limit: 200").replace("epochs: 3", "epochs: 9"))
    plan = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"), resume=True))
    assert plan.resume and (plan.space.data.limit, plan.space.constants["train.epochs"]) == (300, 3)
    assert any("resumes with its original space, recorded in" in note for note in plan.notes)


def test_a_search_whose_recorded_space_todays_checks_refuse_resumes_with_the_edited_file(tmp_path: Path):
    # a rule added since (a data.path for digits, say) refused the recorded space: the search could
    # not be resumed however the file was edited
    space_file = write_space(tmp_path, name="named", epochs=3)
    refused = space_file.read_text().replace("limit: 300", "limit: 300, path: /ignored")
    assert "path: /ignored" in refused
    _unfinished_search(tmp_path, space_file, space_text=refused)
    space_file.write_text(space_file.read_text().replace("limit: 300", "limit: 200"))
    plan = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"), resume=True))
    assert plan.resume and plan.space.data.limit == 200
    assert any("is no longer valid (" in note and "data.path: no path with data.kind digits" in note
               for note in plan.notes)


def test_a_search_whose_run_directory_kept_only_the_spaces_digest_resumes_with_the_file_as_it_is(tmp_path: Path):
    # an earlier version's run directory: the file may need an edit to pass today's checks
    space_file = write_space(tmp_path, name="named", epochs=3)
    _unfinished_search(tmp_path, space_file)  # no space_text
    space_file.write_text(space_file.read_text().replace("limit: 300", "limit: 200"))
    plan = plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"), resume=True))
    assert plan.resume and plan.space.data.limit == 200
    assert any("takes its data set, objectives and budget from the file as it is now" in n for n in plan.notes)


def test_a_tune_state_that_cannot_be_read_discards_no_run(ray_session, tmp_path: Path, monkeypatch):
    # after a second Ctrl-C Tune's copy of its state may be cut off mid-write: read as no trials,
    # every run of the search was discarded (KILLED), finished ones too, and a resume made new runs
    space_file = write_space(tmp_path, name="unread", heads=FIXED_HEADS, epochs=1,
                             search="{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 1}")

    def cut_off(path):
        raise json.JSONDecodeError("Unterminated string", "{", 1)

    monkeypatch.setattr(tune, "ExperimentAnalysis", cut_off)
    outcome, client = search(tmp_path, space_file)
    assert outcome.interrupted  # no state: nothing to summarise, resumable
    runs = runs_of(client, outcome, "trial")
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    assert not any(run.data.tags.get("losstune.state") == "discarded" for run in runs)


def test_a_run_directory_that_kept_only_the_digest_records_the_digest_of_the_text_it_runs(
    ray_session, tmp_path: Path
):
    # the resume recorded the edited file's text beside the old digest, and the next resume
    # refused the run directory ("a space_text whose sha256 is its space_sha256, but got another")
    space_file = write_space(tmp_path, name="named", heads=FIXED_HEADS,
                             search="{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 1}")
    first, _ = _interrupted_after_an_epoch(tmp_path, space_file, SlowTrain(2.0, tmp_path / "marks"))
    meta_file = first.plan.run_dir / "losstune.json"
    meta = json.loads(meta_file.read_text())
    del meta["space_text"]  # as an earlier version wrote it
    meta_file.write_text(json.dumps(meta))
    space_file.write_text(space_file.read_text().replace("limit: 300", "limit: 200"))
    second, _ = search(tmp_path, space_file, resume=True)
    assert second.exit_code == 0
    meta = json.loads(meta_file.read_text())
    assert meta["space_text"] == space_file.read_text()
    assert meta["space_sha256"] == space_digest(load_space(space_file, text=meta["space_text"]))


# val/acc_mean per epoch by learning rate, for ASHA with promotions on one rung (epoch 1) of 3 epochs
PROMOTION_CURVES = {0.05: [0.3, 0.3, 0.3], 0.04: [0.5, 0.6, 0.7], 0.03: [0.4, 0.4, 0.4], 0.02: [0.6, 0.7, 0.8]}


def _promotions_space(tmp_path: Path, *, name: str, max_failures: int = 0) -> Path:
    """PROMOTION_CURVES' learning rates as a grid, one trial at a time, ASHA with promotions."""
    return write_space(
        tmp_path,
        name=name,
        heads=FIXED_HEADS,
        epochs=3,
        lr=f"{{grid: {list(PROMOTION_CURVES)}}}",
        search=f"{{sampler: grid, scheduler: asha_promotions, max_concurrent: 1, max_failures: {max_failures}}}",
    )


def test_asha_with_promotions_pauses_each_trial_at_a_rung_until_it_ranks_in_the_top_third(
    ray_session, tmp_path: Path
):
    # One trial at a time in grid order, one rung (epoch 1) for 3 epochs, reduction factor 3:
    # 0.05 and 0.04 pause at epoch 1 (fewer than 3 trials reached the rung); 0.03 makes it 3, and
    # the best of them, 0.04, takes its slot and runs to the end while 0.03 pauses; 0.02 is the
    # best of 4 (top 1) and runs on at once. No configuration is left, so 0.05 and 0.03 end where
    # they paused.
    space_file = _promotions_space(tmp_path, name="promotions")
    outcome, client = search(tmp_path, space_file, train_fn=ScriptedCurves(PROMOTION_CURVES))

    assert outcome.exit_code == 0
    states = {t.config["train.lr"]: t.state for t in outcome.trials}
    assert states == {0.05: "STOPPED", 0.04: "FINISHED", 0.03: "STOPPED", 0.02: "FINISHED"}
    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    order = []  # (time, lr, epoch) of every epoch logged
    for trial in outcome.trials:
        run = runs[trial.trial_id]
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, "val/acc_mean")
        order += [(m.timestamp, trial.config["train.lr"], m.step) for m in history]
        if trial.state == "STOPPED":
            assert run.data.tags["losstune.state"] == "stopped_early"
            assert epochs_logged(client, run) == [1] and "test/acc_mean" not in run.data.metrics
        else:
            assert epochs_logged(client, run) == [1, 2, 3] and "test/acc_mean" in run.data.metrics
    # the order a single worker trained them in: 0.04 resumed from its checkpoint after 0.03's first epoch
    assert [(lr, epoch) for _, lr, epoch in sorted(order)] == [
        (0.05, 1), (0.04, 1), (0.03, 1), (0.04, 2), (0.04, 3), (0.02, 1), (0.02, 2), (0.02, 3)]


class CrashingOnce(ScriptedCurves):
    """``ScriptedCurves`` where the trial of learning rate ``lr`` raises once, in its first epoch."""

    def __init__(self, curves: dict[float, list[float]], *, lr: float, marks: Path) -> None:
        super().__init__(curves)
        self.lr, self.crashed = lr, marks / "crashed"

    def __call__(self, config, *, report, checkpoint_dir=None, **given):
        if config.train.lr == self.lr and not self.crashed.exists():
            self.crashed.touch()
            raise RuntimeError("injected flaky fault")
        return super().__call__(config, report=report, checkpoint_dir=checkpoint_dir, **given)


def test_asha_with_promotions_ranks_and_promotes_a_retried_trial_like_any_other(ray_session, tmp_path: Path):
    # The promotions test above, with 0.04 retried after a crash in its first epoch (Tune tells
    # the scheduler of a crash it retries as of a final error): it still takes 0.03's slot, once
    # back at the rung, and runs to the end.
    space_file = _promotions_space(tmp_path, name="retried", max_failures=1)
    train_fn = CrashingOnce(PROMOTION_CURVES, lr=0.04, marks=tmp_path)
    outcome, client = search(tmp_path, space_file, train_fn=train_fn)

    assert outcome.exit_code == 0 and train_fn.crashed.exists()
    states = {t.config["train.lr"]: t.state for t in outcome.trials}
    assert states == {0.05: "STOPPED", 0.04: "FINISHED", 0.03: "STOPPED", 0.02: "FINISHED"}
    runs = {c.data.tags["losstune.trial_id"]: c for c in runs_of(client, outcome, "trial")}
    (retried,) = [t for t in outcome.trials if t.config["train.lr"] == 0.04]
    run = runs[retried.trial_id]
    assert run.info.status == "FINISHED" and epochs_logged(client, run) == [1, 2, 3]
    assert "test/acc_mean" in run.data.metrics and run.data.tags["losstune.retries"] == "1"
