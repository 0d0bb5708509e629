"""Checks of the MLflow store a search will log to, run before Ray starts (invalid input, exit 2).

A search on a Ray cluster must log to a store that outlives this machine's files and that the
cluster's head (where a resubmitted driver runs) can reach: an MLflow server or a database, never
a local SQLite file or directory. An http(s) server must answer before the search starts: the
parent run is created and a resume reads the runs back from it; later outages are buffered.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from urllib.parse import urlparse, urlsplit, urlunsplit

from search._writable import why_unwritable
from search.tracking import redact_uri, sqlite_path

__all__ = ["TrackingUriError", "check_store_uri", "check_reachable", "check_tracking_uri", "is_database_uri",
           "is_server_uri"]

# MLflow servers, and the SQLAlchemy dialects MLflow's database store accepts (with an optional
# "+driver" suffix, e.g. postgresql+psycopg2://).
_REMOTE_SCHEMES = ("http", "https", "databricks")
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


class TrackingUriError(ValueError):
    """A tracking URI the search cannot use."""


def _scheme(tracking_uri: str) -> str:
    if tracking_uri == "databricks":  # MLflow's name for the default Databricks profile
        return "databricks"
    try:
        return urlparse(tracking_uri).scheme.split("+", 1)[0].lower()
    except ValueError as exc:  # an unclosed [IPv6 address
        raise TrackingUriError(f"a tracking URI that parses, but got {redact_uri(tracking_uri)!r}: {exc}") from None


def is_database_uri(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a database server (MLflow's SQLAlchemy store, not SQLite)."""
    return _scheme(tracking_uri) in _DATABASE_SCHEMES


def is_server_uri(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` is an MLflow tracking server's address (http(s)://): its UI is there."""
    return _scheme(tracking_uri) in ("http", "https")


def check_store_uri(tracking_uri: str, *, writing: bool) -> None:
    """A URI of an MLflow store this process can use: an MLflow server (http(s)://, databricks), a
    database whose SQLAlchemy driver is installed here (postgresql://, mysql://, mssql://, each
    with an optional +driver), a SQLite file (sqlite:///PATH) this user can write if ``writing``,
    or a scheme an installed MLflow plugin serves. MLflow would take others for a folder (its file
    store, which MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE is set, and losstune does not
    support) or fail with a traceback, for a search only once Ray has started."""
    scheme = _scheme(tracking_uri)
    if scheme in _REMOTE_SCHEMES:
        return
    if scheme == "sqlite":
        db = sqlite_path(tracking_uri)
        if db is None:
            raise TrackingUriError(
                "a SQLite store in a file (sqlite:///relative/path.db, sqlite:////absolute/path.db), "
                f"but got {redact_uri(tracking_uri)!r}"
            )
        try:
            if db.is_dir():
                raise TrackingUriError(f"a SQLite store in a file, but got {tracking_uri!r}, a folder")
            # SQLite writes a journal beside the store
            problem = why_unwritable(db) or (why_unwritable(db.parent) if db.exists() else None)
        except OSError as exc:  # a name longer than the file system takes, ...
            raise TrackingUriError(f"a SQLite store at a path this machine can use, but got {tracking_uri!r}: "
                                   f"{exc.strerror or exc}") from None
        if writing and problem is not None:
            raise TrackingUriError(f"a SQLite store this user can write, but got {tracking_uri!r}: {problem}")
        return
    if scheme in _DATABASE_SCHEMES:
        from sqlalchemy.engine import make_url

        try:
            make_url(tracking_uri).get_dialect().import_dbapi()
        except Exception as exc:  # noqa: BLE001 - an unparsable URL, an unknown or missing driver
            raise TrackingUriError(
                f"a database URI whose driver is installed here, but got {redact_uri(tracking_uri)!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return
    if scheme in _plugin_schemes():  # last: reading the installed packages' entry points takes ~30 ms
        return
    raise TrackingUriError(
        "an MLflow tracking URI: an MLflow server (http://HOST:5000, started with mlflow/serve), a "
        f"database (postgresql://, mysql://, mssql://) or a SQLite file (sqlite:///PATH.db), but got {redact_uri(tracking_uri)!r}"
    )


def _plugin_schemes() -> set[str]:
    """The URI schemes installed MLflow plugins add tracking stores for (their entry points)."""
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group="mlflow.tracking_store")}


def check_tracking_uri(tracking_uri: str, *, cluster: bool) -> None:
    """On a cluster (``--address`` / ``RAY_ADDRESS``) only a server or database URI will do."""
    if not cluster:
        return
    if _scheme(tracking_uri) in _REMOTE_SCHEMES + _DATABASE_SCHEMES:
        return
    raise TrackingUriError(
        "a search on a Ray cluster logs to an MLflow server (--tracking-uri http://HOST:5000) or a "
        "database (postgresql://, mysql://, mssql://) the cluster can reach, not a file on this "
        f"machine, but got {redact_uri(tracking_uri)!r}"
    )


def check_reachable(tracking_uri: str, *, timeout_s: float = 5.0) -> None:
    """An http(s) tracking server must answer (any HTTP status: it may want credentials)."""
    if not is_server_uri(tracking_uri):
        return
    # Without the user info: urllib would take it for part of the host name (MLflow's client
    # sends it as basic auth); /health answers without credentials, and any status will do.
    parts = urlsplit(tracking_uri)
    url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 - http(s) only, checked above
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # HTTPException: InvalidURL (a bad port)
        reason = getattr(exc, "reason", exc)
        raise TrackingUriError(
            f"an MLflow tracking server answering at {redact_uri(tracking_uri)} (start one with mlflow/serve), "
            f"but got {reason}"
        ) from None
