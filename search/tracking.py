"""The MLflow run lifecycle of a search: one parent run per search, one nested child run per trial.

Runs are found by tags (``losstune.search_id`` + ``losstune.trial_id``) before one is created, and
everything a resumed search needs (which runs exist, the last epoch logged per run, the best
objective so far) is read back from the store, not kept in the driver. So a search that crashed
or was interrupted continues in the same runs, without duplicate runs or duplicate epochs.

Only ``MlflowClient`` is used (no fluent ``mlflow.start_run`` global state), from the driver
process: a trial stopped by the scheduler, or one whose process died, still gets its run ended.

Writes are buffered while the store is unreachable (a tracking server restarting, a network
outage): they stay queued in order and are retried every ``retry_interval_s``, so the search
neither dies nor stalls, and nothing is lost; ``flush`` (called at the end of a search) waits up to
``flush_timeout_s`` for the rest. Reads happen only when a tracker first needs the store's state
and wait for it the same way. Buffered writes live in the driver process: a driver killed during
an outage loses the writes still queued (the resumed search logs the epochs it re-runs).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

__all__ = [
    "ROLE_SEARCH",
    "ROLE_TRIAL",
    "SEARCH_ENDS",
    "TAG_END_REASON",
    "TAG_ERROR",
    "TAG_ROLE",
    "TAG_SEARCH_ID",
    "TAG_STATE",
    "TAG_TRIAL_ID",
    "TRIAL_STATES",
    "SearchTracker",
    "TrackingSettings",
    "artifact_location",
    "default_tracking_uri",
    "is_transient",
    "make_search_id",
    "resolve_tracking_uri",
    "search_all_runs",
]

TAG_SEARCH_ID = "losstune.search_id"
TAG_TRIAL_ID = "losstune.trial_id"
TAG_ROLE = "losstune.role"
TAG_ERROR = "losstune.error"
TAG_END_REASON = "losstune.end_reason"
TAG_STATE = "losstune.state"
TAG_RETRIES = "losstune.retries"
ROLE_SEARCH = "search"
ROLE_TRIAL = "trial"
# How a trial's run ended (its ``losstune.state`` tag) and the MLflow status it ends with. Stopping
# early is a normal end of a trial in a search, so the UI shows it finished (KILLED draws the same
# red cross as a crash); KILLED is kept for runs a search did not end on purpose.
TRIAL_STATES = {
    "finished": "FINISHED",
    "stopped_early": "FINISHED",  # by the scheduler (ASHA, median)
    "stopped_by_budget": "FINISHED",  # the search's time budget ran out
    "failed": "FAILED",
    "interrupted": "KILLED",  # the search was interrupted; resuming it continues the run
    "discarded": "KILLED",  # Tune never saved the trial before a crash; a resume ran its slot again
}
# How a search ended (the parent run's ``losstune.end_reason``) and the parent's MLflow status.
SEARCH_ENDS = {"finished": "FINISHED", "time_budget": "FINISHED", "all_failed": "FAILED", "interrupted": "KILLED"}
_PARENT_TAG = "mlflow.parentRunId"
_RUN_NAME_TAG = "mlflow.runName"
# MLflow rejects longer tag values (8000 characters on SQL stores); error texts are cut well below.
_MAX_TAG = 4000
# Final metrics are logged once, after the last epoch; this key tells whether that happened.
_FINAL_MARKER_METRIC = "best_epoch"
# Errors a server answers with that say "try again later"; any other answer is final.
_RETRY_LATER_CODES = ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
_PAGE = 1000  # runs per search_runs page (MLflow's maximum for most stores)
_T = TypeVar("_T")


def _project_root() -> Path:
    """The repository holding the ``search`` package, where ``mlflow/`` (store + server script) lives."""
    return Path(__file__).resolve().parent.parent


def default_tracking_uri() -> str:
    """``sqlite:///<repo>/mlflow/mlflow.db`` when the package sits in the repository (it has an
    ``mlflow/`` folder), else ``sqlite:///<cwd>/mlflow/mlflow.db``."""
    root = _project_root()
    base = root if (root / "mlflow").is_dir() else Path.cwd()
    return f"sqlite:///{(base / 'mlflow' / 'mlflow.db').resolve()}"


