"""Fixtures of the comparison tests: MLflow stores holding searches with known values, written
through ``search.tracking.SearchTracker`` (the API the driver uses) without Ray, and
``mlflow/serve`` started on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from search.console import shown_on
from search.space import Choice, LogUniform, Uniform
from search.tracking import DIMENSIONS_FILE, SearchTracker, TrackingSettings, dimensions_json

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def driver_lines():
    """The driver's lines on stdout, as `search run` shows them (tests read them with capsys)."""
    with shown_on():
        yield


def _best_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip("- ").startswith("best trial:")).lstrip("- ")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """After every passing test (before its fixtures stop a server it used), each search it ran to
    the end (a run directory with summary.txt in its tmp_path) names the same best trial in
    summary.txt as in the report read back from MLflow."""
    result = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if tmp_path is not None:
        _summary_and_report_agree(tmp_path)
    return result


def _summary_and_report_agree(tmp_path: Path) -> None:
    from search.report import load_search, open_store, write_report

    for meta_file in tmp_path.glob("**/losstune.json"):  # a run directory
        summary = meta_file.parent / "summary.txt"
        if not summary.is_file():
            continue
        meta = json.loads(meta_file.read_text())
        uri = meta["tracking_uri"]
        search, _ = load_search(open_store(uri), tracking_uri=uri, selector=meta["search_id"])
        report = write_report(search, tmp_path / "agreement" / meta["search_id"])
        markdown = (report.out_dir / "report.md").read_text()
        assert _best_line(summary.read_text()) == _best_line(markdown), summary
TOY_SPACE = """\
name: toy
data: {kind: digits, limit: 300}
model: {kind: mlp, hidden: 16}
train: {epochs: 3, lr: {loguniform: [0.001, 0.03]}}
heads:
  digit: {loss: {choice: {ce: {label_smoothing: {uniform: [0.0, 0.1]}}, focal: {gamma: {uniform: [1.0, 2.0]}}}}}
  thickness: {loss: {choice: {ce: {}, ordinal: {alpha: {loguniform: [0.01, 1.0]}}}}}
objective: {metric: val/acc_mean, mode: max}
"""


# What TOY_SPACE searches, as the driver logs it.
TOY_DIMENSIONS = {
    "train.lr": LogUniform(0.001, 0.03),
    "heads.digit.loss": Choice(("ce", "focal")),
    "heads.digit.ce.label_smoothing": Uniform(0.0, 0.1),
    "heads.digit.focal.gamma": Uniform(1.0, 2.0),
    "heads.thickness.loss": Choice(("ce", "ordinal")),
    "heads.thickness.ordinal.alpha": LogUniform(0.01, 1.0),
}


@dataclass(frozen=True)
class ToyTrial:
    """A trial whose per-epoch metrics follow from ``curve`` (val/acc_mean per epoch)."""

    trial_id: str
    losses: dict[str, tuple[str, dict[str, Any]]]  # head -> (loss, its params)
    lr: float
    curve: Sequence[float]
    state: str | None = "finished"  # a key of search.tracking.TRIAL_STATES; None: still running
    reason: str = "completed"
    energy: float = 0.1

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"data.kind": "digits", "train.lr": self.lr, "train.threads": 1}
        for head, (loss, params) in self.losses.items():
            config[f"heads.{head}.loss"] = loss
            config[f"heads.{head}.weight"] = 1.0
            config.update({f"heads.{head}.{loss}.{k}": v for k, v in params.items()})
        config["objective.metric"], config["objective.mode"] = "val/acc_mean", "max"
        return config

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        a = self.curve[epoch - 1]
        return {
            "epoch": epoch,
            "val/acc_mean": a,
            "val/energy": self.energy * epoch,
            "val/digit/acc": a + 0.1,
            "val/thickness/acc": a - 0.1,
            "val/thickness/mae": 1 - a,
            "best/val/acc_mean": max(self.curve[:epoch]),
        }

    @property
    def best_epoch(self) -> int:
        return max(range(1, len(self.curve) + 1), key=lambda e: self.curve[e - 1])


def _losses(digit: str, digit_params: dict, thickness: str, thickness_params: dict) -> dict:
    return {"digit": (digit, digit_params), "thickness": (thickness, thickness_params)}


TOY_TRIALS = (
    ToyTrial("t0", _losses("ce", {"label_smoothing": 0.05}, "ordinal", {"alpha": 0.1}), 0.01, [0.5, 0.7, 0.6], energy=0.3),
    ToyTrial("t1", _losses("focal", {"gamma": 2.0}, "ce", {}), 0.001, [0.4, 0.5, 0.55], energy=0.05),
    ToyTrial("t2", _losses("ce", {"label_smoothing": 0.0}, "ce", {}), 0.003, [0.3], "stopped_early", "stopped early by the scheduler"),
    ToyTrial("t3", _losses("focal", {"gamma": 1.0}, "ordinal", {"alpha": 0.5}), 0.02, [0.2], "failed", "error"),
    ToyTrial("t4", _losses("ce", {"label_smoothing": 0.1}, "ordinal", {"alpha": 0.2}), 0.005, [0.6, 0.8, 0.75], energy=0.4),
)


