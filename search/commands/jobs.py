"""``search jobs``: the searches submitted to a Ray cluster, with the MLflow search each one runs."""

from __future__ import annotations

import argparse
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

from search import exit_codes
from search.commands._common import add_address, add_command, cluster_or_none

__all__ = ["add_parser", "run"]

HELP = "list the searches submitted to a Ray cluster (search submit)"
DESCRIPTION = "List the Ray Jobs that `search submit` started on the cluster, oldest first."
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search jobs --address http://10.0.0.5:8265

    SPACE is the space file as submitted (its path on the machine it was submitted from).
    SEARCH ID is the MLflow search the job runs (tag losstune.search_id of its parent run), read
    from the job's MLflow store (a server or database a cluster job can log to, for at most 10 s);
    '-' until the job's search has started there, or when the store was not read (a note says why).
    """
)
_MLFLOW_WAIT_S = 10.0  # per store the jobs log to


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "jobs", HELP, DESCRIPTION, EXAMPLES, space=False)
    add_address(parser)
    return parser


def _search_ids(tracking_uri: str) -> dict[str, str]:
    """Ray Job id -> MLflow search id, from the parent runs of the store's searches."""
    from mlflow import MlflowClient

    from search.tracking import ROLE_SEARCH, TAG_RAY_JOB_PREFIX, TAG_ROLE, TAG_SEARCH_ID, all_pages, search_all_runs

    _check_store_exists(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in all_pages(lambda token: client.search_experiments(page_token=token))]
    found: dict[str, str] = {}
    for start in range(0, len(experiments), 100):  # MLflow takes at most 100 experiments per query
        for run in search_all_runs(client, experiments[start:start + 100], query=f"tags.`{TAG_ROLE}` = '{ROLE_SEARCH}'"):
            for key in run.data.tags:
                if key.startswith(TAG_RAY_JOB_PREFIX):
                    found[key[len(TAG_RAY_JOB_PREFIX):]] = run.data.tags.get(TAG_SEARCH_ID, "-")
    return found


def _check_store_exists(tracking_uri: str) -> None:
    """A database URI must hold an MLflow store already: MLflow would create its tables in any
    database it is pointed at, and listing jobs never creates a store."""
    from search._preflight import is_database_uri

    from search.tracking import holds_mlflow_tables

    if is_database_uri(tracking_uri) and not holds_mlflow_tables(tracking_uri):
        raise LookupError("no MLflow store in that database")


def _within(seconds: float, fn: Callable[[str], dict[str, str]], arg: str) -> dict[str, str]:
    """``fn(arg)``, or TimeoutError after ``seconds``. In a daemon thread, left behind if late: a
    database driver's connect and MLflow's own engine retries have no timeout one can set for
    every dialect, and the list is worth showing without the ids."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn(arg)
        except Exception as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=call, name="losstune-jobs-mlflow", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _read_search_ids(tracking_uri: str) -> dict[str, str] | str:
    """The search ids of the store a job logs to, or why they were not read. Only a store a job on
    a cluster can log to is asked (a job on the cluster may name any URI: a local SQLite path would
    be created here), and only briefly: a server that does not answer costs seconds, not MLflow's
    minutes of retries."""
    from search._preflight import TrackingUriError, check_reachable, check_tracking_uri
    from search.tracking import redact_text, use_buffered_requests

    try:
        check_tracking_uri(tracking_uri, cluster=True)
        check_reachable(tracking_uri, timeout_s=_MLFLOW_WAIT_S / 2)
    except TrackingUriError as error:
        return str(error)
    use_buffered_requests()  # MLflow's REST client: no retries, a short timeout
    import mlflow.store.db.utils  # noqa: F401 - MLflow's import (seconds) before the store's deadline
    try:
        return _within(_MLFLOW_WAIT_S, _search_ids, tracking_uri)
    except Exception as error:  # noqa: BLE001 - the list is still worth showing without them
        return redact_text(f"{type(error).__name__}: {error}".splitlines()[0], tracking_uri)


def _search_ids_of(jobs: list[Any]) -> tuple[dict[str, str], list[str]]:
    """Ray Job id -> MLflow search id for ``jobs``, and a note for each store not read."""
    from search.tracking import redact_uri
    from search.cluster import job_tracking_uri

    ids: dict[str, str] = {}
    notes = []
    for uri in sorted({job_tracking_uri(job) for job in jobs} - {""}):
        found = _read_search_ids(uri)
        if isinstance(found, str):
            notes.append(f"no search ids from MLflow at {redact_uri(uri)}: {found}")
        else:
            ids.update(found)
    return ids, notes


def _row(job: Any, ids: dict[str, str]) -> tuple[str, ...]:
    from search.cluster import submitted_space

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
    status = getattr(job.status, "value", job.status)
    return (job.submission_id, submitted_space(job), str(status), started, ids.get(job.submission_id, "-"))


def run(args: argparse.Namespace) -> int:
    cluster = cluster_or_none(args)
    if cluster is None:
        return exit_codes.INVALID
    from search.cluster import ClusterError, our_jobs

    try:
        jobs = our_jobs(cluster)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.INVALID
    ids, notes = _search_ids_of(jobs)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    rows = [("JOB", "SPACE", "STATUS", "STARTED", "SEARCH ID"), *(_row(job, ids) for job in jobs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if not jobs:
        print(f"(no search submitted to {cluster.address})")
    return exit_codes.OK
