"""``search stop JOB``: stop a submitted search; it stays resumable."""

from __future__ import annotations

import argparse
import shlex
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
    from search.cluster import META_NAME, META_SPACE, META_STORAGE, META_TRACKING_URI, find_job

    cluster.client.stop_job(args.job)
    deadline = time.monotonic() + _WAIT_S
    while not job.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1.0)
        job = find_job(cluster, args.job)
    print(f"job {args.job}: {job.status.value}")
    meta = job.metadata or {}
    resume = ["python", "-m", "search", "submit", meta.get(META_SPACE, "SPACE"), "--address", cluster.address,
              "--storage", meta.get(META_STORAGE, "DIR"), "--name", meta.get(META_NAME, "NAME"),
              "--tracking-uri", meta.get(META_TRACKING_URI, "URI")]  # fmt: skip
    print(f"resume it with: {shlex.join(resume)}")
    return exit_codes.OK if job.status.is_terminal() else exit_codes.FAILED
