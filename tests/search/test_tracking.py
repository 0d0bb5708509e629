"""search.tracking against a real MLflow store (SQLite in tmp_path); no Ray."""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from search import tracking
from search.tracking import SearchTracker, TrackingSettings

CONFIG = {"heads.pitch.loss": "ordinal", "heads.pitch.ordinal.alpha": 0.1, "heads.vel.loss": "ce", "train.lr": 0.01}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One store for the module (creating a SQLite store takes seconds); tests use their own search ids.
    return tmp_path_factory.mktemp("store") / "mlflow" / "mlflow.db"


@pytest.fixture
def uri(store: Path) -> str:
    return f"sqlite:///{store}"


@pytest.fixture
def settings(uri: str, request: pytest.FixtureRequest):
    """settings(mode=..., search_id=...): tracking settings of a search of this test's own."""

    def make(*, mode: str = "max", search_id: str = "") -> TrackingSettings:
        return TrackingSettings(
            tracking_uri=uri,
            experiment="exp",
            search_id=search_id or request.node.name,
            search_name="s",
            objective_metric="val/acc_mean",
            objective_mode=mode,
        )

    return make


def _children(client: MlflowClient, tracker: SearchTracker) -> list:
    query = f"tags.`losstune.search_id` = '{tracker.settings.search_id}' and tags.`losstune.role` = 'trial'"
    return client.search_runs([tracker.experiment_id], filter_string=query)


def test_tracking_uri_precedence_is_cli_env_space_default():
    env = {"MLFLOW_TRACKING_URI": "sqlite:///env.db"}
    assert tracking.resolve_tracking_uri(cli="http://cli", space="sqlite:///s.db", environ=env) == "http://cli"
    assert tracking.resolve_tracking_uri(cli=None, space="sqlite:///s.db", environ=env) == "sqlite:///env.db"
    assert tracking.resolve_tracking_uri(cli=None, space="sqlite:///s.db", environ={}) == "sqlite:///s.db"
    default = tracking.resolve_tracking_uri(cli=None, space=None, environ={})
    assert default == tracking.default_tracking_uri()
    # The repository has an mlflow/ folder, so the default store lives there.
    repo = Path(tracking.__file__).resolve().parents[2]  # search/tracking/__init__.py
    assert default == f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"


def test_artifacts_live_next_to_a_sqlite_store(uri: str, settings, store: Path):
    assert tracking.artifact_location(uri) == (store.parent / "artifacts").as_uri()
    assert tracking.artifact_location("http://127.0.0.1:5000") is None
    tracker = SearchTracker(settings())
    experiment = tracker.client.get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == (store.parent / "artifacts").as_uri()


def test_child_run_has_params_tags_and_parent(settings):
    tracker = SearchTracker(settings())
    parent = tracker.start_search(params={"search.num_samples": 4}, artifacts={"space.yaml": "name: s\n"})
    run_id = tracker.trial_started("t1", CONFIG)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["loss.pitch"] == "ordinal" and run.data.tags["loss.vel"] == "ce"
    assert run.data.tags["trial_id"] == "t1" and run.data.tags["losstune.trial_id"] == "t1"
    assert run.data.params == {k: str(v) for k, v in CONFIG.items()}
    assert [a.path for a in tracker.client.list_artifacts(parent)] == ["space.yaml"]
    # what MLflow's own start_run sets (before: empty User and Source columns), and a description
    import getpass

    parent_run = tracker.client.get_run(parent)
    for tags in (run.data.tags, parent_run.data.tags):
        assert tags["mlflow.user"] == getpass.getuser() and tags["mlflow.source.type"] == "LOCAL"
    assert parent_run.data.tags["mlflow.note.content"] == f"losstune search {tracker.settings.search_id}"


