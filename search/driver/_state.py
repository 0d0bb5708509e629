"""Tune's experiment state in the run directory, made safe against a driver killed mid-copy.

Tune writes its state (trial list, searcher, Optuna study) into a staging directory and then
copies it into the run directory in the background. A driver killed during that copy leaves
truncated files there, and Tune's restore then fails and silently starts a broken new run.
``StateSnapshot`` keeps an atomic copy of the staging files, taken right after Tune wrote them;
``usable_state`` checks the run directory before a resume and puts the copy back if needed.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import zipfile
from pathlib import Path
from typing import Any

from ray.tune import Callback

__all__ = ["SNAPSHOT_FILE", "StateSnapshot", "clear_state", "usable_state"]

SNAPSHOT_FILE = ".losstune-tune-state.zip"
_EXPERIMENT_STATE = "experiment_state-*.json"
# Tune's driver-side state files (experiment_state-*.json, search_gen_state-*.json,
# searcher-state-*.pkl, ...): "<kind>-<session>.<json|pkl>"; tuner.pkl is written once, up front.
_STATE_PATTERNS = ("*-*.json", "*-*.pkl")


def _atomic_write(path: Path, data: bytes) -> None:
    # Against a killed driver, a write then a rename is enough: the kernel keeps what a dead process
    # wrote. No fsync: it would only add safety against a power loss, which Tune's own state files
    # lack too (usable_state treats a snapshot cut off that way as missing), and with the
    # TensorBoard logger it cost the driver a tenth of its time per result.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class StateSnapshot(Callback):
    """After every Tune step that saved new state, copy the staging files into one atomic file."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self._fingerprint: tuple | None = None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # Tune saves its state earlier in the same step, so the staging files are complete here.
        if not trials:
            return
        staging = Path(trials[0].storage.experiment_driver_staging_path)
        if not staging.is_dir():
            return
        files = sorted(p for p in staging.iterdir() if p.is_file() and not p.name.startswith("."))
        fingerprint = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if fingerprint == self._fingerprint:
            return
        # A zip, not a pickle: reading the snapshot back must never execute anything.
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for p in files:
                archive.writestr(p.name, p.read_bytes())
        _atomic_write(Path(self.run_dir) / SNAPSHOT_FILE, buffer.getvalue())
        self._fingerprint = fingerprint


def _loads(path: Path) -> bool:
    data = path.read_bytes()
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    try:
        # Walks the opcodes without executing them: a file cut off mid-copy has no STOP opcode.
        for _ in pickletools.genops(data):
            pass
        return True
    except ValueError:
        return False


def _state_files(run_dir: Path) -> list[Path]:
    found = (p for pattern in _STATE_PATTERNS for p in run_dir.glob(pattern))
    return [p for p in found if p.is_file() and not p.name.startswith(".")]


def _state_ok(run_dir: Path) -> bool:
    return any(run_dir.glob(_EXPERIMENT_STATE)) and all(_loads(p) for p in _state_files(run_dir))


def clear_state(run_dir: Path) -> None:
    """Remove the unusable state of an earlier attempt before a search starts again in ``run_dir``."""
    for path in [*_state_files(run_dir), run_dir / SNAPSHOT_FILE]:
        path.unlink(missing_ok=True)


def usable_state(run_dir: Path) -> tuple[bool, bool]:
    """(Tune can resume from ``run_dir``, the state had to be restored from the snapshot)."""
    if _state_ok(run_dir):
        return True, False
    snapshot = run_dir / SNAPSHOT_FILE
    if not snapshot.exists():
        return False, False
    try:
        with zipfile.ZipFile(snapshot) as archive:
            files = {Path(name).name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):  # cut off by a power loss (it is not fsynced)
        return False, False
    for name, data in files.items():
        _atomic_write(run_dir / name, data)
    return _state_ok(run_dir), True
