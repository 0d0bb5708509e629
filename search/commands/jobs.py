"""``search jobs``: the searches submitted to a Ray cluster, with the MLflow search each one runs."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
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

    SEARCH ID is the MLflow search the job runs (tag losstune.search_id of its parent run), read
    from the job's MLflow store; '-' until the job's search has started there.
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "jobs", HELP, DESCRIPTION, EXAMPLES, space=False)
    add_address(parser)
    return parser


def _search_ids(tracking_uri: str) -> dict[str, str]:
    """Ray Job id -> MLflow search id, from the parent runs of the store's searches."""
    from mlflow import MlflowClient

    from search.tracking import ROLE_SEARCH, TAG_RAY_JOB_PREFIX, TAG_ROLE, TAG_SEARCH_ID, all_pages, search_all_runs

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in all_pages(lambda token: client.search_experiments(page_token=token))]
    found: dict[str, str] = {}
    for start in range(0, len(experiments), 100):  # MLflow takes at most 100 experiments per query
        for run in search_all_runs(client, experiments[start:start + 100], query=f"tags.`{TAG_ROLE}` = '{ROLE_SEARCH}'"):
            for key in run.data.tags:
                if key.startswith(TAG_RAY_JOB_PREFIX):
                    found[key[len(TAG_RAY_JOB_PREFIX):]] = run.data.tags.get(TAG_SEARCH_ID, "-")
    return found


def run(args: argparse.Namespace) -> int:
    cluster = cluster_or_none(args)
    if cluster is None:
        return exit_codes.INVALID
    from search.cluster import META_SPACE, META_TRACKING_URI, our_jobs

    jobs = our_jobs(cluster)
    ids: dict[str, str] = {}
    for uri in sorted({(j.metadata or {}).get(META_TRACKING_URI, "") for j in jobs} - {""}):
        try:
            ids.update(_search_ids(uri))
        except Exception as error:  # noqa: BLE001 - the list is still worth showing without them
            print(f"note: search ids not read from MLflow at {uri}: {type(error).__name__}", file=sys.stderr)
    rows = [("JOB", "SPACE", "STATUS", "STARTED", "SEARCH ID")]
    for job in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        status = getattr(job.status, "value", job.status)
        rows.append((job.submission_id, job.metadata[META_SPACE], str(status), started, ids.get(job.submission_id, "-")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if not jobs:
        print(f"(no search submitted to {cluster.address})")
    return exit_codes.OK
