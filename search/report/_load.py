"""Read a search back from MLflow: its parent run, its objectives and one record per trial run.

Everything comes from the runs ``search.tracking`` writes (tags ``losstune.*``, the flat trial
config as params, per-epoch metrics at ``step=epoch``), so a finished, a running and a resumed
search read the same way; nothing is taken from Ray Tune's files.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import ranking
from search._preflight import is_database_uri
from search.space import from_json, is_search_name
from trainables.flat_keys import WEIGHTS_PREFIX
from search.space._distributions import Distribution
from search.tracking import (
    DIMENSIONS_FILE,
    ROLE_SEARCH,
    ROLE_TRIAL,
    TAG_END_REASON,
    TAG_ERROR,
    TAG_ROLE,
    TAG_SEARCH_ID,
    TAG_STATE,
    TAG_TRIAL_ID,
    StoreError,
    all_pages,
    holds_mlflow_tables,
    opened_client,
    param_value,
    redact_uri,
    search_all_runs,
    search_name_of,
    sqlite_path,
)

__all__ = [
    "HEAD_METRICS",
    "WEIGHTS_PREFIX",
    "Objective",
    "ReportError",
    "SearchRecord",
    "TrialRecord",
    "find_search",
    "is_value",
    "load_search",
    "open_store",
    "run_directory_name",
]

_RUN_NAME_TAG = "mlflow.runName"
# The report's state of a trial run by its losstune.state tag; "discarded" runs are left out.
_STATES = {
    "finished": "FINISHED",
    "stopped_early": "STOPPED",
    "stopped_by_budget": "STOPPED",
    "failed": "FAILED",
    "interrupted": "INTERRUPTED",
}
# Per-head metrics the report compares (validation split, class units; mae_units when the data
# set gives the parameter's range).
HEAD_METRICS = ("acc", "mae", "mae_units")
_LISTED_OTHERS = 5  # other searches of the same name a note lists by id


class ReportError(ValueError):
    """Input the report cannot work with (exit 2): no store, no such search, no objective."""


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str  # "min" | "max"

    def better(self, a: float, b: float) -> bool:
        return ranking.better(a, b, self.mode)


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    run_id: str
    state: str  # FINISHED | STOPPED | FAILED | RUNNING | INTERRUPTED | PENDING
    losses: dict[str, str]  # head -> loss type
    params: dict[str, Any]  # the flat trial config (JSON values decoded)
    epochs: int  # epochs logged so far
    best_epoch: int | None  # the epoch the values below are from (None: no epoch logged)
    values: tuple[float | None, ...]  # one per objective, at best_epoch
    heads: dict[str, dict[str, float]]  # head -> {acc, mae, mae_units} at best_epoch
    curve: tuple[tuple[int, float], ...]  # (epoch, primary objective) for every logged epoch
    start_time: int
    error: str | None = None
    weights: dict[str, float] = field(default_factory=dict)  # head -> effective loss weight, last epoch


@dataclass(frozen=True)
class SearchRecord:
    tracking_uri: str
    experiment_id: str
    experiment: str
    search_id: str
    name: str
    parent_run_id: str
    status: str  # the parent run's MLflow status
    objectives: tuple[Objective, ...]
    heads: tuple[str, ...]
    trials: list[TrialRecord] = field(default_factory=list)  # in start order
    dimensions: dict[str, Distribution] | None = None  # searched key -> distribution (parent artifact)
    end_reason: str | None = None  # how the search ended (its parent's losstune.end_reason); None while it runs
    matches: int = 1  # searches the selector named (this one the newest)


def open_store(tracking_uri: str) -> Any:
    """An MlflowClient on ``tracking_uri``; a SQLite store must exist (MLflow would create an
    empty one and the report would then find nothing) and open."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise ReportError(f"an existing MLflow store, but got no file {db} (tracking URI {tracking_uri})")
    # SQLite takes an empty file for an empty database, and MLflow would create its tables in it:
    # a report only reads, and must not turn the user's file into a store.
    if db is not None and db.stat().st_size == 0:
        raise ReportError(f"an existing MLflow store, but got the empty file {db} (tracking URI {tracking_uri})")
    if db is not None or is_database_uri(tracking_uri):
        try:
            tables = holds_mlflow_tables(tracking_uri)
        except Exception:  # noqa: BLE001 - not a database, or unreachable: opening it says which
            tables = True
        if not tables:
            where = db if db is not None else redact_uri(tracking_uri)
            raise ReportError(f"an existing MLflow store, but got {where}, a database without MLflow's tables")
    try:
        return opened_client(tracking_uri)
    except StoreError as exc:
        raise ReportError(str(exc)) from None


def _searches(client: Any) -> tuple[list[Any], dict[str, str]]:
    """Every parent run in the store (newest first) and experiment id -> name."""
    experiments = all_pages(lambda token: client.search_experiments(page_token=token))
    names = {e.experiment_id: e.name for e in experiments}
    if not names:
        return [], names
    query = f"tags.`{TAG_ROLE}` = '{ROLE_SEARCH}'"
    return search_all_runs(client, list(names), query=query, order_by=["attributes.start_time DESC"]), names


