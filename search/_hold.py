"""An exclusive hold of one process on a file (``flock``), released by the kernel however the
process ends: one `search run` per search, one `search train` per checkpoint folder.

A file system that refuses locks (some network file systems; EBADF: NFS's emulated flock on a
descriptor opened read-only) or Windows holds nothing, as before there were holds.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["FileHold", "HeldElsewhere"]

_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


class HeldElsewhere(Exception):
    """Another process holds ``path``; ``holder`` names it where it could write the file."""

    def __init__(self, path: str, holder: str) -> None:
        self.path, self.holder = path, holder
        super().__init__(f"{path} is held by {holder}")


class FileHold:
    """This process's hold on ``path``: ``take`` it, ``release`` it. The holder writes its process
    and host into the file for the message of the next one that tries, and clears them when it
    releases the hold; where the file is another user's (a folder a team shares), it is locked
    read-only and names no one. Taking it again is a no-op."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._wrote = False

    def take(self) -> None:
        """HeldElsewhere if another process holds it; OSError if the file cannot be opened or locked."""
        if self._fd is not None or fcntl is None:
            return
        fd, writable = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise HeldElsewhere(self.path, holder) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                return
            raise
        if writable:
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
    """(descriptor, whether it may be written): read-only where another user made the file, which
    flock takes as well. Never through a link, and only a regular file: in a folder a team shares,
    a link planted where the lock goes had the holder truncate and write whatever it pointed to."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)  # a link is refused (ELOOP)
    try:
        fd, writable = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o666), True
    except PermissionError:
        fd, writable = os.open(path, os.O_RDONLY | nofollow), False
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "a lock file must be a regular file", path)
    return fd, writable
