"""What the commands share: how a command is declared, and reading the plugins and the space."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Where `search run` keeps its run directories unless --storage says otherwise.
STORAGE_DEFAULT = "runs"

__all__ = ["add_address", "add_command", "cluster_and_job", "cluster_or_none", "plugins_and_space", "positive_int", "sigterm_as_ctrl_c"]


def add_command(
    subparsers: Any, name: str, help: str, description: str, examples: str, *, space: bool = True
) -> argparse.ArgumentParser:
    """A subcommand with its help, description and examples (as written); ``space``: it takes
    a space file as its first argument."""
    # allow_abbrev=False: `--res` is an unknown option, not --resume (nor, later, some --restart)
    parser = subparsers.add_parser(name, help=help, description=description, epilog=examples,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    if space:
        parser.add_argument("space", metavar="SPACE", help="space file (YAML), e.g. spaces/vimh.yaml")
    return parser


def plugins_and_space(path: str) -> tuple[list[Any], Any] | None:
    """(the plugins loaded, the validated space); None after printing why not: a plugin that
    fails, or every problem of the space as `file:line: yaml.path: rule, but got value`."""
    from search.space import SpaceError, load_space
    from trainables.plugins import PluginError, load_plugins

    try:
        plugins = load_plugins()
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    try:
        return plugins, load_space(path)
    except SpaceError as error:
        count = len(error.errors)
        print(f"{path}: invalid ({count} problem{'s' if count != 1 else ''})", file=sys.stderr)
        for line in error.listed():
            print(line, file=sys.stderr)
        return None


def add_address(parser: argparse.ArgumentParser, *, job: bool = False) -> None:
    """The cluster's Jobs API, as Ray's own `ray job` commands take it; ``job``: and a job id first."""
    if job:
        parser.add_argument("job", metavar="JOB", help="the job id `search submit` printed (see `search jobs`)")
    parser.add_argument(
        "--address",
        default=_jobs_api_from_environment(),
        metavar="URL",
        help="the Ray cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS, else RAY_ADDRESS "
        "where it is an http(s):// URL, as Ray's job commands take them); "
        "the token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token",
    )


def _jobs_api_from_environment() -> str | None:
    """The dashboard's address as Ray's own job commands find it in the environment, where it is one:
    RAY_ADDRESS may name a cluster's GCS instead (HEAD:6379, what `search run` joins), which only a
    connection to that cluster could turn into its dashboard's address."""
    if os.environ.get("RAY_API_SERVER_ADDRESS"):
        return os.environ["RAY_API_SERVER_ADDRESS"]
    ray_address = os.environ.get("RAY_ADDRESS", "")
    return ray_address if ray_address.startswith(("http://", "https://")) else None


def cluster_or_none(args: argparse.Namespace) -> Any:
    """The cluster at ``--address`` (``search.cluster.Cluster``); None after printing why not."""
    from search.cluster import ClusterError, connect

    if not args.address:
        gcs = os.environ.get("RAY_ADDRESS")
        seen = f" (RAY_ADDRESS={gcs!r} names no dashboard: its default is http://HEAD:8265)" if gcs else ""
        print(f"error: --address http://HEAD:8265 (or RAY_API_SERVER_ADDRESS, or RAY_ADDRESS as an http:// URL), "
              f"but got none{seen}", file=sys.stderr)
        return None
    try:
        return connect(args.address)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


def cluster_and_job(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """The cluster at ``--address`` and its job ``args.job``; None after printing why not."""
    from search.cluster import ClusterError, find_job

    cluster = cluster_or_none(args)
    if cluster is None:
        return None
    try:
        return cluster, find_job(cluster, args.job)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return None


@contextmanager
def ctrl_c_works() -> Iterator[None]:
    """Ctrl-C (SIGINT) raises KeyboardInterrupt for the block, also in a process that started with
    it ignored: a background job of a non-interactive shell (sbatch, nohup, `&`) does."""
    interrupt = signal.getsignal(signal.SIGINT)
    if interrupt is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, interrupt)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """`search stop` (Ray's job stop) and cluster managers end a command with SIGTERM: stop it as
    Ctrl-C does, so a search's Tune saves its state and its MLflow runs end interrupted, resumable,
    and a data set being generated removes its unfinished directory. (``search._ray.connect``
    puts it back after ``ray.init``, which installs a handler of its own that exits at once.)"""
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"an integer of at least 1, but got {text!r}")
    return value


def given_text(text: str) -> str:
    """An argparse type: a value that is not empty (an empty --config or --out was taken for no
    option at all, and an empty --checkpoint-dir for the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError(f"a non-empty value, but got {text!r}")
    return text
