"""Shared fixtures and the test run's safety net.

Only the driver tests use Ray: one local instance for the whole session (``ray_session``). The
suite runs in a pytest-xdist worker (``-n 1`` in pyproject.toml): when Ray dies, it takes the
process it serves with it (its core worker exits the process at once), and then the controller
still prints pytest's report, naming the test that was running, and runs the rest in a new worker.

Servers and searches a test starts in a process group of their own are registered with
``process_groups``; whatever is still registered at the end of the run (its test process died
before it could stop them) is killed by the controller.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Ray reads this when it is first imported (test modules import it at collection): a local
# instance then advertises and binds 127.0.0.1 instead of the machine's public address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]

# The registry directory, created by the controller (or a plain pytest) and inherited by workers.
_GROUPS_ENV = "LOSSTUNE_TEST_PROCESS_GROUPS"


class ProcessGroups:
    """Process groups started by tests, one file each (named by the group id, holding what it is)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, pgid: int, what: str) -> None:
        (self.directory / str(pgid)).write_text(what)

    def remove(self, pgid: int) -> None:
        (self.directory / str(pgid)).unlink(missing_ok=True)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller made the registry
        return
    os.environ[_GROUPS_ENV] = tempfile.mkdtemp(prefix="losstune-test-groups-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    directory = Path(os.environ.pop(_GROUPS_ENV))
    for entry in sorted(directory.iterdir()):
        try:
            os.killpg(int(entry.name), signal.SIGKILL)
        except ProcessLookupError:
            continue
        print(f"\nstopped process group {entry.name} left running by its test: {entry.read_text()}")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def process_groups() -> ProcessGroups:
    """Register a process group a test starts (``start_new_session=True``: its pid is its group id)
    and remove it once the test stopped it; the end of the run kills what is left."""
    return ProcessGroups(Path(os.environ[_GROUPS_ENV]))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs, no dashboard) for every in-process driver test."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_config=ray.LoggingConfig(log_level="WARNING"),
    )
    yield
    ray.shutdown()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


@pytest.fixture(scope="session")
def process_tree() -> Any:
    """process_tree(pid) -> the process and its descendants' ids."""
    return _process_tree


@dataclass
class MlflowServer:
    """``mlflow/serve`` running in its own process group (so nothing it starts outlives the test)."""

    process: Any
    url: str
    port: int
    started_s: float  # seconds until /health answered
    groups: Any  # the run's ProcessGroups (see tests/conftest.py)

    def tree(self) -> list[int]:
        """The server's process and all its descendants (from /proc)."""
        return _process_tree(self.process.pid)

    def stop(self, timeout: float = 30.0) -> int:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.groups.remove(self.process.pid)
        return self.process.returncode


def start_server(store: Path, *, groups: Any, port: int | None = None, timeout: float = 90.0) -> MlflowServer:
    import subprocess
    import time
    import urllib.request

    port = port or free_port()
    log = open(store.parent / f"serve-{port}.log", "ab")  # noqa: SIM115 - closed with the process
    started = time.monotonic()
    process = subprocess.Popen(
        [str(REPO / "mlflow" / "serve"), "--port", str(port), "--store", str(store)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    groups.add(process.pid, f"mlflow/serve on port {port}")
    server = MlflowServer(process, f"http://127.0.0.1:{port}", port, 0.0, groups)
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            text = (store.parent / f"serve-{port}.log").read_text(errors="replace")
            raise AssertionError(f"mlflow/serve exited with {process.returncode}:\n{text[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    server.started_s = time.monotonic() - started
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise AssertionError(f"mlflow/serve did not answer /health within {timeout:g} s")


@pytest.fixture(scope="session")
def start_mlflow_server(process_groups):
    """start_mlflow_server(store_dir, port=None) -> a started MlflowServer the caller stops."""

    def start(store: Path, *, port: int | None = None) -> MlflowServer:
        return start_server(store, port=port, groups=process_groups)

    return start


@pytest.fixture
def serve(process_groups):
    """serve(store_dir, port=None) -> a started MlflowServer; stopped at the end of the test."""
    servers: list[MlflowServer] = []

    def start(store: Path, *, port: int | None = None) -> MlflowServer:
        server = start_server(store, port=port, groups=process_groups)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()




def _idx(array: Any) -> bytes:
    import struct

    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_mnist(directory: Path, *, compress: bool, rng: Any) -> dict[str, tuple[Any, Any]]:
    """MNIST's four IDX files (40 training, 12 test images of random pixels, labels 0-9 in turn),
    gzipped or not; returns prefix -> (images, labels)."""
    import gzip

    import numpy as np

    parts = {}
    for prefix, count in (("train", 40), ("t10k", 12)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        parts[prefix] = images, labels
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = _idx(array)
            name = f"{prefix}-{kind}"
            if compress:
                (directory / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / name).write_bytes(data)
    return parts


@pytest.fixture(scope="session")
def write_mnist() -> Any:
    """write_mnist(directory, *, compress, rng): a tiny MNIST in the real file format."""
    return _write_mnist
