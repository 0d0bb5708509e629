"""``search stop JOB``: stop a submitted search; it stays resumable."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from typing import Any

from search import exit_codes
from search.commands._common import add_address, add_command, cluster_and_job

__all__ = ["add_parser", "run"]

HELP = "stop a submitted search (it stays resumable: submit the same space again)"
DESCRIPTION = (
    "Stop the Ray Job of a submitted search. Its driver stops as on Ctrl-C: Tune saves the state, the "
    "MLflow runs end interrupted. Submitting the same space with the same --storage and --name resumes it."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search stop losstune-vimh-loss-search-1a2b3c --address http://10.0.0.5:8265

    A job that had already ended is left as it is (exit status 0); the command that resumes a
    search is printed only for one stopped before it finished (where the search was submitted
    again since, as the newest job of it left it).
    """
)
_WAIT_S = 120.0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "stop", HELP, DESCRIPTION, EXAMPLES, space=False)
    add_address(parser, job=True)
    return parser


def run(args: argparse.Namespace) -> int:
    found = cluster_and_job(args)
    if found is None:
        return exit_codes.INVALID
    cluster, job = found
    from search.cluster import ClusterError

    try:
        return _stop(cluster, job)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.INVALID


def _stop(cluster: Any, job: Any) -> int:
    if job.status.is_terminal():
        print(f"job {job.submission_id} had already ended: {job.status.value}; nothing to stop")
        later = _latest_of_its_search(cluster, job)
        if later.submission_id != job.submission_id:  # resubmitted since: that job's state is the search's
            if not later.status.is_terminal():
                print(f"its search goes on in job {later.submission_id} ({later.status.value})")
                return exit_codes.OK
            print(f"its search was submitted again since: job {later.submission_id} ended {later.status.value}")
            job = later
    else:
        job = _stopped(cluster, job)
        print(f"job {job.submission_id}: {job.status.value}")
    if _resumable(job):
        print(f"resume it with: {_resume_command(cluster, job)}")
    return exit_codes.OK if job.status.is_terminal() else exit_codes.FAILED


def _latest_of_its_search(cluster: Any, job: Any) -> Any:
    """The newest job submitted for ``job``'s search (the same name, storage and MLflow store):
    ``job`` itself unless the search was submitted again (resumed) after it."""
    from search.cluster import META_NAME, META_STORAGE, META_TRACKING_URI, our_jobs

    def search_of(j: Any) -> tuple[Any, ...]:
        meta = j.metadata or {}
        return meta.get(META_NAME), meta.get(META_STORAGE), meta.get(META_TRACKING_URI)

    same = [j for j in our_jobs(cluster) if search_of(j) == search_of(job) and (j.start_time or 0) >= (job.start_time or 0)]
    return same[-1] if same else job


def _stopped(cluster: Any, job: Any) -> Any:
    """The job after asking Ray to stop it, once it has ended (or as it is after ``_WAIT_S``)."""
    from search.cluster import find_job

    cluster.stop(job.submission_id)
    deadline = time.monotonic() + _WAIT_S
    while not job.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1.0)
        job = find_job(cluster, job.submission_id)
    return job


def _resumable(job: Any) -> bool:
    """Whether the job's search ended before it finished, as a stop or Ctrl-C ends it (Tune saved
    its state): a finished or failed search has nothing to resume."""
    from search.cluster import exit_code

    return job.status.is_terminal() and exit_code(job) == exit_codes.INTERRUPTED


def _resume_command(cluster: Any, job: Any) -> str:
    from search.tracking import redact_uri
    from search._shell import search_command
    from search.cluster import META_NAME, META_STORAGE, META_TRACKING_URI, submitted_space

    meta = job.metadata or {}
    return search_command(
        "submit", submitted_space(job), "--address", cluster.address, "--storage", meta.get(META_STORAGE, "DIR"),
        "--name", meta.get(META_NAME, "NAME"), "--tracking-uri", redact_uri(meta.get(META_TRACKING_URI, "URI")),
    )  # fmt: skip