def resolve_tracking_uri(*, cli: str | None, space: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Precedence: ``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > the space's ``mlflow.tracking_uri`` > default."""
    return cli or environ.get("MLFLOW_TRACKING_URI") or space or default_tracking_uri()


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    # SQLAlchemy's form: sqlite:///relative/path.db, sqlite:////absolute/path.db
    return Path(unquote(urlparse(tracking_uri).path)[1:])


def artifact_location(tracking_uri: str) -> str | None:
    """The artifact root for a new experiment: ``artifacts/`` next to a SQLite store (so the store and
    its artifacts move together and ``mlflow/serve`` finds them); None lets a server decide."""
    db = _sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "artifacts").resolve().as_uri()


def make_search_id(name: str) -> str:
    """A new id for every search (its start time and random digits), never derived from its name or
    directory: a second search of the same name, after its run directory was removed, must not
    find and change the first one's runs. A resume reads the id from the run directory."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def search_all_runs(client: Any, experiment_ids: list[str], *, query: str, order_by: list[str] | None = None) -> list[Any]:
    """Every run matching ``query``, through all of MLflow's result pages."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string=query, order_by=order_by, max_results=_PAGE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclass(frozen=True)
class TrackingSettings:
    """What identifies a search in MLflow; plain values, so the Tune callback holding it pickles."""

    tracking_uri: str
    experiment: str
    search_id: str
    search_name: str
    objective_metric: str  # the primary objective: the parent logs its best value
    objective_mode: str  # "min" | "max"
    retry_interval_s: float = 5.0  # while the store is unreachable: seconds between attempts
    flush_timeout_s: float = 600.0  # how long flush() (the end of a search) waits for the store


def is_transient(exc: BaseException) -> bool:
    """Whether a failed MLflow call may succeed later: the store was not reached (refused, reset,
    timed out, a proxy's error page) or asked to be retried. An error the server answered with
    (an invalid value, a missing run) is final."""
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):
        return exc.error_code in _RETRY_LATER_CODES
    if isinstance(exc, MlflowException):
        # MLflow's REST client reports transport failures and non-JSON answers this way.
        return str(exc.message).startswith("API request to")
    return isinstance(exc, OSError)  # requests' and urllib3's errors, sockets


@dataclass
class _Write:
    what: str  # for the messages
    send: Callable[[], None]


@dataclass
class _TrialRun:
    run_id: str | None  # None until its (buffered) creation reached the store
    last_step: int  # last epoch logged (-1: none)
    final_logged: bool
    status: str


