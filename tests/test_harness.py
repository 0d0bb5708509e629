"""The test run's safety net (tests/conftest.py with this project's pytest options): when the shared
Ray dies in the middle of a test, the run still ends with pytest's report naming that test, the
other tests run, and a server a test started in its own process group is stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TESTS = '''
import os
import signal
import subprocess
import time

import ray


def test_first_starts_a_server_and_leaves_it_to_the_run(process_groups, tmp_path):
    server = subprocess.Popen(["sleep", "600"], start_new_session=True)
    (tmp_path.parent.parent / "server.pid").write_text(str(server.pid))
    process_groups.add(server.pid, "a server that outlives its test")


def test_ray_dies_under_this_test(ray_session):
    assert ray.get(ray.put(1)) == 1
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process
    os.kill(raylet.pid, signal.SIGKILL)
    time.sleep(10)  # Ray's core worker ends this process meanwhile
    ray.get(ray.put(2))


def test_after_the_crash():
    assert True
'''


def test_a_dead_ray_ends_in_pytests_report_and_leaves_no_server_running(tmp_path: Path):
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_crash.py").write_text(TESTS)
    base = tmp_path / "base"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LOSSTUNE_TEST_PROCESS_GROUPS")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
         "-p", "no:cacheprovider", "--basetemp", str(base), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "worker 'gw0' crashed while running 'test_crash.py::test_ray_dies_under_this_test'" in output, output
    assert "1 failed, 2 passed" in output, output
    pid = int((base / "server.pid").read_text())
    assert f"stopped process group {pid} left running by its test: a server that outlives its test" in output
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text().lower()
