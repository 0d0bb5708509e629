"""The MLflow run lifecycle of a search: one parent run per search, one nested child run per trial.

Runs are found by tags (``losstune.search_id`` + ``losstune.trial_id``) before one is created, and
everything a resumed search needs (which runs exist, the last epoch logged per run, the best
objective so far) is read back from the store, not kept in the driver. So a search that crashed
or was interrupted continues in the same runs, without duplicate runs or duplicate epochs.

Only ``MlflowClient`` is used (no fluent ``mlflow.start_run`` global state), from the driver
process: a trial stopped by the scheduler, or one whose process died, still gets its run ended.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from search.tracking._buffer import BufferedStore, is_number, run_id_of
from search.ranking import same_value
from search.tracking import _store as store
from trainables.flat_keys import head_losses
from trainables.metric_names import BEST_EPOCH_KEY

__all__ = ["SearchTracker"]

_PARENT_TAG = "mlflow.parentRunId"
_NOTE_TAG = "mlflow.note.content"
# MLflow rejects longer tag values (8000 characters on SQL stores); error texts are cut well below.
_MAX_TAG = 4000
# Final metrics are logged once, after the last epoch; this key tells whether that happened.
_FINAL_MARKER_METRIC = "best_epoch"


@dataclass
class _TrialRun:
    run_id: str | None  # None until its (buffered) creation reached the store
    last_step: int  # last epoch logged (-1: none)
    final_logged: bool
    status: str
    state: str | None = None  # how it ended (store.TRIAL_STATES), None while open
    has_params: bool = True  # False: created, but its config never reached the store
    at_best: dict[str, float] | None = None  # the other objectives at the trial's best epoch so far


class SearchTracker(BufferedStore):
    """MLflow runs of one search, written through the buffer of ``BufferedStore``. A process whose
    tracker talks to a tracking server calls ``use_buffered_requests()`` first (``run_search`` does),
    so that MLflow's own retries do not block it for minutes."""

    def __init__(self, settings: store.TrackingSettings) -> None:
        super().__init__(settings)
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._trials: dict[str, _TrialRun] | None = None
        self._best: float | None = None
        self._best_step = -1

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._read(self._open_experiment)
        return self._experiment_id

    def _open_experiment(self) -> str:
        name = self.settings.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = store.artifact_location(self.settings.tracking_uri)
            if location is not None:
                Path(unquote(urlparse(location).path)).mkdir(parents=True, exist_ok=True)
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except Exception as error:  # another search of the space created it since the read
                if getattr(error, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _search_runs(self, role: str, *, trial_id: str | None = None) -> list[Any]:
        return self._read(lambda: self._runs_of(role, trial_id=trial_id))

    def _runs_of(self, role: str, *, trial_id: str | None = None) -> list[Any]:
        """The search's runs of ``role`` (of one trial), as the store answers now (no retry)."""
        query = f"tags.`{store.TAG_SEARCH_ID}` = '{self.settings.search_id}' and tags.`{store.TAG_ROLE}` = '{role}'"
        if trial_id is not None:
            query += f" and tags.`{store.TAG_TRIAL_ID}` = '{trial_id}'"
        return store.search_all_runs(self.client, [self.experiment_id], query=query)

    def _create_once(self, role: str, *, run_name: str, tags: Mapping[str, str], trial_id: str | None = None) -> Any:
        """A call creating the run of ``role`` (of ``trial_id``) that is safe to try again: after a
        try that failed, the run is looked for first (a create whose answer timed out may have
        reached the store: sent again, it made a second, empty run, which a resume or the report
        could take for the real one)."""
        tried = False
        experiment_id = self.experiment_id

        def create() -> Any:
            nonlocal tried
            if tried and (found := self._runs_of(role, trial_id=trial_id)):
                return min(found, key=lambda r: r.info.start_time)
            tried = True
            return self.client.create_run(experiment_id, run_name=run_name, tags={**_run_context(), **tags})

        return create

    def other_searches(self) -> int:
        """How many other searches the experiment holds under this search's name."""
        query = f"tags.`{store.TAG_ROLE}` = '{store.ROLE_SEARCH}' and attributes.run_name = '{self.settings.search_name}'"
        experiment_id = self.experiment_id
        runs = self._read(lambda: store.search_all_runs(self.client, [experiment_id], query=query))
        return sum(1 for run in runs if run.data.tags.get(store.TAG_SEARCH_ID) != self.settings.search_id)

    @property
    def parent_id(self) -> str:
        """The search's parent run, created on first use (and found again after a resume)."""
        if self._parent_id is None:
            found = self._search_runs(store.ROLE_SEARCH)
            if found:
                run = min(found, key=lambda r: r.info.start_time)
                self._parent_id = run.info.run_id
                self._recover_best()
            else:
                tags = {store.TAG_SEARCH_ID: self.settings.search_id, store.TAG_ROLE: store.ROLE_SEARCH,
                        # the run's description in MLflow's UI: what tells two searches of one name apart
                        _NOTE_TAG: f"losstune search {self.settings.search_id}"}
                run = self._read(self._create_once(store.ROLE_SEARCH, run_name=self.settings.search_name, tags=tags))
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
            for run in sorted(self._search_runs(store.ROLE_TRIAL), key=lambda r: r.info.start_time):
                trial_id = run.data.tags[store.TAG_TRIAL_ID]
                # Never created twice by us (keep the first); a discarded run is no trial of the search.
                if trial_id in self._trials or run.data.tags.get(store.TAG_STATE) == "discarded":
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
            state=None if run.info.status == "RUNNING" else run.data.tags.get(store.TAG_STATE),
            has_params=bool(run.data.params),
        )

    def start_search(
        self, *, params: Mapping[str, Any], artifacts: Mapping[str, str], tags: Mapping[str, str] | None = None
    ) -> str:
        """Open (or reopen, after a resume) the parent run; log the resolved settings once, and
        ``tags`` on every start (a resubmitted search adds the id of its new Ray Job)."""
        parent = self.parent_id
        run = self._read(lambda: self.client.get_run(parent))
        if not run.data.params:
            self._log(parent, params=params)
            for name, text in artifacts.items():
                self._log_text(parent, text, name)
        if tags:
            self._log(parent, tags=tags)
        if run.info.status != "RUNNING":
            self._submit("reopen the search's run", lambda: self.client.update_run(parent, status="RUNNING"))
        return parent

    def end_search(
        self, *, end: str, artifacts: Mapping[str, str] | None = None, tags: Mapping[str, str] | None = None
    ) -> None:
        """End the parent run as ``end`` (a key of store.SEARCH_ENDS, also its ``losstune.end_reason``), then
        wait (up to ``flush_timeout_s``) until every buffered write is sent."""
        status = store.SEARCH_ENDS[end]
        parent = self.parent_id
        for name, text in (artifacts or {}).items():
            self._log_text(parent, text, name)
        self._log(parent, tags={**(tags or {}), store.TAG_END_REASON: end})
        self._submit("end the search's run", lambda: self.client.set_terminated(parent, status=status))
        self.flush()

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
                    lambda: self.client.update_run(run_id_of(existing), status="RUNNING"),
                )
                existing.status, existing.state = "RUNNING", None
            if not existing.has_params:  # the driver died, or the store went away, between the two writes
                self._log(existing, params=config)
                existing.has_params = True
            return existing.run_id
        tags = {
            _PARENT_TAG: self.parent_id,
            store.TAG_SEARCH_ID: self.settings.search_id,
            store.TAG_TRIAL_ID: trial_id,
            store.TAG_ROLE: store.ROLE_TRIAL,
            "trial_id": trial_id,
            **{f"loss.{head}": loss for head, loss in head_losses(config).items()},
        }
        run = _TrialRun(None, last_step=-1, final_logged=False, status="RUNNING")
        runs[trial_id] = run
        create_run = self._create_once(store.ROLE_TRIAL, run_name=trial_id, tags=tags, trial_id=trial_id)

        def create() -> None:
            run.run_id = create_run().info.run_id

        self._submit(f"create the run of trial {trial_id}", create)
        self._log(run, params=config)
        return run.run_id

    def log_epoch(self, trial_id: str, metrics: Mapping[str, Any], *, epoch: int) -> bool:
        """Log one epoch's metrics at ``step=epoch``; an epoch logged before (a trial restarted from an
        older checkpoint after a crash) is skipped. Returns whether anything was logged."""
        run = self._trial_runs()[trial_id]
        if epoch <= run.last_step:
            return False
        self._log(run, metrics={**metrics, **self._at_best_epoch(run, metrics, epoch=epoch)}, step=epoch)
        run.last_step = epoch
        return True

    def _at_best_epoch(self, run: _TrialRun, metrics: Mapping[str, Any], *, epoch: int) -> dict[str, float]:
        """``best/<metric>`` of the search's other objectives: their values at the epoch the trial
        reports as its best so far (``BEST_EPOCH_KEY``), beside the primary's own ``best/<metric>``.
        Without them a trial's latest values (what MLflow's columns and charts show) mixed its
        best epoch's primary with its last epoch's others, off the report's Pareto set."""
        others, best = self.settings.other_objectives, metrics.get(BEST_EPOCH_KEY)
        if not others or not is_number(best):
            return {}
        if int(best) == epoch:
            run.at_best = {m: float(metrics[m]) for m in others if is_number(metrics.get(m))}
        elif run.at_best is None and run.run_id is not None:  # a driver started again: from the store
            run.at_best = self._read(lambda: self._values_at(run.run_id, others, step=int(best)))
        return {f"best/{m}": v for m, v in (run.at_best or {}).items()}

    def _values_at(self, run_id: str, metrics: Sequence[str], *, step: int) -> dict[str, float]:
        values = {}
        for metric in metrics:
            at = [m.value for m in self.client.get_metric_history(run_id, metric) if m.step == step]
            if at:
                values[metric] = at[0]
        return values

    def log_final(self, trial_id: str, metrics: Mapping[str, Any], *, epoch: int) -> bool:
        """Log the trial's final metrics (test/..., best_epoch) once."""
        run = self._trial_runs()[trial_id]
        if run.final_logged:
            return False
        self._log(run, metrics=metrics, step=epoch)
        run.final_logged = True
        return True

    def tag_trial(self, trial_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on the trial's run (what it trained on: ``losstune.device``, ...); a retry on
        other hardware overwrites them."""
        run = self._trial_runs().get(trial_id)
        if run is not None and tags:
            self._log(run, tags=tags)

    def final_logged(self, trial_id: str) -> bool:
        run = self._trial_runs().get(trial_id)
        return run is not None and run.final_logged

    def update_best(self, value: Any) -> bool:
        """Log the search's best objective on the parent run when ``value`` improves on it."""
        if not is_number(value) or not math.isfinite(value):
            return False
        parent = self.parent_id  # recovers the best so far on first use
        sign = 1.0 if self.settings.objective_mode == "max" else -1.0
        # an improvement by float rounding alone (the same value summed another way) is none
        if self._best is not None and (sign * value <= sign * self._best or same_value(value, self._best)):
            return False
        self._best, self._best_step = float(value), self._best_step + 1
        self._log(parent, metrics={self.best_metric: value}, step=self._best_step)
        return True

    def trial_retried(self, trial_id: str, *, failures: int, error: str | None) -> None:
        run = self._trial_runs().get(trial_id)
        if run is not None:
            tags = {store.TAG_RETRIES: str(failures)}
            if error:
                tags[f"{store.TAG_ERROR}.{failures}"] = _cut(error)
            self._log(run, tags=tags)

    def trial_ended(
        self, trial_id: str, *, state: str, reason: str, error: str | None = None, details: str | None = None
    ) -> None:
        """End the trial's run in ``state`` (a key of store.TRIAL_STATES, the ``losstune.state`` tag), with
        ``reason`` as the ``losstune.end_reason`` tag; a failure's error as the ``losstune.error``
        tag and its traceback as error.txt."""
        status = store.TRIAL_STATES[state]
        run = self._trial_runs().get(trial_id)
        if run is None:
            return
        tags = {store.TAG_STATE: state, store.TAG_END_REASON: reason}
        if error:
            tags[store.TAG_ERROR] = _cut(error)
        self._log(run, tags=tags)
        if details:
            self._log_text(run, details, "error.txt")
        self._submit(f"end the run of trial {trial_id}", lambda: self.client.set_terminated(run_id_of(run), status=status))
        run.status, run.state = status, state

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

    def open_trial_runs(self) -> dict[str, bool]:
        """Per trial with a run, whether that run is still open: running, or ended ``interrupted`` by
        an earlier attempt of the search (a resumed trial continues it, but one that stays paused
        is never started again to reopen it)."""
        return {trial_id: run.status == "RUNNING" or run.state == "interrupted"
                for trial_id, run in self._trial_runs().items()}


@functools.cache
def _run_context() -> dict[str, str]:
    """The tags MLflow's own ``start_run`` sets (user, source, git commit and branch where the
    code is in a repository), which ``MlflowClient.create_run`` leaves out: the UI's User and
    Source columns, and which code trained a run."""
    from mlflow.tracking.context.registry import resolve_tags

    try:
        return dict(resolve_tags({}))
    except Exception:  # noqa: BLE001 - a context MLflow cannot read leaves the runs without it
        return {}


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 15] + "\n...(truncated)"
