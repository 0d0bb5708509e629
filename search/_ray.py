"""Start Ray once for a search: a local instance bound to 127.0.0.1, or an existing cluster.

Ray is imported inside ``connect``: whether Ray advertises (and binds its servers to) the
loopback address or the machine's public address is decided from the environment when
``ray`` is first imported.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "MALLOC_TUNABLES",
    "RayHandle",
    "RayOptionError",
    "TUNE_TRIAL_ENV",
    "check_dashboard",
    "connect",
    "resolve_address",
    "trial_actor_env",
]

# What Tune's runtime env sets on every trial actor (ray.tune.execution.class_cache's
# DEFAULT_ENV_VARS; a test compares the two). Written out: importing Ray Tune here, before
# ray.init, would wait for the thread that imports it beside ray.init (search run).
TUNE_TRIAL_ENV = {"PL_DISABLE_FORK": "1"}

# glibc's malloc in the workers of a local instance (Ray starts its own daemons with its jemalloc
# preloaded and removes that preload for workers): one arena, no mmap, no trimming. Tune runs a
# trial in a new thread, and by default glibc gives it an arena whose emptied sub-heaps it
# unmaps, maps blocks over its (moving) threshold afresh and trims the top of its heap, so an
# epoch's activations were faulted in again step after step (20 to 320 thousand minor faults an
# epoch, none with these settings): at concurrency 2 a trial took 1.17x the plain loop's time,
# 1.04x with them (bench/c2_breakdown.py). A process keeps its high-water mark instead of
# returning freed memory, which its peak had counted anyway.
MALLOC_TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"
_MALLOC_ENV = "GLIBC_TUNABLES"
# Ray expands ${VAR} in a runtime env's variables from the node's environment before it starts the
# worker; glibc applies the last of repeated settings and skips an empty entry (a node without
# the variable), so a node's own settings (glibc.rtld.optional_static_tls for torch, say) win.
_NODE_MALLOC_ENV = "${" + _MALLOC_ENV + "}"

# On Linux Ray otherwise picks the public interface for its node address, so GCS, raylet and
# workers listen on every interface; with this set they listen on 127.0.0.1 only.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayOptionError(ValueError):
    """A Ray option this installation cannot honour (exit 2)."""


def check_dashboard() -> None:
    """The dashboard needs Ray's ``default`` extra (aiohttp_cors and others); without it Ray fails
    deep inside ``ray.init`` with "No module named 'aiohttp_cors'"."""
    import importlib.util

    if importlib.util.find_spec("aiohttp_cors") is None:
        from search._shell import install_command

        raise RayOptionError(
            f"--dashboard needs Ray's dashboard packages (`{install_command('cluster')}` in the "
            "losstune checkout; `make setup` installs them), but got none installed"
        )


@dataclass(frozen=True)
class RayHandle:
    """How this process reached Ray; ``owned``: started here, so ``close`` shuts it down."""

    owned: bool
    address: str | None
    dashboard_url: str | None = None  # http://host:port when this process started it

    def close(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()


def resolve_address(address: str | None) -> str | None:
    """The cluster to join (``address``, else ``RAY_ADDRESS``), or None for a local instance;
    RayOptionError for one that is not an address.

    Call before anything imports ``ray``: for a local instance it makes Ray use 127.0.0.1."""
    given = address or os.environ.get("RAY_ADDRESS") or None
    if given is None or given == "local":  # Ray's name for a new local instance
        # set, not defaulted: a 1 left from Ray's multi-node set-up made a local instance listen on
        # every interface, which it never needs
        os.environ[_LOOPBACK_ENV] = "0"
        return None
    if given != "auto" and not _is_host_port(given.removeprefix("ray://")):
        where = "--address" if address else "RAY_ADDRESS"
        raise RayOptionError(f"{where}: a Ray cluster's HOST:PORT (its GCS, e.g. 10.0.0.5:6379), ray://HOST:PORT, "
                             f"auto, or local (a new local instance), but got {given!r}")
    return given


def _is_host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and "/" not in host and port.isdigit() and 0 < int(port) < 65536


def connect(
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    log_to_driver: bool = True,
) -> RayHandle:
    """Join ``address`` (or ``RAY_ADDRESS``) when given; reuse an instance this process already
    runs; otherwise start a local one (loopback, dashboard off unless asked). ``log_to_driver``:
    whether the workers' stdout and stderr are echoed here (they stay in Ray's log files)."""
    address = resolve_address(address)
    import ray

    if ray.is_initialized():
        return RayHandle(owned=False, address=None)
    # WARNING in the workers too: Ray logs a line per trial checkpoint at INFO.
    quiet = ray.LoggingConfig(log_level="WARNING")
    if address is not None:
        with _callers_sigterm_handler():
            ray.init(address=address, logging_config=quiet, log_to_driver=log_to_driver)
        _plain_log_lines()
        return RayHandle(owned=True, address=address)
    # Tune's trial variables, set here so that the workers of this instance inherit them through
    # the raylet ray.init starts (see trial_actor_env); Tune sets them whatever the
    # environment holds
    os.environ.update(TUNE_TRIAL_ENV)
    # "local": never attach to a cluster started earlier by `ray start` unless asked to.
    with _callers_sigterm_handler(), _malloc_tunables_for_new_processes(), \
            _without_unused_daemons(log_to_driver=log_to_driver), _minimal_dashboard_processes(unless=dashboard):
        context = ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            logging_config=quiet,
            log_to_driver=log_to_driver,
        )
    _plain_log_lines()
    url = context.dashboard_url if dashboard else None
    return RayHandle(owned=True, address=None, dashboard_url=f"http://{url}" if url else None)


# Ray's plain format of a log line (its ray_constants.LOGGER_FORMAT, private there).
_RAY_LOG_FORMAT = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"


def _plain_log_lines() -> None:
    """Ray's logging config (``ray.init(logging_config=...)``) gives this process's Ray logger and
    root logger one handler, which writes the ids of Ray's job, worker and node and a timestamp in
    ns after each message (Tune's warning at Ctrl-C, any library's warning): noise at a terminal.
    Ray's plain format instead, from here on (lines logged during ``ray.init`` had the ids); the
    workers keep Ray's (their lines go to Ray's log files)."""
    for handler in logging.getLogger("ray").handlers:
        handler.setFormatter(logging.Formatter(_RAY_LOG_FORMAT))


def _workers_malloc_tunables() -> str:
    """``GLIBC_TUNABLES`` for trial workers: ``MALLOC_TUNABLES`` followed by this process's value
    when it has one (glibc applies the last of repeated settings, so the user's win); an empty
    value in this process keeps glibc's defaults."""
    user = os.environ.get(_MALLOC_ENV)
    if user is None:
        return MALLOC_TUNABLES
    return f"{MALLOC_TUNABLES}:{user}" if user else ""


@contextmanager
def _malloc_tunables_for_new_processes() -> Iterator[None]:
    """The workers' ``GLIBC_TUNABLES`` in the environment of the processes started in the block
    (glibc reads it when a process starts: this one keeps its own); the user's value, or none,
    afterwards."""
    user = os.environ.get(_MALLOC_ENV)
    os.environ[_MALLOC_ENV] = _workers_malloc_tunables()
    try:
        yield
    finally:
        if user is None:
            os.environ.pop(_MALLOC_ENV, None)
        else:
            os.environ[_MALLOC_ENV] = user


# The processes Ray's Node starts on a local instance that a search on it does not use, with the
# Node method that starts each: the autoscaler monitor (one node, nothing to scale; on SIGTERM it
# waited on the stopped GCS, 1.2 to 1.4 s of every shutdown against 0.2 to 0.4 s without it), and
# the log monitor when the workers' output is not echoed here (it only forwards that output to
# drivers). Together 0.85 % of a core on an idle instance, which trials at concurrency 2 on 2
# cores share with them. The API server stays even without the dashboard: the dashboard agent's
# event module asks for its address every second, and logs an error each time it finds none.
_AUTOSCALER_MONITOR = "start_monitor"
_LOG_MONITOR = "start_log_monitor"


def _unused_daemons(*, log_to_driver: bool) -> list[str]:
    """The Node methods whose processes a local instance for a search goes without."""
    return [_AUTOSCALER_MONITOR] if log_to_driver else [_AUTOSCALER_MONITOR, _LOG_MONITOR]


def _not_started(self: object) -> None:
    """In place of a Node method that starts a process the instance goes without."""


@contextmanager
def _callers_sigterm_handler() -> Iterator[None]:
    """Put the caller's SIGTERM handler back after the block: ``ray.init`` replaces it with one
    that exits at once (``SystemExit``), which is what SIGTERM does while Ray starts."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not installed from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def _without_unused_daemons(*, log_to_driver: bool) -> Iterator[None]:
    """Ray's Node starts a local instance in the block without ``_unused_daemons``. A Ray whose
    Node has no such method (another version) starts that process as it always does."""
    from ray._private.node import Node

    unused = _unused_daemons(log_to_driver=log_to_driver)
    kept = {name: getattr(Node, name) for name in unused if hasattr(Node, name)}
    for name in kept:
        setattr(Node, name, _not_started)
    try:
        yield
    finally:
        for name, method in kept.items():
            setattr(Node, name, method)


@contextmanager
def _minimal_dashboard_processes(*, unless: bool) -> Iterator[None]:
    """Ray's Node starts the API server and the dashboard agent of a local instance in the block
    with ``--minimal``, as it does where the dashboard's packages are missing, ``unless`` the
    dashboard was asked for: the agent without its gRPC and HTTP servers (it still loads its
    modules, which read their own check), the API server without its metrics server, none of
    which a local search uses. With them Ray's processes took 0.4 to 0.9 s more CPU at start, and
    ``ray.init`` on 2 cores, where every process Ray starts competes for them, about 0.25 s more
    (bench/README.md, Search overhead). Ray asks ``get_dashboard_dependency_error`` when it builds
    their command lines in this process, nowhere else here; a Ray without that function starts
    them as it always does."""
    import ray._private.utils as ray_utils

    kept = getattr(ray_utils, "get_dashboard_dependency_error", None)
    if unless or kept is None:
        yield
        return
    ray_utils.get_dashboard_dependency_error = lambda: "a local search's Ray instance runs without the dashboard"
    try:
        yield
    finally:
        ray_utils.get_dashboard_dependency_error = kept


@contextmanager
def trial_actor_env(handle: RayHandle) -> Iterator[None]:
    """How Tune starts trial actors while the block runs.

    On a local instance this process started: without Tune's runtime env, so that the first
    trials run on workers Ray prestarted. Tune gives every trial actor a runtime env that only
    sets environment variables copied from this process (``PL_DISABLE_FORK=1``, and cloud
    credentials or Ray Train settings when set). Ray runs an actor with a runtime env only in a
    worker started with that env, never in one of the workers it prestarts when the driver
    connects, so the first trial waited for a new worker (about 0.6 s more before it ended,
    bench/search_overhead.py). The workers of a local instance inherit this process's
    environment, as it was at ``ray.init``, from the raylet ``connect`` started, with Tune's own
    variables (``TUNE_TRIAL_ENV``) and ``MALLOC_TUNABLES`` set there. The variables Tune copies
    are the user's (nothing here sets one after ``ray.init``), so trials see the same variables
    either way.

    On a cluster, or on an instance this process did not start, the workers' environment is the
    one their nodes started with: Tune's runtime env is kept, with ``GLIBC_TUNABLES`` added (the
    workers' settings of a local instance, followed by the node's own value), which Ray sets in
    every trial worker it starts for that env. A search submitted as a Ray job runs where the head
    node's variable, if any, looks like the user's: it comes after ours all the same."""
    from ray.tune.execution import class_cache

    kept = class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE
    if handle.owned and handle.address is None:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = {}, set()
    else:
        tunables = ":".join(filter(None, (_workers_malloc_tunables(), _NODE_MALLOC_ENV)))
        class_cache.DEFAULT_ENV_VARS = {**kept[0], _MALLOC_ENV: tunables}
    try:
        yield
    finally:
        class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE = kept
