"""``search._ray``: a local Ray instance lets Tune's trial actors run on its prestarted workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import search._ray
from search._ray import (
    MALLOC_TUNABLES,
    TUNE_TRIAL_ENV,
    RayHandle,
    _malloc_tunables_for_new_processes,
    trial_actor_env,
)

# Starts a local instance with search._ray.connect, waits for the workers Ray prestarts, then
# creates one actor the way Tune's controller does (its class cache) inside
# trial_actor_env and one outside it; prints which worker each ran in. Then counts
# the page faults of a task that allocates, fills and frees 40 MiB in a new thread (as Tune runs a
# trial), after its first time: in a worker of this instance, in one with glibc's defaults, in a
# trial actor given the runtime env a cluster's trials get, and in workers whose variable ends
# with an empty entry or with a setting that overrides ours.
_PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from search._ray import MALLOC_TUNABLES, RayHandle, connect, trial_actor_env

    def parent(pid):
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])

    def idle_workers():
        # Ray renames a worker ray::IDLE once it has registered and waits for work; the workers
        # of this instance descend from this process (through its raylet), other tests' do not.
        found = set()
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if not (entry / "cmdline").read_bytes().startswith(b"ray::IDLE"):
                    continue
                pid = int(entry.name)
                while pid > 1 and pid != os.getpid():
                    pid = parent(pid)
            except OSError:
                continue
            if pid == os.getpid():
                found.add(int(entry.name))
        return found

    handle = connect(num_cpus=2, log_to_driver=False)
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache

    deadline = time.monotonic() + 60
    while len(idle_workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    prestarted = idle_workers()

    def refaults():
        import ctypes, resource, threading

        libc = ctypes.CDLL(None)
        # PR_SET_THP_DISABLE: with transparent huge pages "always", glibc's mmap'd block would
        # fault in 2 MiB at a time, and the defaults' count would not show the 40 MiB
        libc.prctl(41, 1, 0, 0, 0)
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        size = 40 << 20
        counts = []

        def allocate():  # as torch allocates a tensor's memory (NumPy would ask for huge pages)
            for _ in range(4):
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                block = libc.malloc(size)
                ctypes.memset(block, 1, size)
                libc.free(block)
                counts.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

        thread = threading.Thread(target=allocate)
        thread.start()
        thread.join()
        return os.environ.get("GLIBC_TUNABLES"), sum(counts[1:])

    class Probe:
        def where(self):
            return os.getpid(), os.environ.get("PL_DISABLE_FORK")

        def refaults(self):
            return refaults()

    def actor():
        return _ActorClassCache().get(Probe).options(num_cpus=1).remote()

    with trial_actor_env(handle):
        inside = ray.get(actor().where.remote(), timeout=120)
    outside = ray.get(actor().where.remote(), timeout=120)

    def refaults_with(value):
        task = ray.remote(num_cpus=1, runtime_env={"env_vars": {"GLIBC_TUNABLES": value}})(refaults)
        return ray.get(task.remote(), timeout=120)

    with trial_actor_env(RayHandle(owned=False, address=None)):
        on_a_cluster = actor()
    print(json.dumps({"prestarted": sorted(prestarted), "inside": inside, "outside": outside,
                      "driver_env": os.environ.get("GLIBC_TUNABLES"), "refaults": {
                          "ours": ray.get(ray.remote(num_cpus=1)(refaults).remote(), timeout=120),
                          "glibc": refaults_with(""),
                          "cluster": ray.get(on_a_cluster.refaults.remote(), timeout=120),
                          "empty_entry": refaults_with(MALLOC_TUNABLES + ":${LOSSTUNE_UNSET}"),
                          "overridden": refaults_with(MALLOC_TUNABLES + ":glibc.malloc.mmap_max=65536"),
                      }}))
    handle.close()
    """
)


@pytest.fixture(scope="module")
def probed() -> dict:
    env = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_trial_actor_on_a_local_instance_runs_in_a_prestarted_worker_with_tunes_variables(probed):
    seen = probed
    assert len(seen["prestarted"]) == 2
    (inside_pid, inside_fork), (outside_pid, outside_fork) = seen["inside"], seen["outside"]
    assert inside_pid in seen["prestarted"]
    # the control: with Tune's runtime env Ray starts a new worker although one prestarted is idle
    assert outside_pid not in seen["prestarted"]
    # the variable Tune sets through its runtime env reaches the trial either way
    assert inside_fork == outside_fork == "1"


