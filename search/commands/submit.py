"""``search submit SPACE``: run a search on a Ray cluster as a Ray Job (``search run`` on the head)."""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from search import exit_codes
from search._shell import search_command
from search.commands._common import add_address, add_command, cluster_or_none, ctrl_c_works, given_text, plugins_and_space

__all__ = ["DEFAULT_STORAGE", "add_parser", "run"]

HELP = "submit a search to a Ray cluster (a Ray Job running `search run` there)"
DESCRIPTION = (
    "Check the space, the MLflow store and the cluster here, then submit `python -m search run SPACE` as a "
    "Ray Job. The job ships losstune's packages and the space file (not .venv, runs/, data/, mlflow/ or "
    "caches); on the cluster the search checks that its storage is shared by every node and hands the data "
    "set to the trials through Ray's object store."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search submit spaces/vimh.yaml --address http://10.0.0.5:8265 \\
          --tracking-uri http://10.0.0.5:5000 --storage /shared/losstune/runs --wait
      python -m search jobs --address http://10.0.0.5:8265
      python -m search logs JOB --address http://10.0.0.5:8265 --follow
      python -m search stop JOB --address http://10.0.0.5:8265
      # after a stop: the same submit resumes the search (same trials, same MLflow runs)

    Token: Ray clusters started with `ray start` ask for a token; it is read from RAY_AUTH_TOKEN,
    the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token (`ray get-auth-token` on the head).
    Exit status: 0 submitted (with --wait: the search's own, 0, 1, 2 or 130; 3 when it is no longer
    followed, the connection lost or Ctrl-C detached, and goes on), 2 invalid space, options, store
    or cluster.
    """
)
# Expanded on the head; a relative path would land in the job's own temporary working directory.
DEFAULT_STORAGE = "~/losstune/runs"
# How long a stop lets the search save its state before Ray kills it (Ray's default: 3 s); a
# RayJob manifest sets the same (deploy/kuberay-rayjob.yaml, checked by a test).
STOP_WAIT_ENV = {"RAY_JOB_STOP_WAIT_TIME_S": "60"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "submit", HELP, DESCRIPTION, EXAMPLES)
    add_address(parser)
    parser.add_argument("--tracking-uri", type=given_text, metavar="URI",
                        help="MLflow server or database every node reaches (default: MLFLOW_TRACKING_URI, then the space's)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, metavar="DIR",
                        help=f"results directory shared by every node (default: {DEFAULT_STORAGE} on the head)")
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="search name: its run directory and search id (default: the space's name); its MLflow runs stay "
        "in the space's MLflow experiment, beside the space's other searches",
    )
    parser.add_argument("--resume", type=given_text, nargs="?", const=True, default=False, metavar="SEARCH_ID",
                        help="require an unfinished search to resume (as `search run --resume`)")
    parser.add_argument("--warm-start", type=given_text, metavar="SEARCH",
                        help="start the sampler from an earlier search's scored trials (as `search run --warm-start`)")
    parser.add_argument("--verbose", type=int, default=0, choices=range(4), metavar="{0..3}",
                        help="Ray Tune's own progress output in the job's log (default: 0)")
    parser.add_argument("--wait", action="store_true",
                        help="print the job's output until it ends and exit with the search's exit status")
    return parser  # fmt: skip


def _check_storage(storage: str) -> str | None:
    """Why ``storage`` cannot hold a submitted search, or None."""
    if "://" in storage:
        return None  # a pyarrow file system URI (s3://, gs://, ...): Tune's to use
    if not Path(storage).expanduser().is_absolute():
        return (f"--storage of a submitted search: an absolute directory on the cluster's nodes (or an s3:// "
                f"or gs:// URI), not one relative to the job's temporary working directory, but got {storage!r}")
    return None


def _check_name(name: str | None) -> str | None:
    """Why ``--name`` cannot name a search, or None: it becomes part of the Ray job's id and URLs,
    so it is checked before the cluster is contacted (``search run`` on the head would refuse it
    only after the job started)."""
    from search.space import SEARCH_NAME_RULE, is_search_name

    if name is None or is_search_name(name):
        return None
    return f"--name: {SEARCH_NAME_RULE}, but got {name!r}"


def _entrypoint(args: argparse.Namespace, space: str, tracking_uri: str) -> str:
    command = ["run", space, "--storage", args.storage, "--tracking-uri", tracking_uri]
    if args.name:
        command += ["--name", args.name]
    if args.resume:
        command += ["--resume"] + ([args.resume] if isinstance(args.resume, str) else [])
    if args.warm_start:
        command += ["--warm-start", args.warm_start]
    if args.verbose:
        command += ["--verbose", str(args.verbose)]
    return search_command(*command, here=False)  # run on the cluster's head, by its own `python`


def run(args: argparse.Namespace) -> int:
    # Ctrl-C detaches from a followed job, also when submit runs as a background job.
    with ctrl_c_works():
        return _run_submit(args)


def _run_submit(args: argparse.Namespace) -> int:
    loaded = plugins_and_space(args.space)
    if loaded is None:
        return exit_codes.INVALID
    _, space = loaded
    from search._preflight import TrackingUriError, check_reachable, check_tracking_uri
    from search.tracking import resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(cli=args.tracking_uri, space=space.mlflow.tracking_uri)
    problem = _check_name(args.name) or _check_storage(args.storage)
    if problem is None:
        try:
            check_tracking_uri(tracking_uri, cluster=True)
            check_reachable(tracking_uri)
        except TrackingUriError as error:
            problem = str(error)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return exit_codes.INVALID
    cluster = cluster_or_none(args)
    if cluster is None:
        return exit_codes.INVALID
    from search.cluster import ClusterError

    try:
        _check_resources(cluster, space)
        job_id = _submit(args, cluster, space, tracking_uri)
        return _wait(cluster, job_id) if args.wait else exit_codes.OK
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.INVALID


def _check_resources(cluster: Any, space: Any) -> None:
    """As the search checks it on the cluster, but the autoscaler's node types are in a file on the
    head: here only its status says whether it may start nodes."""
    from search.cluster import check_trial_fits, wait_adds_nodes

    note = check_trial_fits(
        alive=[(n.cpu, n.gpu) for n in cluster.nodes() if n.alive], cpu=space.resources.cpu,
        gpu=space.resources.gpu, where=f"the cluster at {cluster.address}", node_types=lambda: None,
        autoscales=lambda: wait_adds_nodes(cluster.autoscaler_status), source=str(space.path),
    )  # fmt: skip
    if note is not None:
        print(f"note: {note}", file=sys.stderr, flush=True)


def _submit(args: argparse.Namespace, cluster: Any, space: Any, tracking_uri: str) -> str:
    """Submit the job; print its id and how to follow it; return the id."""
    from search.tracking import redact_uri
    from search.cluster import (
        JOB_ENV,
        META_NAME,
        META_SPACE,
        META_SPACE_HERE,
        META_STORAGE,
        META_TRACKING_URI,
        SUBMITTED_ADDRESS_ENV,
        SUBMITTED_SPACE_ENV,
        follow_command,
        stage,
    )

    name = args.name or space.name
    job_id = f"losstune-{name}-{secrets.token_hex(3)}"
    submitted = str(Path(args.space).resolve())
    with tempfile.TemporaryDirectory(prefix="losstune-submit-") as staged:
        space_path = stage(Path(args.space), into=Path(staged))
        cluster.submit(
            # The only place the job keeps the tracking URI's password: the search needs it.
            entrypoint=_entrypoint(args, space_path, tracking_uri),
            submission_id=job_id,
            runtime_env={
                "working_dir": staged,
                "env_vars": {JOB_ENV: job_id, SUBMITTED_SPACE_ENV: submitted, SUBMITTED_ADDRESS_ENV: cluster.address,
                             **STOP_WAIT_ENV},
            },
            metadata={META_SPACE: space_path, META_SPACE_HERE: submitted, META_NAME: name,
                      META_STORAGE: redact_uri(args.storage), META_TRACKING_URI: redact_uri(tracking_uri)},
        )  # fmt: skip
    at = ["--address", cluster.address]
    print(
        f"Submitted search {name!r} as Ray Job {job_id}\n"
        f"  dashboard: {cluster.address}/#/jobs/{job_id}\n"
        f"  follow:    {follow_command(job_id=job_id, address=cluster.address)}\n"
        f"  stop:      {search_command('stop', job_id, *at)}\n"
        f"  list:      {search_command('jobs', *at)}\n"
        f"  MLflow:    {redact_uri(tracking_uri)}",
        flush=True,
    )
    return job_id


def _wait(cluster: Any, job_id: str) -> int:
    from search.cluster import ClusterError, ended_line, exit_code, follow_command, follow_to_end

    try:
        job = follow_to_end(cluster, job_id, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    except ClusterError as error:  # submitted: not exit 2, which says the submission was refused
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.LOST
    except KeyboardInterrupt:
        stop = False
        if sys.stdin.isatty():
            answer = input(f"\nStop job {job_id} (the search stays resumable) or detach? [s/D] ").strip().lower()
            stop = answer in ("s", "stop")
        if stop:
            cluster.stop(job_id)
            print(f"stopping job {job_id}; resume it by submitting the same space again", file=sys.stderr)
        else:
            print(f"detached; job {job_id} goes on ({follow_command(job_id=job_id, address=cluster.address)})",
                  file=sys.stderr)
            return exit_codes.LOST  # as for a lost connection: the job runs on, its outcome unknown here
        return exit_codes.INTERRUPTED
    print(ended_line(job), file=sys.stderr)
    return exit_code(job)
