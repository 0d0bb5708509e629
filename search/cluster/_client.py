"""A Ray cluster reached through its Jobs API (the dashboard's address, ``http://HEAD:8265``).

Every failure to reach it or to be let in becomes a ``ClusterError`` (exit 2) that says what was
expected and what was found: no Jobs SDK installed, nothing answering (or answering too late), an
answer that is not Ray's, no token or the wrong one, a request the Jobs API refuses.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from search.cluster._auth import TOKEN_SOURCES, Token, find_token
from search._shell import install_command
from search.cluster._errors import ClusterError

__all__ = ["Cluster", "ClusterError", "JobsApiError", "NodeInfo", "connect", "dashboard_address", "quiet_logger"]

_TIMEOUT_S = 30.0  # per request: connecting, and each wait for the server's next bytes
_UNAVAILABLE = 503  # what the dashboard answers while its job agent is not ready


class JobsApiError(RuntimeError):
    """A request the Jobs API answered with an error status (Ray's SDK raises a bare RuntimeError
    whose text holds the status; this one, a RuntimeError too, keeps it as a field)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"status {status}: {text.strip()}")
        self.status = status
        self.text = text.strip()


@functools.cache
def _client_class() -> type:
    """Ray's ``JobSubmissionClient`` with a timeout on every request (imported only when a cluster
    is contacted): Ray's own sends none, so a dashboard port that accepts connections but never
    answers hung every command for good."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", _TIMEOUT_S)
            return super()._do_request(method, endpoint, **kwargs)

        def _raise_error(self, r: Any) -> None:
            raise JobsApiError(r.status_code, r.text)

    return TimedJobSubmissionClient


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    alive: bool
    is_head: bool
    cpu: float
    gpu: float


def dashboard_address(address: str) -> str:
    """``HEAD:8265`` or ``http://HEAD:8265`` as the Jobs SDK wants it."""
    address = address.strip().rstrip("/")
    try:
        scheme = urlparse(address).scheme
    except ValueError as exc:  # an unclosed [IPv6 address
        raise ClusterError("a Ray dashboard address (http://HEAD:8265)", f"{address!r}: {exc}") from None
    if scheme in ("http", "https"):
        return address
    if "://" in address:  # ray://HEAD:10001 (Ray Client), ftp://...: not the dashboard's HTTP
        raise ClusterError("a Ray dashboard address (http://HEAD:8265, https://..., or HEAD:8265)", repr(address))
    return f"http://{address}"


