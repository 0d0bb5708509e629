"""A trial's scratch directory, which a later trial removes when its owner died without removing it.

A trial writes each epoch's checkpoint into a scratch directory before Tune copies it to the
search's storage. ``tempfile.TemporaryDirectory`` removes it when the trial returns, but not when
its worker dies without unwinding: Ray ends a killed driver's workers (SIGKILL, out of memory, a
lost node) that way, and each of them left a checkpoint in the temporary directory for good.

So each live trial holds an exclusive ``flock`` on a lock file in its directory, which the kernel
releases whenever the process ends, however it ends. Before making its own, a trial removes every
scratch directory whose lock it can take. A lock, not a process id: workers of other containers
may share the temporary directory and not the process ids. The lock file is locked under a
temporary name and then renamed into place, so no other trial can take it between its creation
and the owner's lock. Where the platform has no ``fcntl`` (Windows), orphans are not removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SCRATCH_PREFIX", "remove_orphans", "trial_scratch"]

SCRATCH_PREFIX = "losstune-trial-"
_LOCK_NAME = ".owner.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def _lock_is_free(lock: Path) -> bool:
    """Whether ``lock`` exists and no live process holds it (then this process holds it until it
    closes the file: the caller removes the directory meanwhile)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:  # no lock file: an owner still making its directory (or one killed then)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    os.close(fd)
    return True


def remove_orphans(*, root: str | None = None) -> list[Path]:
    """Remove the scratch directories in ``root`` (default: the temporary directory) whose owner
    has died; the paths removed."""
    if fcntl is None:
        return []
    removed = []
    for directory in Path(root or tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*"):
        if directory.is_dir() and _lock_is_free(directory / _LOCK_NAME):
            shutil.rmtree(directory, ignore_errors=True)  # another trial may be removing it too
            removed.append(directory)
    return removed


@contextlib.contextmanager
def trial_scratch(*, root: str | None = None) -> Iterator[str]:
    """A new scratch directory in ``root`` (default: the temporary directory), removed on exit,
    or by a later trial if this process dies first; orphans of dead trials are removed first."""
    remove_orphans(root=root)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=root) as work:
        if fcntl is None:
            yield work
            return
        claiming = os.path.join(work, _LOCK_NAME + ".new")
        fd = os.open(claiming, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            except OSError:  # a file system without locks (some NFS mounts): never swept, as before
                pass
            else:
                os.rename(claiming, os.path.join(work, _LOCK_NAME))
            yield work
        finally:
            os.close(fd)
