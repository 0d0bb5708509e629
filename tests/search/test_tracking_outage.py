"""An unreachable MLflow store: writes are buffered in order and sent when it is back.

The first test stops and restarts a real ``mlflow/serve`` during a real search (Ray Tune, two
trials); trials wait at a gate so that most of their epochs are reported while the server is down.
The others use a store that fails on demand, to pin down the buffer's rules.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import ray.cloudpickle
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from search.driver import SearchOptions, plan_search, run_search
from search.space import load_space
from search.tracking import SearchTracker, TrackingSettings

# Trials run in Ray workers, which cannot import this test module: ship its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

EPOCHS = 4
SPACE = f"""\
name: outage
data: {{kind: digits, val_fraction: 0.2, limit: 300, labels: measured}}
model: {{kind: mlp, hidden: 16, dropout: 0.0}}
train: {{epochs: {EPOCHS}, batch_size: 64, lr: 0.02, patience: 10, seed: 0}}
heads:
  digit: {{loss: {{choice: [ce, focal]}}}}
  thickness: {{loss: ce}}
  smoothness: {{loss: ce}}
objective: {{metric: val/acc_mean, mode: max}}
search: {{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 2, seed: 0}}
resources: {{cpu: 1}}
"""
TIMEOUT = 120.0


def _wait_for(what: str, condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.1)


def gated_train(gate: str) -> Any:
    """trainables.train.train that, after reporting epoch 1, waits until the server is down, and
    leaves a mark when it is done."""

    def train_fn(config: Any, *, report: Any, checkpoint_dir: str | None = None, **given: Any) -> dict:
        from trainables.train import train

        token = uuid.uuid4().hex

        def gated_report(metrics: dict) -> None:
            report(metrics)
            if metrics["epoch"] == 1:
                Path(gate, f"epoch1-{token}").touch()
                _wait_for("the server to go down", Path(gate, "down").exists)

        final = train(config, report=gated_report, checkpoint_dir=checkpoint_dir, **given)
        Path(gate, f"done-{token}").touch()
        return final

    return train_fn


def test_a_server_outage_during_a_search_loses_no_metric(tmp_path: Path, ray_session, serve, capsys):
    store = tmp_path / "mlflow"
    server = serve(store)
    gate = tmp_path / "gate"
    gate.mkdir()
    space = tmp_path / "outage.yaml"
    space.write_text(SPACE)
    plan = plan_search(
        load_space(space),
        SearchOptions(storage=str(tmp_path / "runs"), tracking_uri=server.url, train_fn=gated_train(str(gate))),
    )
    sqlite = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")  # the server's store, read directly
    restarted: list[Any] = []
    failures: list[BaseException] = []

    def outage() -> None:
        try:
            _wait_for("epoch 1 of both trials", lambda: len(list(gate.glob("epoch1-*"))) == 2)
            server.stop()
            (gate / "down").touch()
            _wait_for("both trials to end", lambda: len(list(gate.glob("done-*"))) == 2)
            time.sleep(1.0)  # the driver handles the last results while the server is down
            restarted.append(serve(store, port=server.port))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
            (gate / "down").touch()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    outcome = run_search(plan)
    thread.join(TIMEOUT)
    assert not failures, failures
    assert restarted, "the server was not restarted"
    assert outcome.exit_code == 0
    out = capsys.readouterr().out
    assert f"MLflow at {server.url} unreachable" in out and f"MLflow at {server.url} reachable again" in out
    # the server is the UI: `mlflow ui --backend-store-uri http://...` exits 1 (not a store)
    assert f"MLflow UI: {server.url}\n" in out and "mlflow ui --backend-store-uri" not in out

    experiment = sqlite.get_experiment_by_name("outage")
    runs = sqlite.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags["losstune.role"] == "trial"]
    (parent,) = [r for r in runs if r.data.tags["losstune.role"] == "search"]
    assert len(trials) == 2 and parent.info.status == "FINISHED"
    for run in trials:
        assert run.info.status == "FINISHED"
        for key in ("epoch", "val/acc_mean", "val/digit/acc", "train/loss/total"):
            history = sqlite.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), (run.info.run_name, key)
        assert {"test/acc_mean", "best_epoch"} <= set(run.data.metrics)
    assert sqlite.get_metric_history(parent.info.run_id, "search/best/val/acc_mean")
    # The artifacts logged at the end went through the restarted server's artifact proxy.
    logged = MlflowClient(restarted[0].url).list_artifacts(parent.info.run_id)
    assert {"space.yaml", "summary.txt", "best_config.yaml"} <= {a.path for a in logged}


class FlakyClient:
    """An MlflowClient whose calls fail like an unreachable server while ``down`` is set, and
    whose next ``lose_answers`` calls named in ``answers_lost_of`` reach the store but their
    answers do not (a timeout)."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.down = False
        self.refused = 0  # calls made while down
        self.answers_lost_of: set[str] = set()
        self.lose_answers = 0
        self.refusing: set[str] = set()  # calls the store answers with a refusal

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.refusing:
                raise MlflowException(f"{name} refused", error_code="INVALID_PARAMETER_VALUE")
            if name in self.answers_lost_of and self.lose_answers:
                self.lose_answers -= 1
                method(*args, **kwargs)
                raise MlflowException("API request to http://127.0.0.1:9/api failed") from TimeoutError("timed out")
            if self.down:
                self.refused += 1
                # As MLflow's REST client reports it: its own exception, raised while handling the
                # transport's error.
                try:
                    raise ConnectionRefusedError(111, "Connection refused")
                except ConnectionRefusedError:
                    raise MlflowException("API request to http://127.0.0.1:9/api failed")  # noqa: B904
            return method(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
def flaky_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One store for the module (creating a SQLite store takes seconds); tests use their own search ids.
    return f"sqlite:///{tmp_path_factory.mktemp('flaky') / 'mlflow.db'}"


@pytest.fixture
def flaky(flaky_store: str, request: pytest.FixtureRequest) -> tuple[SearchTracker, FlakyClient]:
    settings = TrackingSettings(
        tracking_uri=flaky_store,
        experiment="flaky",
        search_id=request.node.name,
        search_name="flaky",
        objective_metric="val/acc_mean",
        objective_mode="max",
        retry_interval_s=0.5,
        flush_timeout_s=2.0,
    )
    tracker = SearchTracker(settings)
    client = FlakyClient(tracker.client)
    tracker._client = client  # the seam: the tracker talks to the store only through its client
    tracker.start_search(params={}, artifacts={})
    return tracker, client


def test_writes_while_down_are_sent_in_order_when_the_store_is_back(flaky):
    tracker, client = flaky
    tracker.trial_started("t1", {"heads.a.loss": "ce"})
    tracker.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.1}, epoch=1)
    client.down = True
    tracker.log_epoch("t1", {"epoch": 2, "val/acc_mean": 0.2}, epoch=2)
    # A trial that starts during the outage gets its run once the store is back.
    assert tracker.trial_started("t2", {"heads.a.loss": "focal"}) is None
    tracker.log_epoch("t2", {"epoch": 1, "val/acc_mean": 0.3}, epoch=1)
    tracker.trial_ended("t1", state="finished", reason="completed")
    # One attempt failed; the writes since waited for the retry interval instead of trying.
    assert (tracker.pending_writes, client.refused) == (6, 1)
    time.sleep(0.6)
    tracker.update_best(0.3)  # after the interval, a write tries again: still down
    assert (tracker.pending_writes, client.refused) == (7, 2)

    client.down = False
    assert tracker.flush()
    assert tracker.pending_writes == 0
    store = client.client
    t1, t2 = tracker.trial_run_id("t1"), tracker.trial_run_id("t2")
    assert [m.step for m in store.get_metric_history(t1, "val/acc_mean")] == [1, 2]
    assert [m.value for m in store.get_metric_history(t2, "val/acc_mean")] == [0.3]
    assert store.get_run(t2).data.params == {"heads.a.loss": "focal"}
    assert store.get_run(t1).info.status == "FINISHED"