def _describe(run: Any, experiments: Mapping[str, str]) -> str:
    return f"{run.info.run_name} ({run.data.tags.get(TAG_SEARCH_ID)}, experiment {experiments[run.info.experiment_id]!r})"


def find_search(client: Any, selector: str | None, *, exclude: str | None = None,
                store: str = "this store") -> tuple[Any, str, list[str], int]:
    """The parent run ``selector`` names (a search id or a search name, else an experiment name; the
    newest where several match), or the newest search, leaving out the search whose id is
    ``exclude``; with its experiment name, notes for the terminal and how many searches
    ``selector`` names. ``store``: the store, for messages."""
    runs, names = _searches(client)
    runs = [r for r in runs if exclude is None or r.data.tags.get(TAG_SEARCH_ID) != exclude]
    if not runs:
        raise ReportError(f"a store with at least one losstune search, but got none in {store}")
    if selector is None:
        chosen = runs
    else:
        # An experiment (named by the space) also holds the searches given other names (--name):
        # the search of that name before them, whichever is newer.
        chosen = [r for r in runs if selector in (r.data.tags.get(TAG_SEARCH_ID), r.info.run_name)] or [
            r for r in runs if names.get(r.info.experiment_id) == selector
        ]
    if not chosen:
        known = sorted({_describe(r, names) for r in runs})
        raise ReportError(
            f"a search id, search name or experiment name of {store}, but got {selector!r}; "
            f"searches there: {', '.join(known)}"
        )
    parent = chosen[0]
    notes = [f"reporting search {_started(parent)}"]
    others = chosen[1:]
    if selector is not None and others:
        listed = "; ".join(_started(r) for r in others[:_LISTED_OTHERS])
        more = f"; and {len(others) - _LISTED_OTHERS} more" if len(others) > _LISTED_OTHERS else ""
        notes.append(
            f"{len(chosen)} searches match {selector!r}; this is the newest. The others: {listed}{more}"
        )
    return parent, names[parent.info.experiment_id], notes, len(chosen)


def _started(run: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((run.info.start_time or 0) / 1000))
    return f"{run.data.tags.get(TAG_SEARCH_ID)} (started {when}, {run.info.status.lower()})"


def _objectives(parent: Any, trial_params: Sequence[Mapping[str, Any]]) -> tuple[Objective, ...]:
    """From the parent's ``objective.<i>`` params ("metric (mode)"), else from a trial's config."""
    found = []
    for key, text in parent.data.params.items():
        head, _, index = key.partition(".")
        if head == "objective" and index.isdigit():
            metric, _, mode = text.rpartition(" (")
            found.append((int(index), Objective(metric, mode.rstrip(")"))))
    if found:
        return tuple(o for _, o in sorted(found, key=lambda item: item[0]))
    for params in trial_params:
        if "objective.metric" in params:
            return (Objective(str(params["objective.metric"]), str(params.get("objective.mode", "max"))),)
    if not parent.data.params:
        # The driver logs the settings just after it starts the parent run.
        raise ReportError(
            f"a search that has recorded its settings (its objectives), but search "
            f"{parent.data.tags.get(TAG_SEARCH_ID)} (run {parent.info.run_id}) has recorded none yet: "
            "it is starting; report it again in a moment"
        )
    raise ReportError(
        f"a search whose runs name their objective (parent param objective.0), but got none in run {parent.info.run_id}"
    )


def _state(run: Any) -> str:
    status = run.info.status
    if status in ("RUNNING", "SCHEDULED"):
        return {"SCHEDULED": "PENDING"}.get(status, status)
    state = run.data.tags.get(TAG_STATE)
    if state in _STATES:
        return _STATES[state]
    # Runs written before the losstune.state tag: stopped early ended KILLED then.
    if status == "KILLED":
        return "INTERRUPTED" if run.data.tags.get(TAG_END_REASON) == "interrupted" else "STOPPED"
    return status


def is_value(value: float) -> bool:
    """Whether a logged metric value counts: not NaN and not infinite. MLflow's SQL store saves
    +-inf as +-sys.float_info.max, so a diverged trial's infinity reads back as that finite number."""
    return math.isfinite(value) and abs(value) < sys.float_info.max


def _history(client: Any, run_id: str, key: str) -> dict[int, float]:
    """step -> value; the last value logged at a step wins (a retried epoch)."""
    values: dict[int, float] = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        if is_value(m.value):
            values[m.step] = m.value
    return values


def _best_epoch(curve: Mapping[int, float], objective: Objective, final_best: float | None) -> int | None:
    # The trainer's own choice once the trial has ended (test metrics come from that epoch); a
    # NaN or infinite one (a trial that diverged before its first best) names no epoch.
    if final_best is not None and is_value(final_best) and int(final_best) in curve:
        return int(final_best)
    return ranking.best_epoch(curve, objective.mode)


