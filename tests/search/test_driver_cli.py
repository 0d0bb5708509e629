"""``python -m search run``: exit codes, and a search killed with SIGKILL or interrupted with
Ctrl-C, then resumed.

These tests run the CLI in child processes that start (and own) their Ray instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import search._ray
from search.__main__ import main

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "tests" / "search" / "spaces" / "tiny.yaml"  # 6 trials of 3 epochs, 2 at a time


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs):
        raise AssertionError("Ray must not be started for invalid input")

    monkeypatch.setattr(search._ray, "connect", refuse)


def test_invalid_space_exits_2_before_starting_ray(no_ray, tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPACE.read_text().replace("mode: max", "mode: up").replace("cpu: 1", "cpu: -1"))
    assert main(["run", str(bad), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "objective.mode" in err and "resources.cpu" in err
    assert not (tmp_path / "runs").exists()


def test_resume_without_a_search_exits_2(no_ray, tmp_path: Path, capsys):
    assert main(["run", str(SPACE), "--resume", "--storage", str(tmp_path / "runs")]) == 2
    assert "--resume needs an unfinished search" in capsys.readouterr().err


def _cli(space: Path, tmp_path: Path, uri: str, *extra: str) -> list[str]:
    storage = str(tmp_path / "runs")
    return [sys.executable, "-m", "search", "run", str(space), "--storage", storage, "--tracking-uri", uri, *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_and_kill(command: list[str], *, after: str) -> str:
    """Run ``command`` until a line contains ``after``, then SIGKILL it and everything it started."""
    process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines = []
    # A driver that hangs without output is killed too, so the test fails instead of hanging.
    watchdog = threading.Timer(180, os.killpg, (process.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in process.stdout:
            lines.append(line)
            if after in line:
                break
    finally:
        watchdog.cancel()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
    output = "".join(lines)
    assert after in output, output
    assert process.returncode == -signal.SIGKILL
    return output


def test_a_search_killed_twice_with_sigkill_resumes_to_exactly_num_samples_trials(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    command = _cli(SPACE, tmp_path, uri, "--num-cpus", "2")

    # Killed once a trial finished, then again, resumed, once the next trial finished.
    _run_and_kill(command, after=" done after ")
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    assert any(r.info.status == "RUNNING" for r in client.search_runs([experiment.experiment_id]))
    output = _run_and_kill(command, after=" done after ")
    assert "Resuming unfinished search 'tiny'" in output
    # A kill while Tune copies its state into the run directory leaves a file cut off; make sure
    # this run meets that case (the copy losstune keeps must put it back).
    run_dir = tmp_path / "runs" / "tiny"
    searcher_state = max(run_dir.glob("search_gen_state-*.json"), key=lambda p: p.stat().st_mtime)  # the newest
    searcher_state.write_bytes(b"")

    # The same command again finds the unfinished search and resumes it.
    second = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "it was put back from losstune's copy" in output
    assert "Resuming unfinished search 'tiny'" in output
    assert "trials: 6 finished" in output, output[-4000:]

    # Nothing was deleted; runs of trials Tune lost in a crash (if any) are set aside, not deleted.
    everything = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert all(r.info.lifecycle_stage == "active" for r in everything)
    parents = [r for r in everything if r.data.tags["losstune.role"] == "search"]
    children = [r for r in everything if r.data.tags["losstune.role"] == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["losstune.end_reason"] == "finished"
    discarded = [r for r in children if r.data.tags.get("losstune.state") == "discarded"]
    assert all(r.info.status == "KILLED" for r in discarded)
    kept = [r for r in children if r not in discarded]
    trial_ids = [r.data.tags["losstune.trial_id"] for r in kept]
    assert len(trial_ids) == len(set(trial_ids)) == 6
    assert all(r.info.status == "FINISHED" for r in kept)
    for run in kept:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc_mean")]
        assert sorted(steps) == [1, 2, 3], (run.data.tags["trial_id"], steps)

    # A finished search is not run again by accident.
    again = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already finished" in again.stderr


def test_ctrl_c_interrupts_a_search_and_the_same_command_resumes_it(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    command = _cli(SPACE, tmp_path, uri, "--num-cpus", "2")

    first = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines = []
    interrupted = False
    watchdog = threading.Timer(180, os.killpg, (first.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in first.stdout:
            lines.append(line)
            if " epoch 1/3 " in line and not interrupted:
                # Ctrl-C in a terminal: SIGINT to the whole foreground process group, once.
                os.killpg(first.pid, signal.SIGINT)
                interrupted = True
            if line.startswith("Resume it with:"):
                break
        first.wait(timeout=60)
    finally:
        watchdog.cancel()
        with contextlib.suppress(ProcessLookupError):  # whatever Ray left behind
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        first.stdout.close()
    output = "".join(lines)
    assert first.returncode == 130, output
    storage = tmp_path / "runs"
    assert f"Resume it with: python -m search run {SPACE} --resume --storage {storage}" in output, output
    # At --verbose 0 Tune prints nothing of its own: no banner, no TensorBoard hint.
    assert "Configuration for experiment" not in output and "TensorBoard" not in output, output

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    runs = client.search_runs([experiment.experiment_id])
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags["losstune.role"] == "search"]
    assert parent.info.status == "KILLED" and parent.data.tags["losstune.end_reason"] == "interrupted"
    unfinished = [r for r in runs if r.data.tags["losstune.role"] == "trial" and r.info.status != "FINISHED"]
    assert unfinished  # the trials running at Ctrl-C
    for run in unfinished:
        assert run.info.status == "KILLED" and run.data.tags["losstune.state"] == "interrupted"

    # The same command again resumes the search and completes it, each trial in one run.
    second = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "Resuming unfinished search 'tiny'" in output and "trials: 6 finished" in output, output[-4000:]
    assert "Configuration for experiment" not in output, output
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["losstune.role"] == "search"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags["losstune.role"] == "trial"]
    trial_ids = [r.data.tags["losstune.trial_id"] for r in children]
    assert len(trial_ids) == len(set(trial_ids)) == 6
    assert all(r.info.status == "FINISHED" for r in children)
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc_mean")]
        assert sorted(steps) == [1, 2, 3], (run.data.tags["trial_id"], steps)
