"""``python -m search run``: exit codes, and a search killed with SIGKILL or interrupted with
Ctrl-C, then resumed; SIGTERM before Ray starts (and in ``search train``).

These tests run the CLI in child processes that start (and own) their Ray instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

import search._ray
from search.__main__ import main
from search._shell import python_path, search_command
from search.driver import RunDirectoryHold, RunLocation, SearchInputError
from search.driver._state import KEPT_DIR

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


def test_a_storage_folder_the_file_system_refuses_exits_2_before_starting_ray(no_ray, tmp_path: Path, capsys):
    # /proc takes no new folder, whatever the permissions say (as root, os.access says yes)
    storage = Path("/proc/losstune-no-such-folder/runs")
    assert main(["run", str(SPACE), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert "error: --storage: a directory this user can write, but got /proc/losstune-no-such-folder/runs" in err
    assert "Traceback" not in err


def test_resume_without_a_search_exits_2(no_ray, tmp_path: Path, capsys):
    assert main(["run", str(SPACE), "--resume", "--storage", str(tmp_path / "runs")]) == 2
    assert "--resume needs an unfinished search" in capsys.readouterr().err


def test_a_warm_start_from_no_such_search_exits_2_before_starting_ray(no_ray, tmp_path: Path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # an empty store
    code = main(["run", str(SPACE), "--warm-start", "nope", "--storage", str(tmp_path / "runs"), "--tracking-uri", uri])
    assert code == 2
    err = capsys.readouterr().err
    assert "--warm-start must name an earlier search" in err and "Traceback" not in err


def test_a_sqlite_store_mlflow_cannot_open_exits_2_naming_it(monkeypatch, tmp_path: Path, capsys):
    class NoRay:  # the store is checked once Ray started, beside which it opened
        dashboard_url = None

        def close(self) -> None:
            pass

    monkeypatch.setattr(search._ray, "connect", lambda **kwargs: NoRay())
    store = tmp_path / "mlflow.db"
    store.write_text("not a database")
    code = main(["run", str(SPACE), "--storage", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{store}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {store}: an MLflow store this MLflow can open, but got DatabaseError" in err, err
    assert "Traceback" not in err and store.read_text() == "not a database"


def _cli(space: Path, tmp_path: Path, uri: str, *extra: str) -> list[str]:
    storage = str(tmp_path / "runs")
    return [sys.executable, "-m", "search", "run", str(space), "--storage", storage, "--tracking-uri", uri, *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Searches:
    """``search run`` in child processes, each in a process group of its own (a driver and the Ray
    it starts), registered with the run's ``process_groups`` until the group is gone."""

    def __init__(self, groups) -> None:
        self.groups = groups
        self.started: list[subprocess.Popen] = []

    def start(self, command: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            command, cwd=REPO, env={**_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.groups.add(process.pid, " ".join(command))
        self.started.append(process)
        return process

    def lines(self, process: subprocess.Popen, *, timeout: float = 180) -> Iterator[str]:
        """The output lines; a driver still running after ``timeout`` s is killed (the test then fails)."""
        watchdog = threading.Timer(timeout, self.kill, (process,))
        watchdog.start()
        try:
            yield from process.stdout
        finally:
            watchdog.cancel()

    def run(self, command: list[str], *, timeout: float = 240, env: dict[str, str] | None = None) -> tuple[int, str]:
        """(exit status, output) of a whole run (``env``: more environment)."""
        process = self.start(command, env=env)
        output = "".join(self.lines(process, timeout=timeout))
        code = process.wait(timeout=60)
        self.kill(process)  # whatever it left behind
        return code, output

    def run_and_kill(self, command: list[str], *, after: str) -> str:
        """Run until a line contains ``after``, then SIGKILL the driver and everything it started."""
        process = self.start(command)
        lines = []
        for line in self.lines(process):
            lines.append(line)
            if after in line:
                break
        self.kill(process)
        output = "".join(lines)
        assert after in output, output
        assert process.returncode == -signal.SIGKILL
        return output

    def kill(self, process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.groups.remove(process.pid)

    def close(self) -> None:
        for process in self.started:
            self.kill(process)
            process.stdout.close()


@pytest.fixture
def searches(process_groups) -> Iterator[Searches]:
    started = Searches(process_groups)
    yield started
    started.close()


def test_an_mlflow_server_that_refuses_the_search_is_one_line_and_exit_2(tmp_path: Path, searches):
    # before: a traceback ending in "MlflowException: ... failed with error code 401", exit 1
    import http.server

    class Refusing(http.server.BaseHTTPRequestHandler):
        def _answer(self):  # /health answers (the check before Ray starts); the API refuses
            status = 200 if self.path.startswith("/health") else 401
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}" if status == 200 else b'{"error_code": "UNAUTHENTICATED", "message": "no"}')

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://alice:s3cretPW@127.0.0.1:{server.server_address[1]}"
        code, output = searches.run(_cli(SPACE, tmp_path, uri, "--num-cpus", "2"), timeout=180)
    finally:
        server.shutdown()
    assert code == 2, output
    assert f"error: MLflow at http://alice:***@127.0.0.1:{server.server_address[1]} must accept the search's runs, " \
           "but refused: " in output
    assert "Traceback" not in output and "s3cretPW" not in output


def test_a_search_killed_twice_with_sigkill_resumes_to_exactly_num_samples_trials(tmp_path: Path, searches):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    command = _cli(SPACE, tmp_path, uri, "--num-cpus", "2")

    # Killed once a trial finished, then again, resumed, once the next trial finished.
    searches.run_and_kill(command, after=" done after ")
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    assert any(r.info.status == "RUNNING" for r in client.search_runs([experiment.experiment_id]))
    output = searches.run_and_kill(command, after=" done after ")
    assert "Resuming unfinished search 'tiny'" in output
    # A kill while Tune copies its state into the run directory leaves a file cut off; make sure
    # this run meets that case (the copy losstune keeps must put it back).
    run_dir = tmp_path / "runs" / "tiny"
    searcher_state = max(run_dir.glob("search_gen_state-*.json"), key=lambda p: p.stat().st_mtime)  # the newest
    searcher_state.write_bytes(b"")

    # The same command again finds the unfinished search and resumes it.
    code, output = searches.run(command)
    assert code == 0, output
    assert "it was put back from losstune's copy" in output
    assert "Resuming unfinished search 'tiny'" in output
    assert "trials: 6 finished" in output, output[-4000:]
    # The resumed runs added no TensorBoard logger, and kept no checkpoint Tune replaced.
    assert not list(run_dir.glob("trial_*/events.out.tfevents*"))
    assert not list(run_dir.glob(f"trial_*/{KEPT_DIR}"))

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
    code, output = searches.run(command, timeout=120)
    assert code == 2 and "already finished" in output
    # ... and an invalid option is named first (before: the finished search hid it until --name)
    code, output = searches.run([*command, "--tracking-uri", "file:///nowhere"], timeout=120)
    assert code == 2 and "but got 'file:///nowhere'" in output and "already finished" not in output, output


def test_a_search_killed_with_paused_trials_resumes_them_without_losing_or_repeating_epochs(
    tmp_path: Path, searches
):
    # ASHA with promotions, one trial at a time, a rung at epoch 1 of 3: killed once a paused
    # trial was promoted (so others are paused), then resumed to the end.
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE.read_text().replace("scheduler: none", "scheduler: asha_promotions")
                     .replace("max_concurrent: 2", "max_concurrent: 1"))
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    command = _cli(space, tmp_path, uri, "--num-cpus", "2")
    searches.run_and_kill(command, after=" resumes after epoch 1")

    code, output = searches.run(command)
    assert code == 0, output
    assert "Resuming unfinished search 'tiny'" in output
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    everything = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    children = [r for r in everything if r.data.tags["losstune.role"] == "trial"
                and r.data.tags.get("losstune.state") != "discarded"]
    trial_ids = [r.data.tags["losstune.trial_id"] for r in children]
    assert len(trial_ids) == len(set(trial_ids)) == 6
    states = sorted(r.data.tags["losstune.state"] for r in children)
    assert all(r.info.status == "FINISHED" for r in children) and "stopped_early" in states, states
    rung: dict[str, tuple[int, float]] = {}  # trial: (when its epoch 1 was logged, its value)
    past_rung: dict[str, int] = {}  # trial: when its epoch 2 was logged
    for run in children:  # every epoch once, from the first on
        history = client.get_metric_history(run.info.run_id, "val/acc_mean")
        steps = [m.step for m in history]
        assert steps and sorted(steps) == list(range(1, max(steps) + 1)), steps
        rung.update({run.info.run_id: (m.timestamp, m.value) for m in history if m.step == 1})
        past_rung.update({run.info.run_id: m.timestamp for m in history if m.step == 2})
    # ASHA's rule held across the kill (the rungs were saved with Tune's state): a trial trained
    # past the rung only as one of the top third of the trials that had reached it by then. Tune
    # alone would restart every paused trial on resume, and each would train on.
    assert past_rung
    for run_id, when in past_rung.items():
        reached = [value for logged, value in rung.values() if logged < when]
        better = sum(value > rung[run_id][1] for value in reached)
        assert better < len(reached) // 3, (run_id, rung, past_rung)
    finished, stopped = states.count("finished"), states.count("stopped_early")
    assert f"trials: {finished} finished, {stopped} stopped" in output, output[-3000:]
    # Tune's own state ends every trial too: the same command refuses a finished search.
    code, output = searches.run(command, timeout=120)
    assert code == 2 and "already finished" in output


def test_ctrl_c_interrupts_a_search_and_the_same_command_resumes_it(tmp_path: Path, searches):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    command = _cli(SPACE, tmp_path, uri, "--num-cpus", "2")

    first = searches.start(command)
    lines = []
    interrupted = False
    for line in searches.lines(first):
        lines.append(line)
        if " epoch 1/3 " in line and not interrupted:
            # Ctrl-C in a terminal: SIGINT to the whole foreground process group, once.
            os.killpg(first.pid, signal.SIGINT)
            interrupted = True
        if line.startswith("Resume it with:"):
            break
    first.wait(timeout=60)
    searches.kill(first)  # whatever Ray left behind
    output = "".join(lines)
    assert first.returncode == 130, output
    storage = tmp_path / "runs"
    assert f"Resume it with: {search_command()} run {SPACE} --resume --storage {storage} --num-cpus 2\n" in output, output
    # At --verbose 0 Tune prints nothing of its own: no banner, no TensorBoard hint, no restore
    # hint beside ours; nor Ray its token banner, nor a worker its exit traceback.
    assert "Configuration for experiment" not in output and "TensorBoard" not in output, output
    # Nor Ray's ids of job, worker and node after its lines (Tune's warning at Ctrl-C).
    for noise in ("Tuner.restore", "Token authentication", "Traceback", "SystemExit", "Creating initial MLflow",
                  "job_id=", "worker_id="):
        assert noise not in output, output

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
    code, output = searches.run(command)
    assert code == 0, output
    assert "Resuming unfinished search 'tiny'" in output and "trials: 6 finished" in output, output[-4000:]
    assert "Configuration for experiment" not in output, output
    for noise in ("Failed to fetch metrics", "UserWarning", "Token authentication", "Traceback"):
        assert noise not in output, output
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


def test_a_second_run_of_a_running_search_exits_2_and_a_killed_one_holds_nothing(
    tmp_path: Path, searches, no_ray, capsys
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = searches.start(_cli(SPACE, tmp_path, uri, "--num-cpus", "2"))
    for line in searches.lines(first):
        if " epoch 1/3 " in line:
            break
    # the same command in a second terminal: it would run the search's trials a second time
    assert main(["run", str(SPACE), "--storage", str(tmp_path / "runs"), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert f"one `search run` at a time per search, but got another running the one in {tmp_path / 'runs' / 'tiny'}" in err
    assert f"(process {first.pid} on " in err and "Traceback" not in err
    searches.kill(first)
    hold = RunDirectoryHold(RunLocation(str(tmp_path / "runs"), "tiny"))
    hold.take(make=False)  # released by the kernel
    hold.release()


def test_a_holder_that_cannot_write_the_lock_file_holds_it_and_is_not_named_as_an_earlier_one(tmp_path: Path):
    # a storage folder a team shares: the lock file is another user's, so it is opened read-only
    # (root takes the part of that user by giving up its right to write any file: setpriv)
    location = RunLocation(str(tmp_path / "runs"), "tiny")
    earlier = RunDirectoryHold(location)
    earlier.take(make=True)  # an earlier search, ended: it named itself in the file
    earlier.release()
    lock_file = tmp_path / "runs" / ".tiny.lock"
    lock_file.chmod(0o444)
    as_another_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    holder = subprocess.Popen(
        [*as_another_user, sys.executable, "-c",
         "import sys; from search.driver import RunDirectoryHold, RunLocation;"
         f"RunDirectoryHold(RunLocation({str(tmp_path / 'runs')!r}, 'tiny')).take(make=False);"
         "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SearchInputError) as error:
            RunDirectoryHold(location).take(make=False)
        assert "(another process)" in str(error.value)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    hold = RunDirectoryHold(location)
    hold.take(make=False)
    hold.release()


def test_sigterm_to_a_running_search_stops_it_as_ctrl_c_does(tmp_path: Path, searches):
    # as `search stop` and cluster managers stop a search: SIGTERM to the driver only, once Ray
    # started (ray.init installs a handler of its own that exits at once)
    process = searches.start(_cli(SPACE, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", "--num-cpus", "2"))
    lines = []
    sent = False
    for line in searches.lines(process):
        lines.append(line)
        if " epoch 1/3 " in line and not sent:
            process.send_signal(signal.SIGTERM)
            sent = True
    output = "".join(lines)
    assert process.wait(timeout=60) == 130, output
    assert f"Resume it with: {search_command()} run" in output and "Traceback" not in output, output


def test_sigterm_while_ray_starts_exits_as_interrupted(monkeypatch, tmp_path: Path, capsys):
    def ray_init_got_sigterm(**kwargs):
        raise SystemExit(signal.SIGTERM)  # what ray.init's own handler raises while Ray starts

    monkeypatch.setattr(search._ray, "connect", ray_init_got_sigterm)
    assert main(["run", str(SPACE), "--storage", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "train"])
def test_sigterm_while_the_data_set_is_generated_exits_130_and_leaves_no_unfinished_directory(
    command: str, tmp_path: Path, searches
):
    # `search stop` and cluster managers send SIGTERM; before Ray starts (or the trial trains),
    # the default VIMH data set may still be generating into a hidden directory beside its target
    target = tmp_path / "data" / "vimh-default"
    space = tmp_path / "vimh.yaml"
    space.write_text((REPO / "spaces" / "vimh.yaml").read_text().replace("path: data/vimh-default", f"path: {target}"))
    argv = _cli(space, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    process = searches.start(argv if command == "run" else [sys.executable, "-m", "search", "train", str(space)])
    lines = []
    sent = False
    for line in searches.lines(process, timeout=120):
        lines.append(line)
        if "preparing data set vimh: " in line and not line.rstrip().endswith(" 0/5000") and not sent:
            assert list(target.parent.glob(".vimh-default-*")), "".join(lines)  # generation under way
            process.send_signal(signal.SIGTERM)
            sent = True
    output = "".join(lines)
    assert process.wait(timeout=60) == 130, output
    assert "interrupted" in output and "Traceback" not in output, output
    assert sorted(p.name for p in target.parent.iterdir()) == [], output


DIVERGING = """\
name: diverging
data: {kind: digits, val_fraction: 0.2, limit: 300, labels: measured}
model: {kind: mlp, hidden: 16}
train: {epochs: 2, batch_size: 64, lr: {grid: [0.02, 1.0e30]}}
objective: {metric: val/acc_mean, mode: max}
search: {sampler: grid, scheduler: none, max_concurrent: 2, max_failures: 2}
resources: {cpu: 1}
"""


def test_a_diverging_trial_prints_one_line_is_not_retried_and_keeps_its_traceback(tmp_path: Path, searches):
    space = tmp_path / "diverging.yaml"
    space.write_text(DIVERGING)
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    code, output = searches.run(_cli(space, tmp_path, uri, "--num-cpus", "2"))
    assert code == 0, output
    failed = [line for line in output.splitlines() if "TrainingDiverged" in line]
    # One line while it runs, one in the summary's list of failed trials; no traceback, no retry.
    assert len(failed) == 2, output
    assert "FAILED: TrainingDiverged: " in failed[0] and "(not retried: it would fail the same way)" in failed[0]
    for noise in ("Traceback", "retry", "Trial task failed", "Token authentication", "Trials did not complete"):
        assert noise not in output, output
    traceback_file = Path(failed[0].split("full traceback: ")[1].split("  (")[0])
    assert "Traceback (most recent call last)" in traceback_file.read_text()
    assert traceback_file.is_relative_to(tmp_path / "runs" / "diverging")


def test_a_local_search_whose_trial_fits_no_node_exits_2_at_once(tmp_path: Path, searches):
    # A local instance never grows: no autoscaler to wait for, even on a cluster's head.
    space = tmp_path / "greedy.yaml"
    space.write_text(SPACE.read_text().replace("resources: {cpu: 1}", "resources: {cpu: 1, gpu: 1}"))
    home = tmp_path / "home"  # as on the head of a `ray up` cluster, whose node types have GPUs
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text(json.dumps({
        "max_workers": 1, "available_node_types": {"gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 1}}}))
    started = time.monotonic()
    code, output = searches.run(_cli(space, tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", "--num-cpus", "2"),
                                env={"HOME": str(home)})  # fmt: skip
    assert code == 2, output
    assert "must fit on one node of the Ray cluster, but got nodes with 2 CPU + 0 GPU" in output, output
    assert f"error: {space}: resources of a trial (resources.cpu: 1, resources.gpu: 1)" in output  # before: no file
    assert "node types" not in output and "Traceback" not in output
    assert time.monotonic() - started < 60


def test_the_dashboard_starts_on_loopback_and_answers_during_the_search(tmp_path: Path, searches):
    space = tmp_path / "dash.yaml"
    space.write_text(DIVERGING.replace("diverging", "dash").replace("1.0e30", "0.03").replace("epochs: 2", "epochs: 4"))
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    process = searches.start(_cli(space, tmp_path, uri, "--num-cpus", "2", "--dashboard"))
    answered = None
    lines = []
    for line in searches.lines(process, timeout=240):
        lines.append(line)
        if line.startswith("Ray dashboard: ") and answered is None:
            url = line.split(": ", 1)[1].strip()
            assert url.startswith("http://127.0.0.1:"), line
            with urllib.request.urlopen(url, timeout=30) as response:
                answered = response.status
    assert process.wait(timeout=60) == 0, "".join(lines)
    assert answered == 200, "".join(lines)
    assert "aiohttp_cors" not in "".join(lines)


def test_dashboard_without_its_packages_exits_2_before_ray_starts(no_ray, monkeypatch, tmp_path: Path, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "aiohttp_cors" else real(name, *a))
    assert main(["run", str(SPACE), "--dashboard", "--storage", str(tmp_path / "runs")]) == 2
    # the install command runs this environment's pip: a bare `pip install` reached the shell's
    assert f"--dashboard needs Ray's dashboard packages (`{python_path()} -m pip install -e '.[cluster]'`" \
        in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--num-cpus", "2"], ["--dashboard"]])
def test_a_local_instance_s_option_with_a_cluster_to_join_exits_2_before_ray_starts(no_ray, tmp_path: Path, capsys,
                                                                                     option):
    # before: ignored without a word (ray.init joins a cluster with the cluster's CPUs and dashboard)
    assert main(["run", str(SPACE), "--address", "10.0.0.5:6379", *option, "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"error: {option[0]}: an option of a local Ray instance, but got a cluster to join (10.0.0.5:6379" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", ["--storage", "--address", "--tracking-uri"])
def test_an_empty_option_value_exits_2(tmp_path: Path, capsys, option):
    # before: an empty --storage put the run directory in the current folder, an empty --address
    # started a local Ray, an empty --tracking-uri logged to the default store
    assert main(["run", str(SPACE), option, ""]) == 2
    assert "a non-empty value, but got ''" in capsys.readouterr().err
