"""Helpers of the deploy tests: servers and jobs started in process groups of their own, registered
with the run's ``process_groups`` and stopped by their ids at the end of the test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A tiny digits search: two-epoch trials of a small MLP on 300 samples, one trial at a time.
TINY_SPACE = """\
name: tiny-deploy
data: {kind: digits, val_fraction: 0.2, limit: 300, labels: measured}
model: {kind: mlp, hidden: 16, dropout: 0.0}
train: {epochs: 2, batch_size: 64, lr: {loguniform: [1.0e-3, 3.0e-2]}, patience: 3, seed: 0}
heads:
  digit: {loss: {choice: {ce: {}, focal: {gamma: {uniform: [1.0, 2.0]}}}}}
  thickness: {loss: {choice: [ce, ordinal]}}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: NUM_SAMPLES, sampler: tpe, scheduler: none, max_concurrent: 1, seed: 0}
resources: {cpu: 1}
"""
TINY_EPOCHS = 2


def tiny_space(path: Path, *, num_samples: int) -> Path:
    path.write_text(TINY_SPACE.replace("NUM_SAMPLES", str(num_samples)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: subprocess.Popen | None = None,
    log: Path | None = None,
) -> float:
    """Poll ``check`` until it is true; fail if ``alive`` exits first or after ``timeout`` s."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        if alive is not None and alive.poll() is not None:
            text = log.read_text(errors="replace")[-4000:] if log else ""
            raise AssertionError(f"{what}: the process exited with {alive.returncode} first\n{text}")
        time.sleep(0.5)
    text = log.read_text(errors="replace")[-4000:] if log else ""
    raise AssertionError(f"{what}: not within {timeout:g} s\n{text}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a listening TCP socket on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def processes_with_env(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment holds ``marker`` (NAME=value)."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(
                    (int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                )
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return found


class Spawned:
    """Start processes in their own groups; ``stop_all`` ends each by its id (its stop signal, then
    SIGKILL to its group for whatever it left behind)."""

    def __init__(self, groups) -> None:
        self.groups = groups
        self.started: list[tuple[subprocess.Popen, int]] = []

    def __call__(
        self, argv: Sequence[str], *, log: Path, what: str, stop_signal: int = signal.SIGTERM, **popen
    ) -> subprocess.Popen:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
            )
        self.groups.add(process.pid, what)
        self.started.append((process, stop_signal))
        return process

    def stop(self, process: subprocess.Popen, stop_signal: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        self.groups.remove(process.pid)

    def stop_all(self) -> None:
        for process, stop_signal in reversed(self.started):
            self.stop(process, stop_signal)


@pytest.fixture(scope="session")
def kit():
    """This module's helpers (a test module cannot import a conftest under --import-mode=importlib)."""
    return sys.modules[__name__]


@pytest.fixture
def spawn(process_groups) -> Iterator[Spawned]:
    spawned = Spawned(process_groups)
    yield spawned
    spawned.stop_all()
