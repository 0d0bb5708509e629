"""Checks of the MLflow store a search will log to, run before Ray starts (invalid input, exit 2).

A search on a Ray cluster must log to a store that outlives this machine's files and that the
cluster's head (where a resubmitted driver runs) can reach: an MLflow server or a database, never
a local SQLite file or directory. An http(s) server must answer before the search starts: the
parent run is created and a resume reads the runs back from it; later outages are buffered.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlparse

__all__ = ["TrackingUriError", "check_reachable", "check_tracking_uri"]

# MLflow servers, and the SQLAlchemy dialects MLflow's database store accepts (with an optional
# "+driver" suffix, e.g. postgresql+psycopg2://).
_REMOTE_SCHEMES = ("http", "https", "databricks")
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


class TrackingUriError(ValueError):
    """A tracking URI the search cannot use."""


def _scheme(tracking_uri: str) -> str:
    if tracking_uri == "databricks":  # MLflow's name for the default Databricks profile
        return "databricks"
    return urlparse(tracking_uri).scheme.split("+", 1)[0].lower()


def check_tracking_uri(tracking_uri: str, *, cluster: bool) -> None:
    """On a cluster (``--address`` / ``RAY_ADDRESS``) only a server or database URI will do."""
    if not cluster:
        return
    if _scheme(tracking_uri) in _REMOTE_SCHEMES + _DATABASE_SCHEMES:
        return
    raise TrackingUriError(
        "a search on a Ray cluster logs to an MLflow server (--tracking-uri http://HOST:5000) or a "
        "database (postgresql://, mysql://, mssql://) the cluster can reach, not a file on this "
        f"machine, but got {tracking_uri!r}"
    )


def check_reachable(tracking_uri: str, *, timeout_s: float = 5.0) -> None:
    """An http(s) tracking server must answer (any HTTP status: it may want credentials)."""
    if _scheme(tracking_uri) not in ("http", "https"):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 - http(s) only, checked above
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUriError(
            f"an MLflow tracking server answering at {tracking_uri} (start one with mlflow/serve), "
            f"but got {reason}"
        ) from None
