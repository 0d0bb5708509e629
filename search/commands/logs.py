"""``search logs JOB``: the output of a submitted search (its driver's lines), optionally followed."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from search import exit_codes
from search.commands._common import add_address, add_command, cluster_and_job

__all__ = ["add_parser", "run"]

HELP = "print (or follow) the output of a submitted search"
DESCRIPTION = "Print the output of a search submitted with `search submit`; with --follow, until it ends."
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search logs losstune-vimh-loss-search-1a2b3c --address http://10.0.0.5:8265 --follow

    With --follow the exit status is the search's own (0, 1, 2, 130), as `search submit --wait` gives,
    after a line saying how the job ended; 3 where the connection was lost first (the job may go on).
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "logs", HELP, DESCRIPTION, EXAMPLES, space=False)
    add_address(parser, job=True)
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    return parser


def run(args: argparse.Namespace) -> int:
    found = cluster_and_job(args)
    if found is None:
        return exit_codes.INVALID
    cluster, _ = found
    from search.cluster import ClusterError, FollowLost

    try:
        return _print_logs(cluster, job_id=args.job, follow_it=args.follow)
    except FollowLost as error:  # the message says how to go on
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.LOST
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.INVALID


def _print_logs(cluster: Any, *, job_id: str, follow_it: bool) -> int:
    from search.cluster import ended_line, exit_code, follow_to_end

    if not follow_it:
        sys.stdout.write(cluster.logs(job_id))
        return exit_codes.OK
    job = follow_to_end(cluster, job_id, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    print(ended_line(job), file=sys.stderr)
    return exit_code(job)