def test_an_outage_is_said_with_the_error_it_began_with(flaky, capsys):
    # before: MLflow's message cut at 300 characters, "... Failed to establish a ne)"
    tracker, client = flaky
    tracker.trial_started("t1", {"heads.a.loss": "ce"})
    client.down = True
    tracker.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.1}, epoch=1)
    tracker.flush()
    out = capsys.readouterr().out
    assert "unreachable (" in out and ": ConnectionRefusedError: [Errno 111] Connection refused); buffering" in out
    client.down = False
    tracker.flush()


def test_a_trial_whose_run_was_refused_is_said_once_and_its_writes_skipped(flaky, capsys):
    tracker, client = flaky
    client.refusing = {"create_run"}
    tracker.trial_started("t1", {"train.lr": 0.1})
    client.refusing = set()
    tracker.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.4}, epoch=1)
    tracker.trial_ended("t1", state="finished", reason="completed")
    assert tracker.flush() and tracker.pending_writes == 0
    out = capsys.readouterr().out
    assert out.count("refused to") == 1 and "refused to create the run of trial t1" in out


def test_a_write_that_fails_on_our_side_is_raised_not_taken_for_a_refusal(flaky):
    tracker, client = flaky
    tracker.trial_started("t1", {})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TypeError("a bug of ours")

    client.client.log_batch = broken
    with pytest.raises(TypeError, match="a bug of ours"):
        tracker.log_epoch("t1", {"epoch": 1}, epoch=1)


