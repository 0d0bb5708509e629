"""A trial's scratch directory, which a later trial removes when its owner died without removing it.

A trial writes each epoch's checkpoint into a scratch directory before Tune copies it to the
search's storage. ``tempfile.TemporaryDirectory`` removes it when the trial returns, but not when
its worker dies without unwinding: Ray ends a killed driver's workers (SIGKILL, out of memory, a
lost node) that way, and each of them left a checkpoint in the temporary directory for good.

So each live trial holds an exclusive ``flock`` on a lock file in its directory, which the kernel
releases whenever the process ends, however it ends. Before making its own, a trial removes every
scratch directory of its host whose lock it can take. A lock, not a process id: workers of other
containers may share the temporary directory and not the process ids. The host name is in the
directory's name because ``flock`` on a network file system may lock on one host only. The lock
file is locked under a temporary name and then renamed into place, so no other trial can take it
between its creation and the owner's lock; the checkpoint goes into a subdirectory, so that the
lock file is not part of what Tune copies.

Never removed: a directory whose owner was killed before it locked (it has no lock file), every
directory where the file system refuses locks or the platform has no ``fcntl`` (Windows).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["remove_orphans", "scratch_prefix", "trial_scratch"]

_LOCK_NAME = ".owner.lock"
_DATA_NAME = "checkpoint"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def scratch_prefix() -> str:
    """The name of this host's scratch directories, before their random part."""
    return f"losstune-trial-{socket.gethostname()}-"


def _owner_is_gone(lock: Path) -> bool:
    """Whether ``lock`` is a lock file that no live process holds."""
    try:
        # O_NOFOLLOW, O_NONBLOCK: a link or a FIFO planted in a shared temporary directory is no lock
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # no lock file (an owner still making its directory), or not ours to open
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def remove_orphans(*, root: str | None = None) -> list[Path]:
    """Remove this host's scratch directories in ``root`` (default: the temporary directory) whose
    owner has died; the paths removed."""
    if fcntl is None:
        return []
    removed = []
    prefix = scratch_prefix()
    for directory in Path(root or tempfile.gettempdir()).glob(glob.escape(prefix) + "*"):
        # The prefix of host `gpu-node` also starts the names of host `gpu-node-2`, whose lock this
        # host may not see: tempfile's random part has no '-', another host's name before it does.
        if "-" in directory.name[len(prefix):]:
            continue
        if directory.is_dir() and _owner_is_gone(directory / _LOCK_NAME):
            shutil.rmtree(directory, ignore_errors=True)  # another trial may be removing it too
            if not directory.exists():
                removed.append(directory)
    return removed


@contextlib.contextmanager
def trial_scratch(*, root: str | None = None) -> Iterator[str]:
    """A new, empty scratch directory in ``root`` (default: the temporary directory), removed on
    exit, or by a later trial if this process dies first; orphans of dead trials go first."""
    remove_orphans(root=root)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=root) as owned:
        data = os.path.join(owned, _DATA_NAME)
        os.mkdir(data)
        if fcntl is None:
            yield data
            return
        claiming = os.path.join(owned, _LOCK_NAME + ".new")
        fd = os.open(claiming, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
            except OSError:  # a file system that refuses locks: never swept, as before
                pass
            else:
                os.rename(claiming, os.path.join(owned, _LOCK_NAME))
            yield data
        finally:
            os.close(fd)