def test_each_epoch_logs_the_other_objectives_at_the_trial_s_best_epoch_also_after_a_restart(settings):
    # before: a stopped or finished trial's latest val/energy was its last epoch's, while its
    # best/val/acc_mean was its best epoch's: MLflow's columns put it off the report's Pareto set
    import dataclasses

    two = dataclasses.replace(settings(), other_objectives=("val/energy",))
    first = SearchTracker(two)
    first.start_search(params={}, artifacts={})
    run_id = first.trial_started("t1", CONFIG)
    epochs = [(1, 0.3, 1, 0.9), (2, 0.5, 2, 0.7), (3, 0.4, 2, 0.2)]  # epoch, acc, best epoch so far, energy
    for epoch, acc, best, energy in epochs:
        first.log_epoch("t1", {"epoch": epoch, "val/acc_mean": acc, "best/epoch": best, "val/energy": energy},
                        epoch=epoch)
    first.flush()
    history = {m.step: m.value for m in first.client.get_metric_history(run_id, "best/val/energy")}
    assert history == {1: 0.9, 2: 0.7, 3: 0.7}
    # a driver started again knows no values of its own: epoch 2's come from the store
    again = SearchTracker(two)
    again.log_epoch("t1", {"epoch": 4, "val/acc_mean": 0.45, "best/epoch": 2, "val/energy": 0.1}, epoch=4)
    again.flush()
    assert {m.step: m.value for m in again.client.get_metric_history(run_id, "best/val/energy")}[4] == 0.7
    # one objective: nothing more than the trial reported
    single = SearchTracker(settings(search_id="single"))
    single.start_search(params={}, artifacts={})
    single_run = single.trial_started("t1", CONFIG)
    single.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.3, "best/epoch": 1, "val/energy": 0.9}, epoch=1)
    single.flush()
    assert not any(k.startswith("best/val/energy") for k in single.client.get_run(single_run).data.metrics)


def test_a_resumed_tracker_reuses_runs_and_skips_logged_epochs(uri: str, settings):
    first = SearchTracker(settings())
    first.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
    run_id = first.trial_started("t1", CONFIG)
    for epoch in (1, 2):
        assert first.log_epoch("t1", {"epoch": epoch, "val/acc_mean": 0.1 * epoch}, epoch=epoch)

    # A new process (the driver after a crash): everything is read back from the store.
    second = SearchTracker(settings())
    second.start_search(params={}, artifacts={})
    assert second.parent_id == first.parent_id
    assert second.trial_started("t1", CONFIG) == run_id
    # The trial restarted from its epoch-1 checkpoint: epoch 2 comes again and must not be logged twice.
    assert not second.log_epoch("t1", {"epoch": 2, "val/acc_mean": 0.25}, epoch=2)
    assert second.log_epoch("t1", {"epoch": 3, "val/acc_mean": 0.3}, epoch=3)
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(run_id, "val/acc_mean")]
    assert sorted(steps) == [1, 2, 3]
    assert len(_children(client, second)) == 1
    query = f"tags.`losstune.search_id` = '{second.settings.search_id}' and tags.`losstune.role` = 'search'"
    assert len(client.search_runs([second.experiment_id], filter_string=query)) == 1


def test_final_metrics_are_logged_once(settings):
    tracker = SearchTracker(settings())
    run_id = tracker.trial_started("t1", CONFIG)
    assert tracker.log_final("t1", {"test/acc_mean": 0.5, "best_epoch": 2}, epoch=3)
    assert SearchTracker(settings()).final_logged("t1")
    assert not SearchTracker(settings()).log_final("t1", {"test/acc_mean": 0.6, "best_epoch": 2}, epoch=3)
    assert [m.value for m in tracker.client.get_metric_history(run_id, "test/acc_mean")] == [0.5]