def test_a_create_whose_answer_was_lost_makes_one_run_not_two(flaky):
    # The server made the run, its answer timed out: sent again, the create made a second, empty
    # run, which a resume (and the report) took for the trial's.
    tracker, client = flaky
    client.answers_lost_of, client.lose_answers = {"create_run"}, 1
    assert tracker.trial_started("t1", {"train.lr": 0.1}) is None  # buffered: the answer was lost
    tracker.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.4}, epoch=1)
    time.sleep(0.6)
    assert tracker.flush()
    runs = tracker._runs_of("trial", trial_id="t1")
    assert [run.info.run_id for run in runs] == [tracker.trial_run_id("t1")]
    assert runs[0].data.params == {"train.lr": "0.1"} and runs[0].data.metrics["val/acc_mean"] == 0.4


def test_flush_gives_up_after_its_timeout_and_says_so(flaky, capsys):
    tracker, client = flaky
    tracker.trial_started("t1", {})
    client.down = True
    tracker.log_epoch("t1", {"epoch": 1}, epoch=1)
    started = time.monotonic()
    assert not tracker.flush()
    assert 1.5 < time.monotonic() - started < 5
    out = capsys.readouterr().out
    assert "unreachable" in out and "1 writes were not sent" in out


def test_a_write_the_store_refuses_is_said_not_retried_and_the_search_goes_on(flaky, capsys):
    tracker, client = flaky
    run_id = tracker.trial_started("t1", {"train.lr": 0.1})
    client.client.delete_run(run_id)  # e.g. deleted in the UI meanwhile
    # Logging to a deleted run is refused: a final answer, not an outage. Before, it was raised
    # into the driver's callback, and Tune ended the whole search with a traceback.
    tracker.log_epoch("t1", {"epoch": 1}, epoch=1)
    out = capsys.readouterr().out
    assert "refused to log metrics, params and tags (MlflowException: " in out and "the search goes on" in out
    assert tracker.pending_writes == 0 and client.refused == 0  # not an outage: no retry
    # the writes after it are sent
    tracker.trial_started("t2", {"train.lr": 0.2})
    tracker.log_epoch("t2", {"epoch": 1, "val/acc_mean": 0.5}, epoch=1)
    assert [m.value for m in client.client.get_metric_history(tracker.trial_run_id("t2"), "val/acc_mean")] == [0.5]
    # a store that refuses every write is explained three times, then counted
    for epoch in range(2, 8):
        tracker.log_epoch("t1", {"epoch": epoch}, epoch=epoch)
    out = capsys.readouterr().out
    assert out.count("refused to") == 2 and "further refusals are counted, not shown" in out


def test_an_item_the_store_refuses_loses_only_itself_not_its_batch(flaky, capsys):
    tracker, client = flaky
    run_id = tracker.trial_started("t1", {"train.lr": 0.1})
    # MLflow refuses a whole batch for one key it rejects; before, the epoch's other metrics went with it
    tracker.log_epoch("t1", {"epoch": 1, "val/acc_mean": 0.5, "val/" + "x" * 300: 1.0}, epoch=1)
    metrics = client.client.get_run(run_id).data.metrics
    assert metrics == {"epoch": 1.0, "val/acc_mean": 0.5}
    out = capsys.readouterr().out
    assert out.count("refused to") == 1 and "refused to log metric 'val/xxx" in out
    # a changed param value is refused alone too: the batch's new params are kept
    tracker._log(run_id, params={"train.lr": 0.2, "train.seed": 3})
    params = client.client.get_run(run_id).data.params
    assert (params["train.lr"], params["train.seed"]) == ("0.1", "3")
    assert "refused to log param 'train.lr'" in capsys.readouterr().out
    assert tracker.pending_writes == 0 and client.refused == 0
    # a run deleted meanwhile refuses every item: the batch is said once, not sent item by item
    client.client.delete_run(run_id)
    tracker.log_epoch("t1", {"epoch": 2, "val/acc_mean": 0.6}, epoch=2)
    out = capsys.readouterr().out
    assert out.count("refused to") == 1 and "refused to log metrics, params and tags" in out


@pytest.mark.parametrize(("status", "transient"), [(403, False), (400, False), (404, False), (429, True),
                                                   (500, True), (503, True), (504, True)])
def test_an_http_answer_is_an_outage_only_where_mlflow_s_client_retries_it(status, transient):
    # requests' HTTPError is an OSError: an artifact upload the server refused (403) was retried
    # for the whole search, holding back every write after it
    import requests

    from search.tracking._store import is_transient

    response = requests.Response()
    response.status_code = status
    assert is_transient(requests.HTTPError(f"{status} error", response=response)) is transient
    assert is_transient(requests.ConnectionError("refused")) is True