def toy_settings(
    uri: str, *, name: str, objectives: Sequence[tuple[str, str]], search_id: str | None = None
) -> TrackingSettings:
    return TrackingSettings(
        tracking_uri=uri,
        experiment=name,
        search_id=search_id or f"{name}-0123456789",
        search_name=name,
        objective_metric=objectives[0][0],
        objective_mode=objectives[0][1],
    )


ONE_OBJECTIVE = (("val/acc_mean", "max"),)


def start_toy_search(
    uri: str, *, name: str, objectives: Sequence[tuple[str, str]] = ONE_OBJECTIVE, search_id: str | None = None
) -> SearchTracker:
    tracker = SearchTracker(toy_settings(uri, name=name, objectives=objectives, search_id=search_id))
    params = {f"objective.{i}": f"{metric} ({mode})" for i, (metric, mode) in enumerate(objectives)}
    artifacts = {"space.yaml": TOY_SPACE, DIMENSIONS_FILE: dimensions_json(TOY_DIMENSIONS)}
    tracker.start_search(params={"search.num_samples": 5, **params}, artifacts=artifacts)
    return tracker


def run_toy_trial(tracker: SearchTracker, trial: ToyTrial, *, epochs: int | None = None, end: bool = True) -> str:
    """Log ``trial`` as the driver's callback would: start, epochs, final metrics, end."""
    run_id = tracker.trial_started(trial.trial_id, trial.config)
    last = len(trial.curve) if epochs is None else epochs
    for epoch in range(1, last + 1):
        metrics = trial.epoch_metrics(epoch)
        tracker.log_epoch(trial.trial_id, metrics, epoch=epoch)
        tracker.update_best(metrics[tracker.settings.objective_metric])
    if end and trial.state == "finished":
        final = {"test/acc_mean": trial.curve[trial.best_epoch - 1] - 0.05, "best_epoch": trial.best_epoch}
        tracker.log_final(trial.trial_id, final, epoch=last)
    if end and trial.state is not None:
        error = "TrainingDiverged: nan at epoch 1" if trial.state == "failed" else None
        tracker.trial_ended(trial.trial_id, state=trial.state, reason=trial.reason, error=error)
    return run_id


def toy_search(
    uri: str,
    *,
    name: str,
    trials: Sequence[ToyTrial] = TOY_TRIALS,
    objectives: Sequence[tuple[str, str]] = ONE_OBJECTIVE,
    search_id: str | None = None,
) -> SearchTracker:
    """A finished search of ``trials``."""
    tracker = start_toy_search(uri, name=name, objectives=objectives, search_id=search_id)
    for trial in trials:
        run_toy_trial(tracker, trial)
    tracker.end_search(end="finished")
    return tracker


@pytest.fixture
def toy_search_factory():
    """toy_search_factory(store_dir, name=..., trials=..., objectives=...): a finished toy search."""

    def make(store: Path, **kwargs: Any) -> SearchTracker:
        return toy_search(f"sqlite:///{store / 'mlflow.db'}", **kwargs)

    return make


@dataclass(frozen=True)
class ToyParts:
    """The steps of a toy search, for searches left running or resumed."""

    trials: Sequence[ToyTrial] = TOY_TRIALS

    def start(self, store: Path, *, name: str) -> SearchTracker:
        return start_toy_search(f"sqlite:///{store / 'mlflow.db'}", name=name)

    def run(self, tracker: SearchTracker, trial: ToyTrial, *, epochs: int | None = None, end: bool = True) -> str:
        return run_toy_trial(tracker, trial, epochs=epochs, end=end)


@pytest.fixture
def toy_parts() -> ToyParts:
    return ToyParts()


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store (in the layout of mlflow/: mlflow.db + artifacts/) with the finished toy
    search; creating a store takes seconds, so it is shared. Tests add searches of their own names."""
    root = tmp_path_factory.mktemp("toy") / "mlflow"
    toy_search(f"sqlite:///{root / 'mlflow.db'}", name="toy")
    return root



@pytest.fixture(scope="module")
def toy_server(toy_store: Path, start_mlflow_server):
    """``mlflow/serve`` on the toy store, shared by a module's tests (a start takes seconds)."""
    server = start_mlflow_server(toy_store)
    yield server
    server.stop()