@pytest.mark.parametrize(("mode", "values", "logged"), [("max", [0.2, 0.1, 0.3], [0.2, 0.3]), ("min", [0.2, 0.1, 0.3], [0.2, 0.1])])
def test_parent_logs_the_best_objective_only_when_it_improves(settings, mode: str, values: list, logged: list):
    tracker = SearchTracker(settings(mode=mode))
    for value in values:
        tracker.update_best(value)
    assert not tracker.update_best(float("nan"))
    history = tracker.client.get_metric_history(tracker.parent_id, tracker.best_metric)
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == logged
    # After a resume the best so far is known: a worse value is not logged.
    resumed = SearchTracker(settings(mode=mode))
    assert not resumed.update_best(values[0])
    assert resumed.update_best(logged[-1] + (1 if mode == "max" else -1))
    # the same value rounded another way is no improvement (before: a second point at 49/135)
    best = logged[-1] + (1 if mode == "max" else -1)
    assert not resumed.update_best(math.nextafter(best, math.inf if mode == "max" else -math.inf))


def test_trial_end_states_statuses_and_error_tag(settings):
    tracker = SearchTracker(settings())
    ids = {t: tracker.trial_started(t, CONFIG) for t in ("ok", "stopped", "bad", "cut")}
    tracker.trial_ended("ok", state="finished", reason="completed")
    tracker.trial_ended("stopped", state="stopped_early", reason="stopped early by the scheduler")
    tracker.trial_ended("bad", state="failed", reason="error", error="TrainingDiverged: nan", details="Traceback ...")
    tracker.trial_ended("cut", state="interrupted", reason="the search was interrupted")
    runs = {t: tracker.client.get_run(i) for t, i in ids.items()}
    # Stopping early is a normal end (no red cross in the UI); only interrupted runs are KILLED.
    assert {t: r.info.status for t, r in runs.items()} == {
        "ok": "FINISHED",
        "stopped": "FINISHED",
        "bad": "FAILED",
        "cut": "KILLED",
    }
    assert {t: r.data.tags["losstune.state"] for t, r in runs.items()} == {
        "ok": "finished",
        "stopped": "stopped_early",
        "bad": "failed",
        "cut": "interrupted",
    }
    assert runs["bad"].data.tags["losstune.error"] == "TrainingDiverged: nan"
    assert [a.path for a in tracker.client.list_artifacts(ids["bad"])] == ["error.txt"]
    # A retried trial reopens its run.
    tracker.trial_started("bad", CONFIG)
    assert tracker.client.get_run(ids["bad"]).info.status == "RUNNING"


def test_reconcile_never_deletes_it_ends_lost_trials_runs_killed_and_discarded(settings):
    tracker = SearchTracker(settings())
    for trial_id in ("kept", "lost"):
        tracker.trial_started(trial_id, CONFIG)
    assert tracker.reconcile({"kept"}) == ["lost"]
    runs = {r.data.tags["losstune.trial_id"]: r for r in _children(tracker.client, tracker)}
    assert set(runs) == {"kept", "lost"}
    assert all(r.info.lifecycle_stage == "active" for r in runs.values())
    lost = runs["lost"]
    assert lost.info.status == "KILLED" and lost.data.tags["losstune.state"] == "discarded"
    assert "crashed before Ray Tune saved this trial" in lost.data.tags["losstune.end_reason"]
    assert runs["kept"].info.status == "RUNNING"
    # A resumed tracker does not count the discarded run among the search's trials.
    resumed = SearchTracker(settings())
    assert resumed.open_trial_runs() == {"kept": True}
    assert resumed.reconcile({"kept"}) == []


def test_a_new_search_id_for_every_search(settings):
    ids = {tracking.make_search_id("s") for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("s-") for i in ids)


def test_searches_do_not_see_each_others_runs(settings):
    a, b = SearchTracker(settings(search_id="iso-a")), SearchTracker(settings(search_id="iso-b"))
    a.trial_started("t1", CONFIG)
    b.trial_started("t1", CONFIG)
    assert a.parent_id != b.parent_id
    assert a.trial_run_id("t1") != b.trial_run_id("t1")


def test_tracker_pickles_without_its_client(settings):
    tracker = SearchTracker(settings())
    tracker.trial_started("t1", CONFIG)
    copy = pickle.loads(pickle.dumps(tracker))
    assert copy.settings == tracker.settings
    assert copy._client is None
    assert copy.trial_run_id("t1") == tracker.trial_run_id("t1")