class SearchTracker:
    """MLflow runs of one search. Safe to pickle (Ray Tune pickles its callbacks): only the
    settings travel; the client and the caches are rebuilt from the store on first use.
    Writes go through an ordered buffer that survives an unreachable store (see the module)."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._trials: dict[str, _TrialRun] | None = None
        self._best: float | None = None
        self._best_step = -1
        self._pending: deque[_Write] = deque()
        self._retry_at = 0.0  # monotonic time of the next attempt while the store is unreachable
        self._unreachable = False

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])

    # --- store access ---------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            db = _sqlite_path(self.settings.tracking_uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
            # MLflow's REST client retries a failed request itself for minutes (7 retries with
            # exponential backoff) and waits 120 s for a hung server, blocking Tune's driver
            # loop; the buffer retries instead. Defaults only: the environment may say otherwise.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
            self._client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._read(self._open_experiment)
        return self._experiment_id

    def _open_experiment(self) -> str:
        name = self.settings.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = artifact_location(self.settings.tracking_uri)
            if location is not None:
                Path(unquote(urlparse(location).path)).mkdir(parents=True, exist_ok=True)
            return self.client.create_experiment(name, artifact_location=location)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _search_runs(self, role: str) -> list[Any]:
        query = f"tags.`{TAG_SEARCH_ID}` = '{self.settings.search_id}' and tags.`{TAG_ROLE}` = '{role}'"
        experiment_id = self.experiment_id
        return self._read(lambda: search_all_runs(self.client, [experiment_id], query=query))

    def other_searches(self) -> int:
        """How many other searches the experiment holds under this search's name."""
        query = f"tags.`{TAG_ROLE}` = '{ROLE_SEARCH}' and attributes.run_name = '{self.settings.search_name}'"
        experiment_id = self.experiment_id
        runs = self._read(lambda: search_all_runs(self.client, [experiment_id], query=query))
        return sum(1 for run in runs if run.data.tags.get(TAG_SEARCH_ID) != self.settings.search_id)

    @property
    def parent_id(self) -> str:
        """The search's parent run, created on first use (and found again after a resume)."""
        if self._parent_id is None:
            found = self._search_runs(ROLE_SEARCH)
            if found:
                run = min(found, key=lambda r: r.info.start_time)
                self._parent_id = run.info.run_id
                self._recover_best()
            else:
                experiment_id = self.experiment_id
                run = self._read(
                    lambda: self.client.create_run(
                        experiment_id,
                        run_name=self.settings.search_name,
                        tags={TAG_SEARCH_ID: self.settings.search_id, TAG_ROLE: ROLE_SEARCH},
                    )
                )
                self._parent_id = run.info.run_id
        return self._parent_id

    @property
    def best_metric(self) -> str:
        return f"search/best/{self.settings.objective_metric}"

    def _recover_best(self) -> None:
        history = self._read(lambda: self.client.get_metric_history(self._parent_id, self.best_metric))
        if history:
            last = max(history, key=lambda m: m.step)
            self._best, self._best_step = last.value, last.step

    def _trial_runs(self) -> dict[str, _TrialRun]:
        if self._trials is None:
            self._trials = {}
            for run in sorted(self._search_runs(ROLE_TRIAL), key=lambda r: r.info.start_time):
                trial_id = run.data.tags[TAG_TRIAL_ID]
                # Never created twice by us (keep the first); a discarded run is no trial of the search.
                if trial_id in self._trials or run.data.tags.get(TAG_STATE) == "discarded":
                    continue
                self._trials[trial_id] = self._recover_trial(run)
        return self._trials

    def _recover_trial(self, run: Any) -> _TrialRun:
        run_id = run.info.run_id
        epochs = self._read(lambda: self.client.get_metric_history(run_id, "epoch"))
        return _TrialRun(
            run_id=run_id,
            last_step=max((m.step for m in epochs), default=-1),
            final_logged=_FINAL_MARKER_METRIC in run.data.metrics,
            status=run.info.status,
        )

    # --- the search -----------------------------------------------------------------------

    def start_search(self, *, params: Mapping[str, Any], artifacts: Mapping[str, str]) -> str:
        """Open (or reopen, after a resume) the parent run; log the resolved settings once."""
        parent = self.parent_id
        run = self._read(lambda: self.client.get_run(parent))
        if not run.data.params:
            self._log(parent, params=params)
            for name, text in artifacts.items():
                self._log_text(parent, text, name)
        if run.info.status != "RUNNING":
            self._submit("reopen the search's run", lambda: self.client.update_run(parent, status="RUNNING"))
        return parent

    def end_search(
        self, *, end: str, artifacts: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """End the parent run as ``end`` (a key of SEARCH_ENDS, also its ``losstune.end_reason``), then
        wait (up to ``flush_timeout_s``) until every buffered write is sent."""
        status = SEARCH_ENDS[end]
        parent = self.parent_id
        for name, text in (artifacts or {}).items():
            self._log_text(parent, text, name)
        self._log(parent, tags={**(tags or {}), TAG_END_REASON: end})
        self._submit("end the search's run", lambda: self.client.set_terminated(parent, status=status))
        self.flush()

    # --- trials ---------------------------------------------------------------------------

    def trial_run_id(self, trial_id: str) -> str | None:
        """The trial's run id; None for an unknown trial or while its creation is buffered."""
        run = self._trial_runs().get(trial_id)
        return None if run is None else run.run_id

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> str | None:
        """The trial's child run: created with params and tags, or reopened after a resume/retry.
        Returns its id (None while the store is unreachable: the creation is buffered)."""
        runs = self._trial_runs()
        existing = runs.get(trial_id)
        if existing is not None:
            if existing.status != "RUNNING":
                self._submit(
                    f"reopen the run of trial {trial_id}",
                    lambda: self.client.update_run(existing.run_id, status="RUNNING"),
                )
                existing.status = "RUNNING"
            return existing.run_id
        tags = {
            _PARENT_TAG: self.parent_id,
            TAG_SEARCH_ID: self.settings.search_id,
            TAG_TRIAL_ID: trial_id,
            TAG_ROLE: ROLE_TRIAL,
            "trial_id": trial_id,
            **{f"loss.{key.split('.')[1]}": str(value) for key, value in config.items() if _is_loss_key(key)},
        }
        run = _TrialRun(None, last_step=-1, final_logged=False, status="RUNNING")
        runs[trial_id] = run
        experiment_id = self.experiment_id

        def create() -> None:
            run.run_id = self.client.create_run(experiment_id, run_name=trial_id, tags=tags).info.run_id

        self._submit(f"create the run of trial {trial_id}", create)
        self._log(run, params=config)
        return run.run_id

    def log_epoch(self, trial_id: str, metrics: Mapping[str, Any], *, epoch: int) -> bool:
        """Log one epoch's metrics at ``step=epoch``; an epoch logged before (a trial restarted from an
        older checkpoint after a crash) is skipped. Returns whether anything was logged."""
        run = self._trial_runs()[trial_id]
        if epoch <= run.last_step:
            return False
        self._log(run, metrics=metrics, step=epoch)
        run.last_step = epoch
        return True

    def log_final(self, trial_id: str, metrics: Mapping[str, Any], *, epoch: int) -> bool:
        """Log the trial's final metrics (test/..., best_epoch) once."""
        run = self._trial_runs()[trial_id]
        if run.final_logged:
            return False
        self._log(run, metrics=metrics, step=epoch)
        run.final_logged = True
        return True

    def final_logged(self, trial_id: str) -> bool:
        run = self._trial_runs().get(trial_id)
        return run is not None and run.final_logged

    def update_best(self, value: Any) -> bool:
        """Log the search's best objective on the parent run when ``value`` improves on it."""
        if not _is_number(value) or not math.isfinite(value):
            return False
        parent = self.parent_id  # recovers the best so far on first use
        sign = 1.0 if self.settings.objective_mode == "max" else -1.0
        if self._best is not None and sign * value <= sign * self._best:
            return False
        self._best, self._best_step = float(value), self._best_step + 1
        self._log(parent, metrics={self.best_metric: value}, step=self._best_step)
        return True

    def trial_retried(self, trial_id: str, *, failures: int, error: str | None) -> None:
        run = self._trial_runs().get(trial_id)
        if run is not None:
            tags = {TAG_RETRIES: str(failures)}
            if error:
                tags[f"{TAG_ERROR}.{failures}"] = _cut(error)
            self._log(run, tags=tags)

    def trial_ended(
        self, trial_id: str, *, state: str, reason: str, error: str | None = None, details: str | None = None
    ) -> None:
        """End the trial's run in ``state`` (a key of TRIAL_STATES, the ``losstune.state`` tag), with
        ``reason`` as the ``losstune.end_reason`` tag; a failure's error as the ``losstune.error``
        tag and its traceback as error.txt."""
        status = TRIAL_STATES[state]
        run = self._trial_runs().get(trial_id)
        if run is None:
            return
        tags = {TAG_STATE: state, TAG_END_REASON: reason}
        if error:
            tags[TAG_ERROR] = _cut(error)
        self._log(run, tags=tags)
        if details:
            self._log_text(run, details, "error.txt")
        self._submit(f"end the run of trial {trial_id}", lambda: self.client.set_terminated(run.run_id, status=status))
        run.status = status

    def reconcile(self, trial_ids: set[str]) -> list[str]:
        """Set aside the runs of trials the search no longer has: a crash before Tune saved its state
        loses the trials started since, and a resume runs new trials in their place. Nothing is
        deleted: such a run ends KILLED, tagged ``losstune.state: discarded`` with the reason, and
        the report leaves it out. Returns their trial ids."""
        orphans = [tid for tid in self._trial_runs() if tid not in trial_ids]
        for trial_id in orphans:
            self.trial_ended(
                trial_id,
                state="discarded",
                reason="lost when the search crashed before Ray Tune saved this trial; the resumed "
                "search ran a new trial in its place",
            )
            self._trials.pop(trial_id)
        return orphans

    def run_statuses(self) -> dict[str, str]:
        return {trial_id: run.status for trial_id, run in self._trial_runs().items()}

    # --- the store: buffered writes, waiting reads -------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Writes buffered because the store was unreachable, not sent yet."""
        return len(self._pending)

    def flush(self) -> bool:
        """Send the buffered writes, waiting for an unreachable store up to ``flush_timeout_s``.
        Returns whether everything was sent (if not, says how much was not)."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        while not self._send_pending():
            now = time.monotonic()
            if now >= deadline:
                print(
                    f"error: MLflow at {self.settings.tracking_uri} still unreachable after waiting "
                    f"{self.settings.flush_timeout_s:g} s; {len(self._pending)} writes were not sent",
                    flush=True,
                )
                return False
            time.sleep(max(0.0, min(self._retry_at, deadline) - now))
        return True

    def _submit(self, what: str, send: Callable[[], None]) -> None:
        self._pending.append(_Write(what, send))
        self._send_pending()

    def _send_pending(self) -> bool:
        """Send buffered writes in order until one fails because the store is unreachable; then
        try again only after ``retry_interval_s`` (a down server costs one quick failure per
        interval, not one per write). Returns whether the buffer is empty."""
        if self._pending and time.monotonic() < self._retry_at:
            return False
        sent = 0
        while self._pending:
            write = self._pending[0]
            try:
                write.send()
            except Exception as exc:
                if not is_transient(exc):
                    self._pending.popleft()  # it would fail again; the caller sees why
                    raise
                self._retry_at = time.monotonic() + self.settings.retry_interval_s
                self._note_unreachable(exc, write.what)
                return False
            self._pending.popleft()
            sent += 1
        if sent:
            self._note_reachable(sent)
        return True

    def _note_reachable(self, sent: int) -> None:
        if self._unreachable:
            self._unreachable = False
            print(f"MLflow at {self.settings.tracking_uri} reachable again; {sent} buffered writes sent", flush=True)

    def _note_unreachable(self, exc: BaseException, what: str) -> None:
        if not self._unreachable:
            self._unreachable = True
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            print(
                f"MLflow at {self.settings.tracking_uri} unreachable ({what}: {reason}); buffering "
                f"its writes and retrying every {self.settings.retry_interval_s:g} s",
                flush=True,
            )

    def _read(self, read: Callable[[], _T]) -> _T:
        """A read the tracker cannot go on without: retried while the store is unreachable, up to
        ``flush_timeout_s``. Buffered writes go first, so a read sees them."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        while True:
            try:
                if not self._send_pending():
                    raise ConnectionError("buffered writes not sent yet")
                value = read()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
                self._note_unreachable(exc, "read the search's runs")
                time.sleep(self.settings.retry_interval_s)
                continue
            self._note_reachable(0)
            return value

    def _log_text(self, target: str | _TrialRun, text: str, name: str) -> None:
        self._submit(f"log {name}", lambda: self.client.log_text(_run_id(target), text, name))

    def _log(
        self,
        target: str | _TrialRun,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)  # when the values were produced, not when they reach the store
        metric_items = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if _is_number(v)]
        param_items = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        tag_items = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        # log_batch takes at most 1000 metrics, 100 params and 100 tags per call.
        while metric_items or param_items or tag_items:
            batch = {"metrics": metric_items[:1000], "params": param_items[:100], "tags": tag_items[:100]}
            self._submit("log metrics, params and tags", lambda b=batch: self.client.log_batch(_run_id(target), **b))
            metric_items, param_items, tag_items = metric_items[1000:], param_items[100:], tag_items[100:]


def _run_id(target: str | _TrialRun) -> str:
    # A trial's run id is known only once its buffered creation was sent, which precedes this.
    return target if isinstance(target, str) else target.run_id


def _is_loss_key(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "heads" and parts[2] == "loss"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 15] + "\n...(truncated)"
