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
from pathlib import Path

import pytest

# Ray reads this when it is first imported (test modules import it at collection): a local
# instance then advertises and binds 127.0.0.1 instead of the machine's public address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

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