def _raised_while_handling(error: BaseException, wrapper: BaseException) -> BaseException:
    try:
        try:
            raise error
        except type(error):
            raise wrapper  # noqa: B904 - MLflow's REST client raises its own exception this way
    except type(wrapper) as caught:
        return caught


def test_transient_errors_are_told_by_their_cause_and_code_not_their_text():
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    refused = _raised_while_handling(ConnectionRefusedError(111, "refused"), MlflowException("any text at all"))
    assert tracking.is_transient(refused)
    assert tracking.is_transient(TimeoutError("socket timed out"))
    assert tracking.is_transient(MlflowException("proxy page", error_code=TEMPORARILY_UNAVAILABLE))
    assert tracking.is_transient(RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}))
    # Answers that would be the same on a retry.
    assert not tracking.is_transient(MlflowException("API request to x failed", error_code=INVALID_PARAMETER_VALUE))
    assert not tracking.is_transient(RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}))
    assert not tracking.is_transient(ValueError("a bug"))


def test_a_sqlite_stores_errors_are_retried_only_when_a_retry_may_pass(tmp_path: Path):
    # MLflow raises each SQLite error as TEMPORARILY_UNAVAILABLE: the SQLite error behind it decides
    import sqlite3

    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    def as_mlflow_raises(error: sqlite3.Error) -> MlflowException:
        wrapped = sqlalchemy.exc.OperationalError("SELECT ...", {}, error)
        return _raised_while_handling(wrapped, MlflowException(str(wrapped), error_code=TEMPORARILY_UNAVAILABLE))

    db = tmp_path / "store.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)")
    db.chmod(0o444)
    readonly = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as no_table:  # what every try meets
        readonly.execute("SELECT * FROM missing")
    with pytest.raises(sqlite3.OperationalError) as read_only:
        readonly.execute("INSERT INTO t VALUES (1)")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError) as busy:  # another process writing
        sqlite3.connect(db, timeout=0).execute("SELECT * FROM t")
    holder.execute("ROLLBACK")
    assert tracking.is_transient(as_mlflow_raises(busy.value))
    assert not tracking.is_transient(as_mlflow_raises(no_table.value))
    assert not tracking.is_transient(as_mlflow_raises(read_only.value))


def test_a_store_opened_in_the_background_is_ready_for_the_search_and_leaves_errors_to_it(tmp_path: Path):
    db = tmp_path / "new" / "mlflow.db"  # neither the folder nor the store exists yet
    opening = tracking.open_store_in_background(f"sqlite:///{db}")
    opening.join(timeout=120)
    assert not opening.is_alive() and db.is_file()
    assert MlflowClient(f"sqlite:///{db}").get_experiment_by_name("Default") is not None  # schema created

    # A server gets no request (one that went away would be retried for minutes); nothing raised.
    unreachable = tracking.open_store_in_background("http://127.0.0.1:9")  # nothing listens on port 9
    unreachable.join(timeout=5)
    assert not unreachable.is_alive() and unreachable.error is None
    (tmp_path / "a-file").write_text("not a folder")
    broken = tracking.open_store_in_background(f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}")
    broken.join(timeout=120)
    assert not broken.is_alive() and isinstance(broken.error, tracking.StoreError)
    assert broken.error.path == tmp_path / "a-file" / "mlflow.db" and "FileExistsError" in broken.error.reason


# Opens a new SQLite store through the search's client, but stalls (until killed) once MLflow
# created its first tables and before it migrates them to the current schema.
_STALLED_CREATOR = """
import sys, time
import mlflow.store.db.utils as db_utils
from search.tracking._buffer import mlflow_client

def stall(engine):
    print("migrating", flush=True)
    time.sleep(600)

db_utils._upgrade_db = stall
mlflow_client(sys.argv[1]).search_experiments(max_results=1)
"""


