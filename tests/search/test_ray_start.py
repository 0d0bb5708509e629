"""``search._ray``: a local Ray instance lets Tune's trial actors run on its prestarted workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from search._ray import TUNE_TRIAL_ENV, RayHandle, trials_on_prestarted_workers

# Starts a local instance with search._ray.connect, waits for the workers Ray prestarts, then
# creates one actor the way Tune's controller does (its class cache) inside
# trials_on_prestarted_workers and one outside it; prints which worker each ran in.
_PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from search._ray import connect, trials_on_prestarted_workers

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

    class Probe:
        def where(self):
            return os.getpid(), os.environ.get("PL_DISABLE_FORK")

    def run_one():
        actor = _ActorClassCache().get(Probe).options(num_cpus=1).remote()
        return ray.get(actor.where.remote(), timeout=120)

    with trials_on_prestarted_workers(handle):
        inside = run_one()
    outside = run_one()
    print(json.dumps({"prestarted": sorted(prestarted), "inside": inside, "outside": outside}))
    handle.close()
    """
)


def test_a_trial_actor_on_a_local_instance_runs_in_a_prestarted_worker_with_tunes_variables():
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["prestarted"]) == 2
    (inside_pid, inside_fork), (outside_pid, outside_fork) = seen["inside"], seen["outside"]
    assert inside_pid in seen["prestarted"]
    # the control: with Tune's runtime env Ray starts a new worker although one prestarted is idle
    assert outside_pid not in seen["prestarted"]
    # the variable Tune sets through its runtime env reaches the trial either way
    assert inside_fork == outside_fork == "1"


def test_tunes_runtime_env_is_kept_on_a_cluster_or_an_instance_started_elsewhere_and_restored_after():
    from ray.tune.execution import class_cache

    defaults, propagated = dict(class_cache.DEFAULT_ENV_VARS), set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert defaults  # else there is nothing to drop, and the test below proves nothing
    for handle in (RayHandle(owned=True, address="127.0.0.1:6379"), RayHandle(owned=False, address=None)):
        with trials_on_prestarted_workers(handle):
            assert class_cache.DEFAULT_ENV_VARS == defaults
            assert class_cache.ENV_VARS_TO_PROPAGATE == propagated
    with trials_on_prestarted_workers(RayHandle(owned=True, address=None)):
        assert class_cache.DEFAULT_ENV_VARS == {} and not class_cache.ENV_VARS_TO_PROPAGATE
    assert class_cache.DEFAULT_ENV_VARS == defaults
    assert class_cache.ENV_VARS_TO_PROPAGATE == propagated


def test_the_variables_a_local_instance_gives_its_workers_are_the_ones_tune_sets_on_trial_actors():
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS

    assert TUNE_TRIAL_ENV == DEFAULT_ENV_VARS


# Starts a local instance with connect and ends it (argv[1]: "close", our RayHandle.close, or
# "shutdown", Ray's own) once its autoscaler monitor handles SIGTERM; prints how long ending took,
# how the monitor ended and which of the instance's processes were left.
_CLOSE = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path

    from ray._private import ray_constants, worker

    from search._ray import connect

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

    handle = connect(num_cpus=1, log_to_driver=False)
    (monitor,) = worker._global_node.all_processes[ray_constants.PROCESS_TYPE_MONITOR]
    deadline = time.monotonic() + 60
    while not handles_sigterm(monitor.process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    if sys.argv[1] == "close":
        handle.close()
    else:
        import ray

        ray.shutdown()
    took = time.monotonic() - started
    deadline = time.monotonic() + 10
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.1)
    print(json.dumps({"took": took, "monitor_exit": monitor.process.poll(), "left": sorted(descendants())}))
    """
)


def _closed(how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CLOSE, how], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "autoscaler" not in done.stdout + done.stderr  # the monitor told no one it "failed"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_closing_a_local_instance_ends_all_its_processes_without_waiting_for_the_autoscaler_monitor():
    ours, rays = _closed("close"), _closed("shutdown")
    assert ours["left"] == [] and rays["left"] == []
    # Ray's own shutdown sends the monitor SIGTERM once the GCS is stopped; the monitor's handler
    # then waits on that GCS until Ray kills it after a second of grace. Ours kills it first.
    assert rays["took"] >= 1.0 and rays["monitor_exit"] == -signal.SIGKILL, rays
    assert ours["took"] + 0.5 < rays["took"], (ours, rays)


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
    monkeypatch.setattr(search.driver, "check_resources", lambda space: None)
    monkeypatch.setattr(search.driver, "run_search", run_search)
    space = Path(__file__).parent / "spaces" / "tiny.yaml"
    code = main(["run", str(space), "--storage", str(tmp_path / "runs"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 0 and seen == [{}]
    assert class_cache.DEFAULT_ENV_VARS == TUNE_TRIAL_ENV  # Tune's again once the search ended
