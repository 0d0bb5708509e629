"""One ``search run`` at a time per run directory.

Two drivers of one search (the same command in a second terminal, a requeued batch job while the
first still runs) would both write one Tune experiment and one MLflow parent run: trials run
twice, Tune's saved state is overwritten by whichever saves last. The first holds an exclusive
``flock`` on ``<storage>/.<name>.lock`` until it exits (the kernel releases it however the
process ends); the second stops with ``SearchInputError`` naming the first's host and process.
The lock file sits beside the run directory, not in it, so a new search's run directory is not
made before Ray Tune makes it.

Only a local run directory is held: an object store (``s3://``) has no locks, and neither has a
file system that refuses them (then nothing is held, as before) or Windows (``search._hold``).
"""

from __future__ import annotations

import os

from search._hold import FileHold, HeldElsewhere
from search.driver._plan import SearchInputError
from search.driver._storage import RunLocation

__all__ = ["RunDirectoryHold"]


class RunDirectoryHold:
    """The hold of this process on ``location``'s search: ``take`` it, ``release`` it at the end.

    ``take(make=False)`` before the search's state is read (a resume may repair it) holds it only
    where its storage folder exists, since a search that runs made that; ``take(make=True)``,
    once the options were checked, makes the folder if need be (so invalid input writes
    nothing). Taking it again is a no-op."""

    def __init__(self, location: RunLocation) -> None:
        self.location = location
        self._hold: FileHold | None = None

    @property
    def _path(self) -> str:
        return os.path.join(os.path.dirname(str(self.location.local_dir)), f".{self.location.name}.lock")

    def take(self, *, make: bool) -> None:
        """Hold the search; SearchInputError if another process holds it."""
        if self._hold is not None or self.location.local_dir is None:
            return
        folder = self.location.local_dir.parent
        if not folder.is_dir():
            if not make:
                return
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # permissions said yes (root, say), the file system no: /proc, a full disk
                raise SearchInputError(f"--storage: a directory this user can write, but got {folder}: "
                                       f"{exc.strerror or exc}") from None
        hold = FileHold(self._path)
        try:
            hold.take()
        except HeldElsewhere as held:
            raise SearchInputError(
                f"one `search run` at a time per search, but got another running the one in {self.location} "
                f"({held.holder}); wait for it to end or stop it (Ctrl-C, `search stop`), then run this again to "
                f"resume. If that process is gone with its host (a network file system keeps a lost host's "
                f"lock), delete {self._path}"
            ) from None
        except OSError as exc:
            raise SearchInputError(f"--storage: a folder whose lock file {self._path} can be locked, but got {exc}") from None
        self._hold = hold

    def release(self) -> None:
        if self._hold is not None:
            self._hold.release()
            self._hold = None
