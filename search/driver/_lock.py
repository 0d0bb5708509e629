"""One ``search run`` at a time per run directory.

Two drivers of one search (the same command in a second terminal, a requeued batch job while the
first still runs) would both write one Tune experiment and one MLflow parent run: trials run
twice, Tune's saved state is overwritten by whichever saves last. The first holds an exclusive
``flock`` on ``<storage>/.<name>.lock`` until it exits (the kernel releases it however the
process ends); the second stops with ``SearchInputError`` naming the first's host and process.
The lock file sits beside the run directory, not in it, so a new search's run directory is not
made before Ray Tune makes it.

Only a local run directory is held: an object store (``s3://``) has no locks, and neither has a
file system that refuses them (then nothing is held, as before) or Windows.
"""

from __future__ import annotations

import errno
import os
import socket

from search.driver._plan import SearchInputError
from search.driver._storage import RunLocation

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["RunDirectoryHold"]

# flock's errors where the file system has no locks (some network file systems; EBADF: NFS's
# emulated flock on a descriptor opened read-only)
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


class RunDirectoryHold:
    """The hold of this process on ``location``'s search: ``take`` it, ``release`` it at the end.

    ``take(make=False)`` before the search's state is read (a resume may repair it) holds it only
    where its storage folder exists, since a search that runs made that; ``take(make=True)``,
    once the options were checked, makes the folder if need be (so invalid input writes
    nothing). Taking it again is a no-op."""

    def __init__(self, location: RunLocation) -> None:
        self.location = location
        self._fd: int | None = None
        self._wrote = False  # whether the lock file names this process

    @property
    def _path(self) -> str:
        return os.path.join(os.path.dirname(str(self.location.local_dir)), f".{self.location.name}.lock")

    def take(self, *, make: bool) -> None:
        """Hold the search; SearchInputError if another process holds it."""
        if self._fd is not None or self.location.local_dir is None or fcntl is None:
            return
        folder = self.location.local_dir.parent
        if not folder.is_dir():
            if not make:
                return
            folder.mkdir(parents=True, exist_ok=True)
        fd, writable = _open(self._path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SearchInputError(
                f"one `search run` at a time per search, but got another running the one in {self.location} "
                f"({holder}); wait for it to end or stop it (Ctrl-C, `search stop`), then run this again to "
                f"resume. If that process is gone with its host (a network file system keeps a lost host's "
                f"lock), delete {self._path}"
            ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                return
            raise SearchInputError(f"--storage: a folder whose lock file can be locked, but got {exc}") from None
        if writable:  # who holds it, for the message of the next one that tries
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd, self._wrote = fd, writable

    def release(self) -> None:
        if self._fd is not None:
            if self._wrote:  # a later holder that cannot write the file must not be taken for this process
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _open(path: str) -> tuple[int, bool]:
    """(descriptor, whether it may be written): read-only where another user made the file (a
    storage folder a team shares), which flock takes as well."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:
        try:
            return os.open(path, os.O_RDONLY), False
        except OSError as exc:
            raise SearchInputError(f"--storage: a folder whose lock file {path} can be opened, but got {exc}") from None
    except OSError as exc:
        raise SearchInputError(f"--storage: a folder whose lock file {path} can be made, but got {exc}") from None
