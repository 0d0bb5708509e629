"""Tune's experiment state in the run directory, made safe against a driver killed mid-copy.

Tune writes its state (trial list, searcher, Optuna study) into a staging directory and then
copies it into the run directory in the background. A driver killed during that copy leaves
truncated files there, and Tune's restore then fails and silently starts a broken new run.
``StateSnapshot`` keeps an atomic copy of the staging files, taken right after Tune wrote them;
``usable_state`` makes that copy the run directory's state before a resume, unless Tune's own copy
there is whole and later (it may lag the snapshot, or be cut off).

Tune keeps one checkpoint per trial (``num_to_keep=1``): it deletes a trial's previous checkpoint
as it registers the new one, and saves its state, which still names the previous one until then,
later in the same step. A driver killed in between leaves a state whose trial Tune cannot restore
("does not exist on storage anymore"). ``StateSnapshot`` therefore keeps hard links to the
checkpoint Tune is about to delete, in the trial's ``.losstune-kept`` directory, until a snapshot
names the new one. Before a resume, ``usable_state`` puts back each kept checkpoint that the state
it resumes from still names, and drops the others: put back beside the one that state names, a
checkpoint would stay on disk for good, since Tune deletes only the checkpoints it knows.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickletools
import shutil
import zipfile
from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ray.tune import Callback

__all__ = ["KEPT_DIR", "SNAPSHOT_FILE", "StateSnapshot", "clear_state", "usable_state"]

SNAPSHOT_FILE = ".losstune-tune-state.zip"
_EXPERIMENT_STATE = "experiment_state-*.json"
# Tune's driver-side state files (experiment_state-*.json, search_gen_state-*.json,
# searcher-state-*.pkl, ...): "<kind>-<session>.<json|pkl>"; tuner.pkl is written once, up front.
_STATE_PATTERNS = ("*-*.json", "*-*.pkl")
KEPT_DIR = ".losstune-kept"  # in a trial's directory: checkpoints Tune deleted before a snapshot named the next
# beside each kept checkpoint: the Tune step it was kept in, which a saved state that counts it replaced
_STEP_SUFFIX = ".step"

logger = logging.getLogger(__name__)


def _atomic_write(path: Path, data: bytes) -> None:
    # Against a killed driver, a write then a rename is enough: the kernel keeps what a dead process
    # wrote. No fsync: it would only add safety against a power loss, which Tune's own state files
    # lack too (usable_state treats a snapshot cut off that way as missing), and with the
    # TensorBoard logger it cost the driver a tenth of its time per result.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _link_tree(source: Path, target: Path) -> None:
    # Hard links: keeping a checkpoint costs no copy; Tune writes each checkpoint once into a new
    # directory, so the linked files never change under us.
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_dir():
            _link_tree(path, target / path.name)
        else:
            try:
                os.link(path, target / path.name)
            except OSError:  # a file system without hard links
                shutil.copy2(path, target / path.name)


def _step_file(kept: Path) -> Path:
    return kept.with_name(kept.name + _STEP_SUFFIX)


def _keep(checkpoint: Path, *, step: int) -> Path:
    """Hard-link ``checkpoint`` into its trial's KEPT_DIR, whole or not at all, kept in Tune's
    ``step``; the kept path."""
    kept = checkpoint.parent / KEPT_DIR / checkpoint.name
    if not kept.exists():
        building = kept.with_name(f".{kept.name}.tmp")  # put back only once complete
        shutil.rmtree(building, ignore_errors=True)
        _link_tree(checkpoint, building)
        os.replace(building, kept)
    _atomic_write(_step_file(kept), str(step).encode())  # none (killed first): put back, as before
    return kept


def _drop(kept: Path) -> None:
    shutil.rmtree(kept, ignore_errors=True)
    _step_file(kept).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: another checkpoint of the trial is still kept
        kept.parent.rmdir()


def _replaced(*, kept_in: int, saved: int) -> bool:
    """Whether the state Tune saved in step ``saved`` names the checkpoint that replaced one kept in
    step ``kept_in``: Tune saves its step count before it counts the step, so a state counts the
    step whose checkpoint it already names."""
    return kept_in <= saved


def _kept_step(kept: Path) -> int | None:
    try:
        return int(_step_file(kept).read_text())
    except (OSError, ValueError):
        return None


class StateSnapshot(Callback):
    """After every Tune step that saved new state, copy the staging files into one atomic file
    in the run directory; keep each trial's previous checkpoint until that copy names its new one."""

    def __init__(self) -> None:
        self._fingerprint: tuple | None = None
        self._kept: list[tuple[int, Path]] = []  # (Tune iteration it was kept in, kept path)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A resumed search gets its callbacks back from the pickle of its first start, perhaps
        # written by an earlier losstune: only the fields kept across versions are taken.
        self.__init__()

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        # Called before Tune registers ``checkpoint`` and deletes the trial's previous one. An
        # error raised here would keep Tune from registering the new checkpoint: log it instead.
        previous = trial.checkpoint
        if previous is None or not Path(previous.path).is_dir():
            return
        try:
            kept = _keep(Path(previous.path), step=iteration)
        except OSError as error:
            logger.warning("could not keep checkpoint %s until Tune's state names the next one: %s",
                           previous.path, error)
            return
        self._kept = [entry for entry in self._kept if entry[1] != kept] + [(iteration, kept)]

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._snapshot(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._snapshot(trials)  # Tune's last save comes after its last step

    def _snapshot(self, trials: list) -> None:
        if not trials:
            return
        staging = Path(trials[0].storage.experiment_driver_staging_path)
        if not staging.is_dir():
            return
        files = sorted(_state_files(staging))
        fingerprint = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        if fingerprint == self._fingerprint:
            return
        states = {p.name: p.read_bytes() for p in files}
        # A save that failed half way is no state. Only the files Tune rewrote are checked: this
        # runs with every result, and earlier sessions' files never change.
        unchanged = set(self._fingerprint or ())
        if not all(_whole(states[entry[0]]) for entry in fingerprint if entry not in unchanged):
            return
        # A zip, not a pickle: reading the snapshot back must never execute anything.
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in states.items():
                archive.writestr(name, data)
        # The run directory as Tune knows it now (a resumed search's may have moved).
        _atomic_write(Path(trials[0].storage.experiment_fs_path) / SNAPSHOT_FILE, buffer.getvalue())
        self._fingerprint = fingerprint
        saved = _newness(states)[1]
        for entry in [entry for entry in self._kept if _replaced(kept_in=entry[0], saved=saved)]:
            _drop(entry[1])
            self._kept.remove(entry)


def _whole(data: bytes) -> bool:
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
    return any(run_dir.glob(_EXPERIMENT_STATE)) and all(_whole(p.read_bytes()) for p in _state_files(run_dir))


def clear_state(run_dir: Path) -> None:
    """Remove the unusable state of an earlier attempt before a search starts again in ``run_dir``."""
    for path in [*_state_files(run_dir), run_dir / SNAPSHOT_FILE]:
        path.unlink(missing_ok=True)
    for folder in run_dir.glob(f"*/{KEPT_DIR}"):
        shutil.rmtree(folder, ignore_errors=True)


def _read_snapshot(path: Path) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return {Path(name).name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):  # none, or cut off by a power loss (it is not fsynced)
        return None


def _newness(states: Mapping[str, bytes]) -> tuple[str, int]:
    """(the newest session's experiment state file, Tune's step count in it): the later of two
    saved states compares greater."""
    names = sorted(name for name in states if fnmatch(name, _EXPERIMENT_STATE))
    if not names:
        return "", -1
    try:
        return names[-1], int(json.loads(states[names[-1]])["runner_data"]["_iteration"])
    except (ValueError, KeyError, TypeError):
        return names[-1], -1


def _put_back_kept_checkpoints(run_dir: Path, *, saved: int) -> None:
    """Put back the kept checkpoints that the state saved in Tune's step ``saved`` names; drop the
    ones it had replaced."""
    for kept in run_dir.glob(f"*/{KEPT_DIR}/*"):
        if not kept.is_dir():
            continue
        if kept.name.startswith("."):  # cut off while it was being built
            shutil.rmtree(kept, ignore_errors=True)
            continue
        step = _kept_step(kept)
        if step is not None and _replaced(kept_in=step, saved=saved):
            _drop(kept)
            continue
        # The same files as the original, which Tune may have been deleting when the driver died.
        original = kept.parent.parent / kept.name
        shutil.rmtree(original, ignore_errors=True)
        os.replace(kept, original)
        _step_file(kept).unlink(missing_ok=True)
    for stray in run_dir.glob(f"*/{KEPT_DIR}/*{_STEP_SUFFIX}"):  # its checkpoint's keeping was cut off
        if not stray.with_name(stray.name[: -len(_STEP_SUFFIX)]).is_dir():
            stray.unlink(missing_ok=True)
    for folder in run_dir.glob(f"*/{KEPT_DIR}"):
        with contextlib.suppress(OSError):
            folder.rmdir()


def usable_state(run_dir: Path) -> tuple[bool, bool]:
    """(Tune can resume from ``run_dir``, the crash had cut off Tune's copy of its state there).

    The snapshot replaces Tune's copy unless that copy is whole and later: Tune copies its state
    in the background, so its copy may lag the snapshot and name a checkpoint deleted since."""
    cut_off = not _state_ok(run_dir)
    files = _read_snapshot(run_dir / SNAPSHOT_FILE)
    tunes = {path.name: path.read_bytes() for path in run_dir.glob(_EXPERIMENT_STATE)}
    if files is not None and (cut_off or _newness(files) >= _newness(tunes)):
        for path in _state_files(run_dir):
            if path.name not in files:  # a session's state the snapshot does not hold
                path.unlink()
        for name, data in files.items():
            _atomic_write(run_dir / name, data)
        usable, restored, chosen = _state_ok(run_dir), cut_off, files
    else:
        usable, restored, chosen = not cut_off, False, tunes
    if usable:
        _put_back_kept_checkpoints(run_dir, saved=_newness(chosen)[1])
    return usable, usable and restored
