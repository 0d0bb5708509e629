"""A Ray cluster reached through its Jobs API (the dashboard's address, ``http://HEAD:8265``).

Every failure to reach it or to be let in becomes a ``ClusterError`` (exit 2) that says what was
expected and what was found: no Jobs SDK installed, nothing answering, no token or the wrong one.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from search.cluster._auth import TOKEN_SOURCES, Token, find_token
from search.cluster._errors import ClusterError

__all__ = ["Cluster", "ClusterError", "NodeInfo", "connect", "dashboard_address", "fits_on_a_node"]

_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    alive: bool
    is_head: bool
    cpu: float
    gpu: float


def fits_on_a_node(nodes: list[NodeInfo], *, cpu: float, gpu: float) -> bool:
    """Whether one alive node has the resources of a trial (Ray places a trial on one node)."""
    return any(n.alive and n.cpu >= cpu and n.gpu >= gpu for n in nodes)


def dashboard_address(address: str) -> str:
    """``HEAD:8265`` or ``http://HEAD:8265`` as the Jobs SDK wants it."""
    address = address.strip().rstrip("/")
    return address if urlparse(address).scheme in ("http", "https") else f"http://{address}"


def _check_sdk() -> None:
    missing = [name for name in ("requests", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:
        raise ClusterError(
            "Ray's Jobs SDK installed (pip install 'losstune[cluster]', which `make setup` installs)",
            f"no {', '.join(missing)}",
        )


@dataclass
class Cluster:
    address: str  # the dashboard's, http://HEAD:8265
    client: Any  # ray.job_submission.JobSubmissionClient
    token: Token | None

    def nodes(self) -> list[NodeInfo]:
        """Every node the cluster knows, from Ray's state API."""
        import requests

        try:
            response = requests.get(
                f"{self.address}/api/v0/nodes",
                params={"limit": 10_000},
                headers=self.token.headers() if self.token else None,
                timeout=_TIMEOUT_S,
            )
            response.raise_for_status()
            rows = response.json()["data"]["result"]["result"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            raise ClusterError(f"the node list of the cluster at {self.address} (Ray's state API)",
                               f"{type(error).__name__}: {error}") from None
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
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(url, headers=token.headers() if token else None)
    except AuthenticationError:
        if token is None:
            raise ClusterError(
                f"the token of the cluster at {url} (token authentication is on): set {TOKEN_SOURCES}; "
                "`ray get-auth-token` on the head prints it",
                "no token in any of them",
            ) from None
        raise ClusterError(
            f"the token the cluster at {url} was started with ({TOKEN_SOURCES})",
            f"one it refuses, from {token.source}",
        ) from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(
            "a Ray cluster whose dashboard answers at --address (http://HEAD:8265 on the head)",
            f"{url}: {error}",
        ) from None
    return Cluster(url, client, token)
