"""Checks ``search run`` makes once it has joined a cluster of several nodes, before any trial
starts: that what every trial needs from a file system is there on every node.

Each check runs a zero-CPU task pinned to every alive node (Ray's node affinity, not soft), so
it answers for the nodes themselves, not for the machine that submitted the search.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.cluster._errors import ClusterError

__all__ = ["alive_nodes", "check_paths_on_every_node", "check_shared_storage"]

_TIMEOUT_S = 120.0


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def _on_every_node(fn: Callable[..., Any], *args: Any) -> list[tuple[dict[str, Any], Any]]:
    """``fn(*args)`` run on each alive node; (the node, what it returned) for each node still in the
    cluster when it answers."""
    import ray
    from ray.exceptions import NodeDiedError, TaskUnschedulableError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0, max_retries=0)(fn)
    nodes = alive_nodes()
    refs = [
        remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(*args)
        for node in nodes
    ]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=_TIMEOUT_S)
    answers, silent, unrun = [], [], []
    for node, ref in zip(nodes, refs):
        if ref not in ready:
            silent.append(node)
            continue
        try:
            answers.append((node, ray.get(ref)))
        except (NodeDiedError, TaskUnschedulableError) as error:
            unrun.append((node, error))
    if unrun:
        # The GCS counts a node that just died alive until it misses enough heartbeats: one that
        # has left by now runs no trial, so there is nothing to check on it.
        alive = {node["NodeID"] for node in alive_nodes()}
        for node, error in unrun:
            if node["NodeID"] in alive:
                raise ClusterError(
                    "every alive node of the cluster running a zero-CPU task pinned to it",
                    f"{type(error).__name__} on {_name(node)}",
                ) from error
    if silent:
        raise ClusterError(
            f"every alive node of the cluster answering a zero-CPU task within {_TIMEOUT_S:g} s",
            f"no answer from {', '.join(_name(node) for node in silent)}",
        )
    return answers


def _name(node: dict[str, Any]) -> str:
    return f"{node.get('NodeManagerAddress', '?')} (node {node['NodeID'][:8]})"


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _exists(paths: list[str]) -> list[str]:
    return [path for path in paths if not Path(path).exists()]


def check_shared_storage(directory: Path) -> None:
    """On more than one alive node, ``directory`` must be one directory every node sees (a shared
    file system): a marker with a random content, written here and read back on every node."""
    if len(alive_nodes()) < 2:
        return
    directory.mkdir(parents=True, exist_ok=True)
    content = secrets.token_hex(16)
    marker = directory / f".losstune-shared-{content[:8]}"
    marker.write_text(content)
    try:
        answers = _on_every_node(_read_text, str(marker))
    finally:
        marker.unlink(missing_ok=True)
    unseen = [_name(node) for node, seen in answers if seen != content]
    if unseen:
        raise ClusterError(
            "--storage that every node of the cluster shares (the same directory on each node, "
            "e.g. an NFS mount), or an s3:// or gs:// URI",
            f"{directory}, which {len(unseen)} of {len(answers)} nodes do not see: {', '.join(unseen)}",
        )


def check_paths_on_every_node(paths: list[str], *, what: str) -> None:
    """Each of ``paths`` exists on every alive node (data a trial reads itself)."""
    missing = [(node, absent) for node, absent in _on_every_node(_exists, list(paths)) if absent]
    if missing:
        detail = "; ".join(f"{', '.join(absent)} missing on {_name(node)}" for node, absent in missing)
        raise ClusterError(f"{what} on every node of the cluster", detail)
