"""Where a search keeps its run directory: a local directory, or a directory behind a pyarrow file
system URI (``s3://bucket/runs``, ``gs://...``, ``hdfs://...``) that is handed to Tune as it is.

Tune keeps its experiment state and the trials' checkpoints there; losstune keeps its own few
files next to them (``losstune.json``, ``summary.txt``, ``best_config.yaml``), read and written
through the same file system, so a search resubmitted to a new head finds everything again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit
from urllib.request import url2pathname

from search._writable import why_unwritable
from search.tracking import redact_uri

__all__ = ["RunLocation", "is_uri", "local_path"]


def is_uri(storage: str) -> bool:
    """A file system URI (``scheme://...``) rather than a local path; ``file://`` included."""
    return bool(urlparse(storage).scheme) and "://" in storage


def local_path(storage: str) -> Path | None:
    """The path on this machine's file system that ``storage`` names: a plain path, or the path of a
    ``file://`` URI (``file:///data/runs``, ``file://localhost/data/runs``); None for a URI of
    another file system or host (``s3://``, ``file://nas/runs``)."""
    if not is_uri(storage):
        return Path(storage).expanduser()
    parts = urlsplit(storage)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(url2pathname(parts.path))


@dataclass(frozen=True)
class RunLocation:
    """``<storage>/<name>``: the run directory of one search."""

    storage: str
    name: str

    @property
    def remote(self) -> bool:
        """Behind a URI of another file system: no lock, no rename (a ``file://`` URI is local)."""
        return local_path(self.storage) is None

    @property
    def parent(self) -> str:
        """What Tune gets as ``storage_path``: an absolute local path, or the URI as given."""
        local = local_path(self.storage)
        if local is None:
            return self.storage.rstrip("/")
        return str(local.resolve())

    @property
    def uri(self) -> str:
        """``<storage>/<name>``; a URI's query (``?endpoint_override=...``) stays at its end."""
        return self._joined(self.name)

    def _joined(self, path: str) -> str:
        if not self.remote:
            return f"{self.parent}/{path}"
        parts = urlsplit(self.parent)
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))

    @property
    def local_dir(self) -> Path | None:
        """The run directory on this machine's file system; None behind a URI."""
        return None if self.remote else Path(self.uri)

    def __str__(self) -> str:
        # as every message and file shows it: a URI's secrets (s3://KEY:SECRET@..., ?secret_key=) left out
        return redact_uri(self.uri)

    def shown_file(self, file: str) -> str:
        """Where ``file`` of the run directory is, as messages show it (a URI's query after it)."""
        return redact_uri(self._joined(f"{self.name}/{file}"))

    def unusable(self) -> str | None:
        """Why a search cannot keep its run directory here (None: it can, as far as can be told
        before it starts): a URI no pyarrow file system opens, a local path this user cannot write."""
        if self.remote:
            try:
                self._fs()
            except (ValueError, NotImplementedError) as exc:  # pyarrow's ArrowInvalid, ArrowNotImplementedError
                return (f"a file system URI pyarrow opens (s3://, gs://, hdfs://; file:///path on this host), "
                        f"but got {exc}")
            return None
        run_dir = Path(self.uri)
        if run_dir.exists() and not run_dir.is_dir():
            return f"a directory, but got the file {run_dir}"
        problem = why_unwritable(run_dir)
        return None if problem is None else f"a directory this user can write, but got: {problem}"

    def _fs(self) -> tuple[Any, str]:
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.uri)

    def read_text(self, file: str) -> str | None:
        """The file's text, or None when it does not exist (or cannot be read)."""
        local = self.local_dir
        if local is not None:
            try:
                return (local / file).read_text()
            except OSError:
                return None
        fs, path = self._fs()
        try:
            with fs.open_input_stream(f"{path}/{file}") as stream:
                return stream.read().decode()
        except (OSError, FileNotFoundError):
            return None

    def write_text(self, file: str, text: str, *, private: bool = False) -> None:
        """Write ``file`` whole: locally through a temporary file and a rename, so a crash leaves the
        old file or the new one; remote object stores replace an object whole by themselves.
        ``private``: readable by this user only (a file that holds a password)."""
        local = self.local_dir
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            tmp = local / f".{file}.tmp"
            tmp.unlink(missing_ok=True)  # created anew, so that its mode is the one asked for
            # never through a link planted where the temporary file goes (a folder a team shares)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600 if private else 0o666)
            with os.fdopen(fd, "w") as stream:
                stream.write(text)
            os.replace(tmp, local / file)
            return
        fs, path = self._fs()
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{file}") as stream:
            stream.write(text.encode())
