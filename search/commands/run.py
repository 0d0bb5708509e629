"""``search run SPACE``: a whole search with Ray Tune, resumable, tracked in MLflow."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from search import exit_codes
from search.commands._common import (
    STORAGE_DEFAULT, add_command, ctrl_c_works, given_text, plugins_and_space, positive_int, sigterm_as_ctrl_c,
)

__all__ = ["add_parser", "run"]

HELP = "run a loss-design search (Ray Tune + Optuna + ASHA, tracked in MLflow)"
DESCRIPTION = (
    "Run the search a space file describes. Each trial result is printed as it "
    "arrives; at the end a summary table, <run dir>/best_config.yaml and the MLflow UI command."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search run spaces/vimh.yaml
      # after a crash or Ctrl-C: the same command resumes the unfinished search (or say --resume)
      python -m search run spaces/vimh.yaml --resume
      python -m search run spaces/vimh.yaml --resume vimh-loss-search-20261203-101500-1a2b3c
      # results elsewhere, another MLflow store, an existing Ray cluster
      python -m search run spaces/vimh.yaml --storage /data/runs --tracking-uri http://127.0.0.1:5000 \\
          --address 10.0.0.5:6379

    Results: <storage>/<name>/ (Tune state, checkpoints, best_config.yaml, summary.txt).
    Every new search gets its own search id and MLflow parent run; a search is resumed only
    through its own run directory, so removing runs/ never touches an earlier search's runs.
    MLflow: --tracking-uri > MLFLOW_TRACKING_URI > the space's mlflow.tracking_uri > mlflow/mlflow.db;
    on a cluster (--address, RAY_ADDRESS) an http(s) server or a database URI, not a local file.
    While the tracking server is unreachable, results are buffered and sent when it is back.
    Exit status: 0 search finished (some trials may have failed), 1 every trial failed,
    2 invalid space or options, 130 interrupted (resumable).
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "run", HELP, DESCRIPTION, EXAMPLES)
    parser.add_argument(
        "--resume",
        type=given_text,
        nargs="?",
        const=True,
        default=False,
        metavar="SEARCH_ID",
        help="continue the unfinished search in <storage>/<name> (with SEARCH_ID: only if it is that search)",
    )
    parser.add_argument(
        "--warm-start",
        type=given_text,
        metavar="SEARCH",
        help="start the sampler from the scored trials of an earlier search (id or name) in the same MLflow "
        "store whose configs fit this space",
    )
    parser.add_argument("--storage", type=given_text, default=STORAGE_DEFAULT, metavar="DIR",
                        help=f"results directory (default: {STORAGE_DEFAULT})")
    parser.add_argument(
        "--name",
        metavar="NAME",
        help="search name: its run directory and search id (default: the space's name); its MLflow runs stay "
        "in the space's MLflow experiment, beside the space's other searches",
    )
    parser.add_argument("--tracking-uri", type=given_text, metavar="URI", help="MLflow tracking URI")
    parser.add_argument("--address", type=given_text, metavar="HOST:PORT", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--num-cpus", type=positive_int, metavar="N", help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard (on 127.0.0.1)")
    parser.add_argument(
        "--verbose",
        type=int,
        default=0,
        choices=range(4),
        metavar="{0..3}",
        help="Ray Tune's own progress output besides the driver's line per trial result (default: 0, none)",
    )
    return parser


def _node_local_storage(location: Any) -> Path | None:
    """The storage directory holding ``location`` (a search's run directory) when it lies on each
    node's own file system, which the nodes share only where a shared file system is mounted: a
    local path, or a ``file://`` URI, which names such a path just as well; None for other URIs
    (s3://, gs://), which are every node's by nature."""
    return None if location.local_dir is None else location.local_dir.parent


def _ray_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The options this command gave its Ray instance, as a resume command repeats them."""
    flags = ["--address", args.address] if args.address else []
    flags += ["--num-cpus", str(args.num_cpus)] if args.num_cpus is not None else []
    return (*flags, *(["--dashboard"] if args.dashboard else []))


def run(args: argparse.Namespace) -> int:
    from search._noise import filtered_noise
    from search.console import shown_on

    # Ctrl-C and SIGTERM must stop the search, also when it runs as a background job.
    with ctrl_c_works(), sigterm_as_ctrl_c(), filtered_noise(verbose=args.verbose), shown_on(), ExitStack() as held:
        return _run(args, held)


def _run(args: argparse.Namespace, held: ExitStack) -> int:
    """``held``: what the search holds until the command ends (its run directory)."""
    loaded = plugins_and_space(args.space)
    if loaded is None:
        return exit_codes.INVALID
    _, space = loaded

    from search import _ray
    from search.cluster import (
        JOB_ENV, SUBMITTED_ADDRESS_ENV, SUBMITTED_SPACE_ENV, ClusterError, check_paths_on_every_node, check_shared_storage,
    )

    try:
        address = _ray.resolve_address(args.address)  # before Ray is imported
        if address is not None and (args.num_cpus is not None or args.dashboard):
            given = "--num-cpus" if args.num_cpus is not None else "--dashboard"
            raise _ray.RayOptionError(f"{given}: an option of a local Ray instance, but got a cluster to join "
                                      f"({address}; its own `ray start` sets its CPUs and dashboard)")
        if args.dashboard:  # before the data set is prepared, which may take minutes
            _ray.check_dashboard()
    except _ray.RayOptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    from search.driver import (
        SearchInputError,
        SearchOptions,
        RunDirectoryHold,
        check_resources,
        fit_concurrency,
        import_run_in_background,
        plan_search,
        prepare_data,
        search_location,
    )

    options = SearchOptions(
        storage=args.storage,
        name=args.name,
        resume=bool(args.resume),
        resume_id=args.resume if isinstance(args.resume, str) else None,
        tracking_uri=args.tracking_uri,
        verbose=args.verbose,
        ray_job=os.environ.get(JOB_ENV) or None,
        space_shown=os.environ.get(SUBMITTED_SPACE_ENV) or None,
        submitted_to=os.environ.get(SUBMITTED_ADDRESS_ENV) or None,
        warm_start=args.warm_start,
        ray_flags=_ray_flags(args),
    )
    from search._preflight import TrackingUriError, check_reachable, check_store_uri, check_tracking_uri
    from trainables.data.vimh import progress_bar

    try:
        if args.tracking_uri is not None:  # the option itself first: a finished search's name hid it
            check_store_uri(args.tracking_uri, writing=True)
            check_tracking_uri(args.tracking_uri, cluster=address is not None)
        hold = RunDirectoryHold(search_location(space, options))
        held.callback(hold.release)
        hold.take(make=False)  # before the search's state is read: a resume may repair it
        plan = plan_search(space, options)
        space = plan.space  # on a resume, the space the search started with
        if plan.finished:  # --resume of a finished search: its summary again, without Ray or MLflow
            from search.driver import run_search

            return run_search(plan).exit_code
        # Where the search logs, checked before the data set is loaded and before Ray starts.
        check_tracking_uri(plan.tracking_uri, cluster=address is not None)
        check_reachable(plan.tracking_uri)
        hold.take(make=True)  # the options are valid: the storage folder may be made now
        data = prepare_data(space, progress=progress_bar(sys.stderr, label=f"preparing data set {space.data.kind}"))
    except (SearchInputError, TrackingUriError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    from search.tracking import StoreError, open_store_in_background

    opening = open_store_in_background(plan.tracking_uri)
    importing = import_run_in_background()
    # Trial workers' own output (a worker's exit at shutdown, say) reaches the terminal only when
    # Ray's output is asked for; what trials report goes through the driver's lines.
    try:
        handle = _ray.connect(
            address=address, num_cpus=args.num_cpus, dashboard=args.dashboard, log_to_driver=args.verbose > 0
        )
    except SystemExit as exc:  # SIGTERM while Ray starts: ray.init's own handler exits at once
        if exc.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt from None  # stopped as on Ctrl-C
    finally:  # also on Ctrl-C: the store's thread is not cut off half-way
        opening.join()
    if handle.dashboard_url:
        print(f"Ray dashboard: {handle.dashboard_url}", flush=True)
    from mlflow.exceptions import MlflowException  # imported by the store's opening by now

    try:
        if opening.error is not None:
            raise opening.error
        importing.join()
        # raises what the thread's import met, if anything
        from search.driver import run_search

        with _ray.trial_actor_env(handle):
            note = check_resources(space, joined=address is not None)
            if note is not None:
                print(f"note: {note}", flush=True)
            if address is None:
                plan, note = fit_concurrency(plan)
                if note is not None:
                    print(f"note: {note}", flush=True)
            if address is not None:
                shared = _node_local_storage(plan.location)
                if shared is not None:
                    check_shared_storage(shared)
                if data is None and space.data.path is not None:
                    check_paths_on_every_node([str(space.data.path)], what="data.path (search.data_loading: per_node)")
            return run_search(plan, data=data).exit_code
    except (SearchInputError, ClusterError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    except MlflowException as exc:  # a store that answers and refuses (credentials, permissions): no retry helps
        from search.tracking import redact_text, redact_uri

        reason = redact_text(next(iter(str(exc).splitlines()), type(exc).__name__), plan.tracking_uri)
        print(f"error: MLflow at {redact_uri(plan.tracking_uri)} must accept the search's runs, but refused: {reason}",
              file=sys.stderr)
        return exit_codes.INVALID
    finally:
        handle.close()