def test_a_process_killed_while_it_creates_a_sqlite_store_leaves_none_and_the_next_creates_it(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    creator = subprocess.Popen([sys.executable, "-c", _STALLED_CREATOR, f"sqlite:///{db}"], stdout=subprocess.PIPE,
                               text=True)  # fmt: skip
    with creator:
        try:
            assert creator.stdout.readline().strip() == "migrating"
            assert not db.exists()  # a half-made store is never where MLflow looks for one
            assert [p.name.startswith(".mlflow.db.new-") for p in tmp_path.iterdir()] == [True]
            creator.send_signal(signal.SIGKILL)
            creator.wait(timeout=30)
        finally:
            creator.kill()
    client = tracking._buffer.mlflow_client(f"sqlite:///{db}")
    assert client.get_experiment_by_name("Default") is not None  # complete: the current schema
    (left,) = tmp_path.glob(".mlflow.db.new-*")  # kept while it may be a live creator's elsewhere
    os.utime(left, (time.time() - 700, time.time() - 700))
    tracking._buffer.mlflow_client(f"sqlite:///{db}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # an abandoned one is removed


def test_only_what_a_creator_that_has_gone_left_long_ago_is_removed(tmp_path: Path):
    import socket

    prefix = f".mlflow.db.new-{socket.gethostname()}-"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 700
    files = {
        "gone, long ago": (tmp_path / f"{prefix}{dead.pid}-0a1b2c3d", old),
        "gone, its journal": (tmp_path / f"{prefix}{dead.pid}-0a1b2c3d-journal", old),
        "gone, just now": (tmp_path / f"{prefix}{dead.pid}-1a1b2c3d", time.time()),
        "alive, long ago": (tmp_path / f"{prefix}{os.getpid()}-2a1b2c3d", old),
        "another host's": (tmp_path / f".mlflow.db.new-elsewhere-{dead.pid}-3a1b2c3d", old),
    }
    for path, mtime in files.values():
        path.write_bytes(b"half made")
        os.utime(path, (mtime, mtime))
    tracking.create_sqlite_store(tmp_path / "mlflow.db")
    left = {what for what, (path, _) in files.items() if path.exists()}
    assert left == {"gone, just now", "alive, long ago", "another host's"}
    assert (tmp_path / "mlflow.db").is_file()


def test_where_hard_links_are_refused_mlflow_creates_the_store_in_place(tmp_path: Path, monkeypatch):
    import errno

    def refuse(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    db = tmp_path / "mlflow.db"
    client = tracking._buffer.mlflow_client(f"sqlite:///{db}")
    assert client.get_experiment_by_name("Default") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_store_another_process_linked_first_is_kept(tmp_path: Path, monkeypatch):
    db = tmp_path / "mlflow.db"
    link = os.link

    def theirs_first(source, target):  # the other process's store lands between our check and link
        other = tmp_path / "other" / "mlflow.db"
        MlflowClient(f"sqlite:///{other}").create_experiment("theirs")
        link(other, target)
        link(source, target)  # FileExistsError, as os.link never replaces

    monkeypatch.setattr(os, "link", theirs_first)
    tracking.create_sqlite_store(db)
    assert MlflowClient(f"sqlite:///{db}").get_experiment_by_name("theirs") is not None


def test_a_new_store_takes_the_settings_mlflow_makes_its_stores_with(tmp_path: Path, monkeypatch):
    # inside `mlflow server`, a store MLflow makes puts the Default experiment's artifacts under
    # the server's artifact root; ours must be made the same way
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", "s3://bucket/artifacts")
    db = tmp_path / "mlflow.db"
    tracking.create_sqlite_store(db)
    default = MlflowClient(f"sqlite:///{db}").get_experiment("0")
    assert default.artifact_location == "s3://bucket/artifacts/0"


def test_a_sqlite_store_that_exists_is_opened_as_it_is(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    first = tracking._buffer.mlflow_client(f"sqlite:///{db}")
    experiment = first.create_experiment("kept")
    tracking.create_sqlite_store(db)  # another process's call, after the store was made
    assert tracking._buffer.mlflow_client(f"sqlite:///{db}").get_experiment(experiment).name == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_a_store_held_locked_is_an_error_that_may_pass_not_a_broken_store(tmp_path: Path, monkeypatch):
    import sqlite3

    import sqlalchemy.exc

    db = tmp_path / "mlflow.db"
    tracking._buffer.mlflow_client(f"sqlite:///{db}").search_experiments()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:  # SQLite's own error, without its wait
            sqlite3.connect(db, timeout=0).execute("SELECT * FROM sqlite_master")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # as SQLAlchemy raises it, after the wait of MLflow's engine (5 s and more)
    wrapped = sqlalchemy.exc.OperationalError("SELECT ...", {}, locked.value)

    def held(uri):
        raise wrapped

    monkeypatch.setattr(tracking._buffer, "mlflow_client", held)
    with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
        tracking.opened_client(f"sqlite:///{db}")
    assert raised.value is wrapped  # raised as it is: not a StoreError, which would call the store broken


def test_a_file_that_is_not_a_store_is_a_store_error_naming_it(tmp_path: Path):
    junk = tmp_path / "mlflow.db"
    junk.write_text("not a database")
    with pytest.raises(tracking.StoreError) as raised:
        tracking.opened_client(f"sqlite:///{junk}")
    assert raised.value.path == junk and raised.value.reason.startswith("DatabaseError: ")


def test_a_param_reads_back_as_the_value_logged_strings_that_look_like_json_included():
    # a temporal pattern "1" logged bare read back as the number 1, which the trial config refuses
    values = ["1", "1111", "1.5", "true", "null", '"quoted"', "[1]", "x", "a b", "ümlaut", "", 1, 1.5, True, None, [1, 2]]
    for value in values:
        back = tracking.param_value(tracking.param_text(value))
        assert back == (tuple(value) if isinstance(value, list) else value) and type(back) is not list, value
        assert type(back) is type(value) or isinstance(value, list), value
    assert tracking.param_text("ce") == "ce"  # what the MLflow UI shows stays plain where it can


def _finishing_plan(space, tracking_settings, uri: str, tmp_path: Path) -> Any:
    """What ``_finish`` reads of a search's plan: a search named s with its run directory."""
    from types import SimpleNamespace

    from search.driver import SearchOptions
    from search.driver._storage import RunLocation

    (tmp_path / "runs" / "s").mkdir(parents=True)
    return SimpleNamespace(space=space, name="s", search_id=tracking_settings.search_id, tracking_uri=uri,
                           location=RunLocation(str(tmp_path / "runs"), "s"), space_named=str(space.path),
                           options=SearchOptions())


def test_a_trial_still_paused_when_a_resumed_search_runs_out_of_time_ends_stopped_by_budget(
    settings, uri: str, tmp_path: Path
):
    # Interrupted with trial x paused at a rung: its run ended `interrupted`. Resumed, x stays
    # paused (never started again, so nothing reopens its run) and the budget ends the search.
    # Before, x's run stayed `interrupted`: the report left it unscored and named another best
    # trial than summary.txt.
    import dataclasses
    from types import SimpleNamespace

    from search.driver._run import _finish, _interrupted
    from search.report import load_search, open_store
    from search.space import load_space

    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "digits.yaml")
    space = dataclasses.replace(space, search=dataclasses.replace(space.search, time_budget_s=60.0))
    tracking_settings = settings()
    plan = _finishing_plan(space, tracking_settings, uri, tmp_path)
    config = {"heads.digit.loss": "ce"}

    def trial(trial_id: str, status: str, best: float, epoch: int) -> SimpleNamespace:
        return SimpleNamespace(trial_id=trial_id, status=status, config=config,
                               last_result={"epoch": epoch, "val/acc_mean": best, "best/val/acc_mean": best})

    first = SearchTracker(tracking_settings)
    first.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
    for trial_id, values in (("x", [0.8, 0.9]), ("a", [0.5, 0.6])):
        first.trial_started(trial_id, config)
        for epoch, value in enumerate(values, 1):
            first.log_epoch(trial_id, {"epoch": epoch, "val/acc_mean": value}, epoch=epoch)
    _interrupted(plan, first, [trial("x", "PAUSED", 0.9, 2), trial("a", "RUNNING", 0.6, 2)])

    resumed = SearchTracker(tracking_settings)
    resumed.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
    resumed.trial_started("a", config)
    resumed.log_epoch("a", {"epoch": 3, "val/acc_mean": 0.7}, epoch=3)
    outcome = _finish(plan, resumed, [trial("x", "TERMINATED", 0.9, 2), trial("a", "TERMINATED", 0.7, 3)],
                      histories={}, num_samples=2, out_of_time=True,
                      meta={"tracking_uri": uri, "experiment": "exp", "search_id": tracking_settings.search_id})

    record, _ = load_search(open_store(uri), tracking_uri=uri, selector=tracking_settings.search_id)
    assert {t.trial_id: t.state for t in record.trials} == {"x": "STOPPED", "a": "STOPPED"}
    assert outcome.best.trial_id == "x"  # and the report's best too (conftest: every summary.txt is compared)
    runs = {r.data.tags["losstune.trial_id"]: r for r in _children(MlflowClient(uri), resumed)}
    assert {tid: r.data.tags["losstune.state"] for tid, r in runs.items()} == {"x": "stopped_by_budget",
                                                                              "a": "stopped_by_budget"}


def test_a_failed_trial_whose_run_the_callbacks_did_not_end_keeps_its_traceback(settings, uri: str, tmp_path: Path):
    # The driver died before the callback ended the failed trial's run; the resumed search's
    # safety net ends it. Before, it ended `failed` without the error.txt the callback logs.
    from types import SimpleNamespace

    from search.driver._run import _finish
    from search.space import load_space
    from search.driver._trainable import ERROR_KEY, FAILED_KEY, TRACEBACK_KEY

    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "digits.yaml")
    tracking_settings = settings()
    plan = _finishing_plan(space, tracking_settings, uri, tmp_path)
    config = {"heads.digit.loss": "ce"}
    tracker = SearchTracker(tracking_settings)
    tracker.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
    tracker.trial_started("f", config)
    tracker.log_epoch("f", {"epoch": 1, "val/acc_mean": 0.5}, epoch=1)
    failed = SimpleNamespace(trial_id="f", status="TERMINATED", config=config, error_file=None, get_error=lambda: None,
                             last_result={"epoch": 1, "val/acc_mean": float("nan"), FAILED_KEY: 1,
                                          ERROR_KEY: "ValueError: diverged",
                                          TRACEBACK_KEY: "Traceback (most recent call last):\nValueError: diverged\n"})
    _finish(plan, tracker, [failed], histories={}, num_samples=1, out_of_time=False,
            meta={"tracking_uri": uri, "experiment": "exp", "search_id": tracking_settings.search_id})

    client = MlflowClient(uri)
    (run,) = _children(client, tracker)
    assert run.info.status == "FAILED" and run.data.tags["losstune.state"] == "failed"
    assert run.data.tags["losstune.error"] == "ValueError: diverged"
    path = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert Path(path).read_text() == "Traceback (most recent call last):\nValueError: diverged\n"


def test_a_trial_whose_config_never_reached_the_store_logs_it_when_resumed(uri: str, request: pytest.FixtureRequest):
    # The run was created, then the store went away before its params batch and the driver was
    # killed: before, the resumed search reopened the run and never logged the config.
    settings = TrackingSettings(tracking_uri=uri, experiment="exp", search_id=request.node.name, search_name="s",
                                objective_metric="val/acc_mean", objective_mode="max", retry_interval_s=0.01,
                                flush_timeout_s=0.1)
    first = SearchTracker(settings)
    first.start_search(params={}, artifacts={})

    def store_gone(*args, **kwargs):
        raise ConnectionError("server restarting")

    first.client.log_batch = store_gone
    first.trial_started("a", CONFIG)
    assert first.pending_writes == 1  # the params, never sent: the driver is killed here

    resumed = SearchTracker(settings)
    resumed.start_search(params={}, artifacts={})
    resumed.trial_started("a", CONFIG)
    resumed.flush()
    run = MlflowClient(uri).get_run(resumed.trial_run_id("a"))
    assert run.data.params == {key: str(value) for key, value in CONFIG.items()}


@pytest.mark.parametrize(("uri", "path"), [
    ("sqlite:////tmp/c#1/mlflow.db", "/tmp/c#1/mlflow.db"),  # before: /tmp/c (a fragment), a stray store there
    ("sqlite:////tmp/a%20b/mlflow.db?mode=ro", "/tmp/a b/mlflow.db"),
    ("sqlite:///relative/mlflow.db", "relative/mlflow.db"),
    ("sqlite:////tmp/%23c/%3Fq.db", "/tmp/#c/?q.db"),
])
def test_a_sqlite_stores_file_is_read_as_sqlalchemy_reads_it(uri: str, path: str):
    from sqlalchemy.engine import make_url

    assert tracking.sqlite_path(uri) == Path(path) == Path(make_url(uri).database)


def test_the_default_store_of_a_repository_whose_path_holds_url_characters(tmp_path: Path, monkeypatch):
    repo = tmp_path / "a?b#c%d e"
    (repo / "mlflow").mkdir(parents=True)
    monkeypatch.setattr(tracking._store, "_project_root", lambda: repo)
    assert tracking.sqlite_path(tracking.default_tracking_uri()) == repo / "mlflow" / "mlflow.db"


def test_the_default_store_written_unquoted_by_an_earlier_version_is_the_same_store(tmp_path: Path, monkeypatch):
    # a run directory recorded the default URI unquoted: a resume must not take it for another store
    repo = tmp_path / "my repo"
    (repo / "mlflow").mkdir(parents=True)
    monkeypatch.setattr(tracking._store, "_project_root", lambda: repo)
    recorded = f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}"
    assert recorded != tracking.default_tracking_uri() and tracking.same_store(recorded, tracking.default_tracking_uri())
    assert not tracking.same_store(recorded, f"sqlite:///{tmp_path / 'other.db'}")
    assert not tracking.same_store("http://a:5000", "http://b:5000")



@pytest.mark.parametrize(("uri", "text", "shown"), [
    # MLflow's REST client writes the whole URL it asked into its errors
    ("http://alice:s3cretPW@mlflow:5000", "API request to http://alice:s3cretPW@mlflow:5000/api/2.0/x failed",
     "API request to http://alice:***@mlflow:5000/api/2.0/x failed"),
    ("postgresql://me@db/mlflow?sslmode=require&password=pw1&x=1", "connect to ...?sslmode=require&password=pw1&x=1 failed",
     "connect to ...?sslmode=require&password=***&x=1 failed"),
    ("sqlite:///m.db", "no such table: runs", "no such table: runs"),
])
def test_an_error_s_text_loses_the_store_s_secrets(uri, text, shown):
    from search.tracking import redact_text

    assert redact_text(text, uri) == shown


def test_an_experiment_another_search_created_since_the_read_is_used(settings, monkeypatch):
    # two searches of one space at once: both read no experiment, one creates it first, and the
    # other's create was refused as RESOURCE_ALREADY_EXISTS (exit 2 on a PostgreSQL store)
    import dataclasses

    tracker = SearchTracker(dataclasses.replace(settings(), experiment="created-meanwhile"))
    name = tracker.settings.experiment
    created = MlflowClient(tracker.settings.tracking_uri).create_experiment(name)
    reads = []
    real = tracker.client.get_experiment_by_name

    def read_before_the_other_created(experiment_name):
        reads.append(experiment_name)
        return None if len(reads) == 1 else real(experiment_name)

    monkeypatch.setattr(tracker.client, "get_experiment_by_name", read_before_the_other_created)
    assert tracker.experiment_id == created and reads == [name, name]