def test_a_worker_of_a_local_instance_reuses_freed_memory_where_glibcs_defaults_fault_it_in_again(probed):
    (ours_env, ours), (glibc_env, glibc) = probed["refaults"]["ours"], probed["refaults"]["glibc"]
    assert ours_env == MALLOC_TUNABLES and glibc_env == ""
    assert probed["driver_env"] is None  # set only while ray.init started the instance's processes
    # 40 MiB is 10240 pages: glibc's defaults map it afresh each time (over its 32 MiB mmap ceiling)
    assert glibc > 3 * 9000, glibc
    assert ours < 300, ours


def test_a_clusters_trial_worker_gets_malloc_tunables_followed_by_the_nodes_own(probed):
    # the node here is the local instance, whose raylet has MALLOC_TUNABLES: Ray expanded the
    # node's value into the runtime env's, and glibc took the combined setting
    env, faults = probed["refaults"]["cluster"]
    assert env == f"{MALLOC_TUNABLES}:{MALLOC_TUNABLES}" and faults < 300, (env, faults)
    # a node without the variable leaves an empty last entry, which glibc skips
    env, faults = probed["refaults"]["empty_entry"]
    assert env == f"{MALLOC_TUNABLES}:" and faults < 300, (env, faults)
    # and a node's setting after ours is the one glibc applies
    env, faults = probed["refaults"]["overridden"]
    assert env.endswith(":glibc.malloc.mmap_max=65536") and faults > 3 * 9000, (env, faults)


# Allocates, fills and frees 200 MiB in 1 MiB blocks, then returns freed memory as a trial does when
# it ends; prints the resident bytes before, after the frees and after the return.
_FREED = textwrap.dedent(
    """
    import ctypes, json, os

    from search.driver._trainable import return_freed_memory

    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = resident()
    blocks = [libc.malloc(1 << 20) for _ in range(200)]
    for block in blocks:
        ctypes.memset(block, 1, 1 << 20)
    for block in blocks:
        libc.free(block)
    kept = resident()
    return_freed_memory()
    print(json.dumps([before, kept, resident()]))
    """
)


