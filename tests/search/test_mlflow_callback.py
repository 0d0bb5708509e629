"""The driver's callbacks without Ray running: MlflowCallback against a real MLflow store (SQLite in
tmp_path), fed the results a trial reports (what a trial trained on becomes tags of its run, never
metrics); ProgressPrinter's line for a restarted trial."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from mlflow import MlflowClient

from search.driver._callbacks import MlflowCallback
from search.driver._trainable import FINAL_KEY
from search.tracking import SearchTracker, TrackingSettings

CONFIG = {"heads.pitch.loss": "ce", "train.lr": 0.01}


def _callback(tmp_path: Path) -> MlflowCallback:
    settings = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="exp",
                                search_id="search-1", search_name="s", objective_metric="val/acc_mean",
                                objective_mode="max")
    return MlflowCallback(SearchTracker(settings))


def test_string_device_results_become_run_tags_and_numbers_stay_metrics(tmp_path: Path):
    callback = _callback(tmp_path)
    trial = SimpleNamespace(trial_id="t1", config=CONFIG)
    callback.on_trial_start(0, [], trial)
    first = {
        "epoch": 1, "val/acc_mean": 0.5, "training_iteration": 1, "warnings": ["RuntimeWarning: x"],
        "device/type": "cuda", "device/name": "NVIDIA H200", "device/gpu_id": "3", "device/amp": "bf16",
        "device/driver": "570.1", "gpu/peak_allocated_mb": 812.5, "gpu/utilization_pct": 93.0,
    }
    callback.on_trial_result(1, [], trial, first)
    callback.on_trial_result(2, [], trial, {"epoch": 2, "val/acc_mean": 0.6, "gpu/peak_allocated_mb": 815.0})
    callback.on_trial_result(3, [], trial, {"epoch": 2, "test/acc_mean": 0.55, "best_epoch": 2, FINAL_KEY: 1})
    callback.tracker.flush()

    client = MlflowClient(callback.tracker.settings.tracking_uri)
    run = client.get_run(callback.tracker.trial_run_id("t1"))
    tags = run.data.tags
    assert (tags["losstune.device"], tags["losstune.device_name"], tags["losstune.gpu_id"], tags["losstune.amp"]) == (
        "cuda", "NVIDIA H200", "3", "bf16")
    assert tags["losstune.device_driver"] == "570.1"  # another device/ string: a tag too
    assert not any(key.startswith("device/") for key in run.data.metrics)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "gpu/peak_allocated_mb")] == [812.5, 815.0]
    assert run.data.metrics["gpu/utilization_pct"] == 93.0
    assert run.data.metrics["test/acc_mean"] == 0.55


def test_a_trial_on_the_cpu_gets_an_empty_gpu_id_tag(tmp_path: Path):
    callback = _callback(tmp_path)
    trial = SimpleNamespace(trial_id="t2", config=CONFIG)
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(1, [], trial, {"epoch": 1, "val/acc_mean": 0.4, "device/type": "cpu",
                                            "device/name": "cpu", "device/gpu_id": "", "device/amp": "off"})
    callback.tracker.flush()
    run = MlflowClient(callback.tracker.settings.tracking_uri).get_run(callback.tracker.trial_run_id("t2"))
    assert run.data.tags["losstune.device"] == "cpu" and run.data.tags["losstune.gpu_id"] == ""
    assert set(run.data.metrics) == {"epoch", "val/acc_mean"}


def test_a_failure_s_traceback_survives_tune_s_next_sync_of_its_staging_directory(tmp_path):
    # Tune copies its staging directory over the run directory at every sync: the traceback the
    # driver wrote to the run directory alone was replaced by Tune's own error file (a retried
    # failure's) at the next sync
    import pyarrow.fs

    from search.driver._callbacks import _write_error_file

    staging, stored = tmp_path / "staging" / "trial_a", tmp_path / "runs" / "trial_a"
    staging.mkdir(parents=True)
    (staging / "error.txt").write_text("Failure # 1: RayActorError: worker died\n")
    trial = SimpleNamespace(local_path=str(staging), path=str(stored),
                            storage=SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem()))
    _write_error_file(trial, "Traceback (most recent call last):\nTrainingDiverged: nan\n")
    whole = "Failure # 1: RayActorError: worker died\nTraceback (most recent call last):\nTrainingDiverged: nan\n"
    assert (stored / "error.txt").read_text() == whole
    shutil.copytree(staging, stored, dirs_exist_ok=True)  # Tune's sync
    assert (stored / "error.txt").read_text() == whole


def test_a_restarted_trial_names_the_epoch_its_checkpoint_holds_not_its_last_result(caplog):
    # Tune registers a result's checkpoint a step after the result: a search interrupted in between
    # restarts from the checkpoint before (or from scratch). Before, the line said "resumes after
    # epoch 1" from the last result, and epoch 1 then came again.
    import logging

    from ray.train._internal.session import _TrainingResult

    from search.console import LOGGER
    from search.driver._callbacks import ProgressPrinter

    printer = ProgressPrinter(metric="val/acc_mean", epochs=3, num_samples=2)
    behind = SimpleNamespace(trial_id="t1", config=CONFIG, last_result={"epoch": 2},
                             latest_checkpoint_result=_TrainingResult(checkpoint=None, metrics={"epoch": 1}))
    none = SimpleNamespace(trial_id="t2", config=CONFIG, last_result={"epoch": 1}, latest_checkpoint_result=None)
    new = SimpleNamespace(trial_id="t3", config=CONFIG, last_result={}, latest_checkpoint_result=None)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        for trial in (behind, none, new):
            printer.on_trial_start(0, [], trial)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("[t1] resumes after epoch 1 ")
    assert lines[1].startswith("[t2] starts again from its first epoch")