def _trial(client: Any, run: Any, objectives: tuple[Objective, ...], heads: Sequence[str]) -> TrialRecord:
    run_id = run.info.run_id
    latest = run.data.metrics
    primary = objectives[0]
    curve = _history(client, run_id, primary.metric)
    best = _best_epoch(curve, primary, latest.get("best_epoch"))
    values: list[float | None] = [curve.get(best) if best is not None else None]
    for objective in objectives[1:]:
        values.append(_history(client, run_id, objective.metric).get(best) if best is not None else None)
    per_head: dict[str, dict[str, float]] = {}
    for head in heads:
        metrics = {}
        for name in HEAD_METRICS:
            key = f"val/{head}/{name}"
            if best is not None and key in latest:
                value = _history(client, run_id, key).get(best)
                if value is not None:
                    metrics[name] = value
        per_head[head] = metrics
    steps = [int(latest["epoch"])] if "epoch" in latest else []
    # The run's latest metrics hold each weight's last value: no history request per head. A
    # non-finite weight (a diverged trial) is left out, as _history leaves out such epochs.
    weights = {
        key[len(WEIGHTS_PREFIX) :]: value
        for key, value in latest.items()
        if key.startswith(WEIGHTS_PREFIX) and is_value(value)
    }
    return TrialRecord(
        trial_id=run.data.tags.get(TAG_TRIAL_ID, run.info.run_name),
        run_id=run_id,
        state=_state(run),
        losses={k[len("loss.") :]: v for k, v in run.data.tags.items() if k.startswith("loss.")},
        params={k: param_value(v) for k, v in run.data.params.items()},
        epochs=max([*steps, *curve], default=0),
        best_epoch=best,
        values=tuple(values),
        heads=per_head,
        curve=tuple(sorted(curve.items())),
        start_time=run.info.start_time or 0,
        error=run.data.tags.get(TAG_ERROR),
        weights=weights,
    )


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    # MLflow draws a tqdm bar on stderr for every download, even of one small file.
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _dimensions(client: Any, run_id: str) -> dict[str, Distribution] | None:
    """The searched keys and their distributions the search logged; None when it logged none
    (searches of earlier versions) or the artifact store cannot be read from here."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="losstune-report-") as tmp, _no_progress_bar():
            text = Path(client.download_artifacts(run_id, DIMENSIONS_FILE, tmp)).read_text()
        return {key: from_json(form) for key, form in json.loads(text).items()}
    except Exception:  # noqa: BLE001 - optional (parameter scales): the report works without it
        return None


def run_directory_name(search: SearchRecord) -> str | None:
    """The name of the search's run directory (``<storage>/<name>``): the name its id was made
    from, else the parent run's name where the id starts with it; None when neither is a search
    name. The parent run's name alone is free text (renamed in the MLflow UI to ``../x``, say)
    and never names a folder."""
    generated = search_name_of(search.search_id)
    if generated is not None and is_search_name(generated):
        return generated
    if is_search_name(search.name) and search.search_id.startswith(f"{search.name}-"):
        return search.name
    return None


def load_search(
    client: Any, *, tracking_uri: str, selector: str | None = None, exclude: str | None = None
) -> tuple[SearchRecord, list[str]]:
    """The search ``selector`` names (default: the newest) with all its trial runs; never the one
    whose id is ``exclude``."""
    parent, experiment, notes, matches = find_search(client, selector, exclude=exclude, store=redact_uri(tracking_uri))
    search_id = parent.data.tags[TAG_SEARCH_ID]
    query = f"tags.`{TAG_SEARCH_ID}` = '{search_id}' and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"
    runs = search_all_runs(client, [parent.info.experiment_id], query=query)
    # A trial has one run (search.tracking reopens it on a resume or retry); keep the first if not.
    # A discarded run (a trial Tune lost in a crash, run again under a new id) is no trial of the search.
    by_trial: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        if run.data.tags.get(TAG_STATE) != "discarded":
            by_trial.setdefault(run.data.tags.get(TAG_TRIAL_ID, run.info.run_id), run)
    runs = list(by_trial.values())
    objectives = _objectives(parent, [r.data.params for r in runs])
    heads: list[str] = []
    for run in runs:
        for key in run.data.tags:
            if key.startswith("loss.") and key[len("loss.") :] not in heads:
                heads.append(key[len("loss.") :])
    trials = [_trial(client, run, objectives, heads) for run in runs]
    record = SearchRecord(
        tracking_uri=tracking_uri,
        experiment_id=parent.info.experiment_id,
        experiment=experiment,
        search_id=search_id,
        name=parent.info.run_name or parent.data.tags.get(_RUN_NAME_TAG) or search_id,
        parent_run_id=parent.info.run_id,
        status=parent.info.status,
        end_reason=parent.data.tags.get(TAG_END_REASON),
        objectives=objectives,
        heads=tuple(heads),
        trials=trials,
        dimensions=_dimensions(client, parent.info.run_id),
        matches=matches,
    )
    return record, notes