def test_a_trial_worker_returns_the_memory_its_trial_freed_when_the_trial_ends():
    env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES}
    done = subprocess.run([sys.executable, "-c", _FREED], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    before, kept, returned = json.loads(done.stdout.strip().splitlines()[-1])
    mib = 1 << 20
    assert kept - before > 190 * mib  # the worker's malloc settings keep freed memory...
    assert returned - before < 20 * mib, (before, kept, returned)  # ...until the trial has ended


def test_malloc_tunables_the_user_set_come_after_ours_and_an_empty_value_keeps_glibcs_defaults(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    with _malloc_tunables_for_new_processes():
        assert os.environ["GLIBC_TUNABLES"] == MALLOC_TUNABLES + ":glibc.malloc.arena_max=4"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4"
    monkeypatch.setenv("GLIBC_TUNABLES", "")
    with _malloc_tunables_for_new_processes():
        assert os.environ["GLIBC_TUNABLES"] == ""
    assert os.environ["GLIBC_TUNABLES"] == ""
    monkeypatch.delenv("GLIBC_TUNABLES")
    with _malloc_tunables_for_new_processes():
        assert os.environ["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    assert "GLIBC_TUNABLES" not in os.environ


def test_tunes_runtime_env_is_kept_with_malloc_tunables_on_a_cluster_or_an_instance_started_elsewhere(monkeypatch):
    from ray.tune.execution import class_cache

    defaults, propagated = dict(class_cache.DEFAULT_ENV_VARS), set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert defaults  # else there is nothing to drop, and the test below proves nothing
    node = ":${GLIBC_TUNABLES}"  # the node's own value, which Ray expands in the worker's environment
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for handle in (RayHandle(owned=True, address="127.0.0.1:6379"), RayHandle(owned=False, address=None)):
        with trial_actor_env(handle):
            assert class_cache.DEFAULT_ENV_VARS == {**defaults, "GLIBC_TUNABLES": MALLOC_TUNABLES + node}
            assert class_cache.ENV_VARS_TO_PROPAGATE == propagated
    # the user's choice, or under `search submit` the head node's variable the job inherited
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    with trial_actor_env(RayHandle(owned=True, address="127.0.0.1:6379")):
        assert class_cache.DEFAULT_ENV_VARS == {
            **defaults, "GLIBC_TUNABLES": MALLOC_TUNABLES + ":glibc.malloc.arena_max=4" + node}
    monkeypatch.setenv("GLIBC_TUNABLES", "")  # glibc's defaults, then the node's settings
    with trial_actor_env(RayHandle(owned=True, address="127.0.0.1:6379")):
        assert class_cache.DEFAULT_ENV_VARS == {**defaults, "GLIBC_TUNABLES": node[1:]}
    with trial_actor_env(RayHandle(owned=True, address=None)):
        assert class_cache.DEFAULT_ENV_VARS == {} and not class_cache.ENV_VARS_TO_PROPAGATE
    assert class_cache.DEFAULT_ENV_VARS == defaults
    assert class_cache.ENV_VARS_TO_PROPAGATE == propagated


def test_the_variables_a_local_instance_gives_its_workers_are_the_ones_tune_sets_on_trial_actors():
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS

    assert TUNE_TRIAL_ENV == DEFAULT_ENV_VARS


# Starts a local instance (argv[1]: "connect", ours, or "init", Ray's own ray.init with the same
# settings) and ends it (RayHandle.close, ray.shutdown) once its autoscaler monitor, if any,
# handles SIGTERM; prints which kinds of process the instance ran, how long ending took and which
# processes were left.
_CLOSE = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path

    from search._ray import connect, resolve_address

    resolve_address(None)  # before Ray's import: both instances on 127.0.0.1 only
    import ray
    from ray._private import ray_constants, worker

    def descendants():
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = set(), [os.getpid()]
        while todo:
            for child in children.get(todo.pop(), []):
                found.add(child)
                todo.append(child)
        return found

    def handles_sigterm(pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
        return False

    if sys.argv[1] == "connect":
        handle = connect(num_cpus=1, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    started = worker._global_node.all_processes
    kinds = sorted(started)  # ray.shutdown empties it

    def minimal():  # the API server's command line, and the dashboard agent's in the raylet's
        found = set()
        for pid in descendants():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_text().split("\\0")
            except OSError:
                continue
            if any("--minimal" in arg for arg in argv):
                script = [arg for arg in argv if arg.endswith(".py") and not arg.startswith("-")]
                found.add(Path(script[0] if script else argv[0]).name)
        return sorted(found)

    minimal_processes = minimal()
    deadline = time.monotonic() + 60
    for monitor in started.get(ray_constants.PROCESS_TYPE_MONITOR, []):
        while not handles_sigterm(monitor.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    began = time.monotonic()
    if sys.argv[1] == "connect":
        handle.close()
    else:
        ray.shutdown()
    took = time.monotonic() - began
    deadline = time.monotonic() + 10
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.1)
    print(json.dumps({"kinds": kinds, "took": took, "left": sorted(descendants()), "minimal": minimal_processes}))
    """
)


def _closed(how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CLOSE, how], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_local_instance_runs_without_the_daemons_a_search_does_not_use_and_ends_all_its_processes():
    from ray._private import ray_constants

    ours, rays = _closed("connect"), _closed("init")
    unused = {ray_constants.PROCESS_TYPE_MONITOR, ray_constants.PROCESS_TYPE_LOG_MONITOR}
    assert unused <= set(rays["kinds"]), rays  # what Ray itself starts: the names still match
    assert set(ours["kinds"]) == set(rays["kinds"]) - unused, ours
    # the API server and the dashboard agent (started by the raylet) without their HTTP and gRPC servers
    assert ours["minimal"] == ["dashboard.py", "raylet"] and rays["minimal"] == [], (ours, rays)
    assert ours["left"] == [] and rays["left"] == []
    # Ray's shutdown stops the monitor after the GCS; on SIGTERM the monitor waits on that GCS
    # until Ray kills it after a second of grace
    assert ours["took"] + 0.5 < rays["took"], (ours, rays)


@pytest.mark.parametrize("log_to_driver", [False, True])
def test_only_the_instance_started_in_the_block_goes_without_them(log_to_driver):
    from ray._private.node import Node

    from search._ray import _without_unused_daemons

    methods = {name: getattr(Node, name) for name in ("start_monitor", "start_log_monitor", "start_api_server")}
    with _without_unused_daemons(log_to_driver=log_to_driver):
        skipped = {name for name, method in methods.items() if getattr(Node, name) is not method}
    # the log monitor forwards the workers' output to the driver
    assert skipped == ({"start_monitor"} if log_to_driver else {"start_monitor", "start_log_monitor"})
    assert all(getattr(Node, name) is method for name, method in methods.items())


@pytest.mark.parametrize("dashboard", [False, True])
def test_the_dashboards_processes_start_minimal_unless_the_dashboard_was_asked_for(dashboard):
    import ray._private.utils as ray_utils

    from search._ray import _minimal_dashboard_processes

    kept = ray_utils.get_dashboard_dependency_error
    assert kept() is None  # Ray's dashboard packages are installed here
    with _minimal_dashboard_processes(unless=dashboard):
        reason = ray_utils.get_dashboard_dependency_error()
    assert (reason is None) == dashboard
    assert ray_utils.get_dashboard_dependency_error is kept


def test_search_run_runs_its_search_without_tunes_runtime_env_on_the_instance_it_started(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from ray.tune.execution import class_cache

    import search._ray
    import search.driver
    from search.__main__ import main

    seen = []

    def run_search(plan, *, data=None):
        seen.append(dict(class_cache.DEFAULT_ENV_VARS))
        return SimpleNamespace(exit_code=0)

    # No Ray here: connect answers as for a local instance it started, and nothing needs closing.
    monkeypatch.setattr(search._ray, "connect", lambda **kwargs: RayHandle(owned=True, address=None))
    monkeypatch.setattr(RayHandle, "close", lambda self: None)
    monkeypatch.setattr(search.driver, "check_resources", lambda space, **_: None)
    monkeypatch.setattr(search.driver, "fit_concurrency", lambda plan: (plan, None))  # it asks Ray
    monkeypatch.setattr(search.driver, "run_search", run_search)
    space = Path(__file__).parent / "spaces" / "tiny.yaml"
    code = main(["run", str(space), "--storage", str(tmp_path / "runs"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 0 and seen == [{}]
    assert class_cache.DEFAULT_ENV_VARS == TUNE_TRIAL_ENV  # Tune's again once the search ended


@pytest.mark.parametrize("address", ["10.0.0.5:6379", "head-node:6379", "[::1]:6379", "ray://10.0.0.5:10001", "auto"])
def test_a_cluster_address_ray_takes_is_kept(address: str, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert search._ray.resolve_address(address) == address


@pytest.mark.parametrize("address", ["bad", "http://10.0.0.5:8265", "10.0.0.5:99999", "10.0.0.5:", ":6379"])
def test_an_address_that_is_no_cluster_is_an_error_naming_where_it_came_from(address: str, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(search._ray.RayOptionError, match=f"--address: a Ray cluster's HOST:PORT .* but got '{re.escape(address)}'"):
        search._ray.resolve_address(address)
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(search._ray.RayOptionError, match="RAY_ADDRESS: a Ray cluster's HOST:PORT"):
        search._ray.resolve_address(None)


def test_local_means_a_new_local_instance(monkeypatch):
    monkeypatch.setenv(search._ray._LOOPBACK_ENV, "0")  # restored after the test, as resolve_address sets it
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert search._ray.resolve_address(None) is None


def test_a_local_instance_listens_on_loopback_whatever_the_environment_said(monkeypatch):
    # before: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1, left from Ray's multi-node set-up, was kept and
    # the local instance's GCS, raylet and workers listened on every interface
    monkeypatch.setenv(search._ray._LOOPBACK_ENV, "1")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert search._ray.resolve_address(None) is None
    assert os.environ[search._ray._LOOPBACK_ENV] == "0"