def _check_sdk() -> None:
    missing = [name for name in ("requests", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:
        raise ClusterError(
            f"Ray's Jobs SDK installed (`{install_command('cluster')}` in the losstune checkout; "
            "`make setup` installs it)",
            f"no {', '.join(missing)}",
        )


@contextlib.contextmanager
def quiet_logger(*names: str) -> Iterator[None]:
    """The loggers ``names`` at WARNING while the block runs (Ray's SDK logs its steps at INFO)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass
class Cluster:
    address: str  # the dashboard's, http://HEAD:8265
    client: Any  # ray.job_submission.JobSubmissionClient
    token: Token | None

    def jobs(self) -> list[Any]:
        """Every job of the cluster (Ray's ``JobDetails``)."""
        return self._ask("a request for its jobs", self.client.list_jobs)

    def logs(self, job_id: str) -> str:
        return self._ask(f"a request for the log of job {job_id}", self.client.get_job_logs, job_id)

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job; whether it was running."""
        return self._ask(f"a request to stop job {job_id}", self.client.stop_job, job_id)

    def submit(self, **job: Any) -> str:
        """Submit a job (``JobSubmissionClient.submit_job``'s keywords); its submission id."""
        # The SDK logs each package it makes and uploads at INFO; the caller says what was submitted.
        with quiet_logger("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
            return self._ask(f"the submission of job {job.get('submission_id')}", lambda: self.client.submit_job(**job))

    def _ask(self, what: str, request: Callable[..., Any], *args: Any) -> Any:
        """``request(*args)`` of the Jobs API, its failures as ClusterErrors."""
        import requests
        from ray.exceptions import AuthenticationError

        try:
            return request(*args)
        except JobsApiError as error:
            ready = " (its job agent ready: Ray starts it shortly after the dashboard, retry in a minute)"
            rule = f"the Jobs API of the cluster at {self.address} answering {what}"
            raise ClusterError(rule + (ready if error.status == _UNAVAILABLE else ""), str(error)) from None
        except AuthenticationError:
            raise _refused_token(self.address, self.token) from None
        except (requests.RequestException, RuntimeError, ValueError, KeyError, TypeError) as error:
            # RuntimeError: what Ray's SDK raises of its own (e.g. a job id it does not know); the
            # others: an answer without the fields of Ray's
            raise ClusterError(f"the Jobs API of the cluster at {self.address} answering {what}",
                               f"{type(error).__name__}: {error}") from None

    def _get(self, what: str, path: str, answer: Callable[[Any], Any], **params: Any) -> Any:
        """``answer(data)`` of the dashboard's JSON answer to ``GET path``."""
        import requests

        try:
            response = requests.get(f"{self.address}{path}", params=params,
                                    headers=self.token.headers() if self.token else None, timeout=_TIMEOUT_S)
            response.raise_for_status()
            return answer(response.json()["data"])
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ClusterError(f"{what} of the cluster at {self.address}",
                               f"{type(error).__name__}: {error}") from None

    def autoscaler_status(self) -> dict[str, Any] | None:
        """The status Ray's autoscaler keeps (None where none runs that keeps one)."""
        return self._get("the autoscaler status", "/api/cluster_status", lambda data: data.get("clusterStatus"))

    def nodes(self) -> list[NodeInfo]:
        """Every node the cluster knows, from Ray's state API."""
        rows = self._get("the node list (Ray's state API)", "/api/v0/nodes", lambda data: data["result"]["result"],
                         limit=10_000)
        return [
            NodeInfo(
                node_id=row["node_id"],
                ip=row.get("node_ip", ""),
                alive=row.get("state") == "ALIVE",
                is_head=bool(row.get("is_head_node")),
                cpu=float(row.get("resources_total", {}).get("CPU", 0.0)),
                gpu=float(row.get("resources_total", {}).get("GPU", 0.0)),
            )
            for row in rows
        ]


def connect(address: str, *, environ: Mapping[str, str] = os.environ) -> Cluster:
    """The cluster at ``address``, with the token found the way Ray finds it (see ``_auth``)."""
    _check_sdk()
    url = dashboard_address(address)
    token = find_token(environ)
    import requests
    from ray.exceptions import AuthenticationError

    try:
        client = _client_class()(url, headers=token.headers() if token else None)
    except AuthenticationError:
        raise _refused_token(url, token) from None
    except (ConnectionError, RuntimeError, ValueError, requests.RequestException) as error:
        raise ClusterError(
            "a Ray cluster whose dashboard answers at --address (http://HEAD:8265 on the head)",
            f"{url}: {type(error).__name__}: {error}",
        ) from None
    except (KeyError, TypeError) as error:  # JSON without the fields of Ray's version answer
        raise ClusterError(
            "a Ray cluster whose dashboard answers at --address (http://HEAD:8265 on the head)",
            f"{url}, which answers /api/version without Ray's version ({type(error).__name__}: {error})",
        ) from None
    return Cluster(url, client, token)


def _refused_token(url: str, token: Token | None) -> ClusterError:
    if token is None:
        return ClusterError(
            f"the token of the cluster at {url} (token authentication is on): set {TOKEN_SOURCES}; "
            "`ray get-auth-token` on the head prints it",
            "no token in any of them",
        )
    return ClusterError(
        f"the token the cluster at {url} was started with ({TOKEN_SOURCES})",
        f"one it refuses, from {token.source}",
    )
