"""One ``search run`` at a time per run directory.

Two drivers of one search (the same command in a second terminal, a requeued batch job while the
first still runs) would both write one Tune experiment and one MLflow parent run: trials run
twice, Tune's saved state is overwritten by whichever saves last. The first holds an exclusive
``flock`` on ``<storage>/.<name>.lock`` from before it plans the search until it exits (the
kernel releases it however the process ends); the second stops with ``SearchInputError`` naming
the first's host and process. The lock file sits beside the run directory, not in it, so a new
search's run directory is not made before Ray Tune makes it.

Only a local run directory is held: an object store (``s3://``) has no locks, and neither has a
file system that refuses them (then nothing is held, as before) or Windows.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from search.driver._plan import SearchInputError
from search.driver._storage import RunLocation

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["hold_run_directory"]

# flock's errors where the file system has no locks (some network file systems)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


@contextmanager
def hold_run_directory(location: RunLocation) -> Iterator[None]:
    """Hold ``location`` for this process for the block; SearchInputError if another holds it."""
    if location.local_dir is None or fcntl is None:
        yield
        return
    location.local_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(location.local_dir.parent / f".{location.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _lock(fd, location):
            # who holds it, for the message of the next one that tries
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def _lock(fd: int, location: RunLocation) -> bool:
    """Lock ``fd`` for ``location``: True when held, False where the file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        raise SearchInputError(
            f"one `search run` at a time per search, but got another running the one in {location} ({holder}); "
            "wait for it to end, or stop it (Ctrl-C, `search stop`) and run this again to resume"
        ) from None
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return False
        raise
    return True
