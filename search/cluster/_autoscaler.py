"""Whether a trial fits a cluster that may grow: the nodes alive now, and the node types its
autoscaler may start.

A cluster started by Ray's launcher (``ray up``) runs its autoscaler on the head with
``~/ray_bootstrap_config.yaml``: its node types, their resources filled out from the instance type
(Ray Tune takes the same file as the sign of an autoscaling cluster). Elsewhere (KubeRay, a head
started by hand) only the autoscaler's status says whether one runs that may add nodes: a head
started without an autoscaling config runs it read-only, with one made-up node type per node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Any

from search.cluster._errors import ClusterError

__all__ = ["BOOTSTRAP_CONFIG", "NodeType", "adds_nodes", "check_trial_fits", "config_node_types", "read_node_types",
           "wait_adds_nodes"]

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")
# Twice the interval of Ray's autoscaler updates (AUTOSCALER_UPDATE_INTERVAL_S), after each of which it reports.
STATUS_WAIT_S = 12.0
# Ray's read-only autoscaler names the type of each node after its id (its `format_readonly_node_type`).
_READONLY_TYPE = "node_{}"


@dataclass(frozen=True)
class NodeType:
    """A node type of an autoscaling config, with the resources the autoscaler plans with."""

    name: str
    cpu: float
    gpu: float
    max_workers: int

    def fits(self, *, cpu: float, gpu: float) -> bool:
        return self.max_workers > 0 and self.cpu >= cpu and self.gpu >= gpu

    def __str__(self) -> str:
        return f"{self.name} ({self.cpu:g} CPU + {self.gpu:g} GPU, at most {self.max_workers})"


def config_node_types(config: Mapping[str, Any]) -> list[NodeType]:
    """The node types an autoscaling config lets the autoscaler start, with the resources it plans
    with: a resource a type does not list is 0, a type without ``max_workers`` is never started
    (the launcher writes every type's, the head's 0), and the cluster's ``max_workers`` caps all."""
    cluster_max = int(config.get("max_workers", 0))
    found = []
    for name, spec in (config.get("available_node_types") or {}).items():
        resources = spec.get("resources") or {}
        most = min(int(spec.get("max_workers", 0)), cluster_max)
        if most > 0:
            found.append(NodeType(str(name), float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), most))
    return found


def read_node_types(path: Path = BOOTSTRAP_CONFIG) -> list[NodeType] | None:
    """The node types of the launcher's autoscaling config at ``path``; None where there is none
    (not the head of a cluster Ray's launcher started)."""
    import yaml

    path = path.expanduser()
    try:
        config = yaml.safe_load(path.read_text())  # JSON, which YAML reads
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as error:
        raise ClusterError(f"the autoscaling config at {path} readable", f"{type(error).__name__}: {error}") from None
    try:
        return config_node_types(config)
    except (AttributeError, TypeError, ValueError) as error:
        raise ClusterError(f"the autoscaling config at {path} in Ray's launcher format",
                           f"{type(error).__name__}: {error}") from None


def adds_nodes(status: Mapping[str, Any] | None) -> bool | None:
    """Whether the autoscaler of ``status`` (the JSON Ray's autoscaler keeps in the GCS, as the
    dashboard's ``/api/cluster_status`` returns it: keys in camelCase there) may start nodes: False
    when it runs read-only, None when its status does not say (not yet, or none kept)."""
    report = (status or {}).get("autoscaler_report") or (status or {}).get("autoscalerReport")
    if not isinstance(report, Mapping):
        return None
    types = report.get("node_type_mapping") or report.get("nodeTypeMapping")
    if not isinstance(types, Mapping) or not types:
        return None
    return any(kind != _READONLY_TYPE.format(node) for node, kind in types.items())


def wait_adds_nodes(status: Callable[[], Mapping[str, Any] | None], *, wait_s: float = STATUS_WAIT_S,
                    sleep: Callable[[float], None] = time.sleep) -> bool | None:
    """``adds_nodes`` of ``status()``, asked again for up to ``wait_s`` while it does not say: the
    autoscaler reports first a few seconds after the head starts. None after that (an autoscaler
    that keeps no such status, as Ray's v2)."""
    deadline = time.monotonic() + wait_s
    while (answer := adds_nodes(status())) is None and time.monotonic() < deadline:
        sleep(1.0)
    return answer


def check_trial_fits(*, alive: Sequence[tuple[float, float]], cpu: float, gpu: float, where: str,
                     node_types: Callable[[], list[NodeType] | None],
                     autoscales: Callable[[], bool | None], source: str | None = None) -> str | None:
    """A trial of ``cpu`` CPUs and ``gpu`` GPUs must fit on one node (Ray places a trial on one
    node), else Tune waits for resources for good: on an ``alive`` node's (CPU, GPU), or on a node
    the autoscaler may start: one of ``node_types()`` where they are known (not None), else any
    unless ``autoscales()`` is False. Both are asked only when no alive node fits. Returns a note
    when only the autoscaler can give the trial a node. ``source``: the space file, which the
    error names."""
    if any(c >= cpu and g >= gpu for c, g in alive):
        return None
    types = node_types()
    have = ", ".join(f"{c:g} CPU + {g:g} GPU" for c, g in alive) or "no alive node"
    rule = (f"{f'{source}: ' if source else ''}resources of a trial (resources.cpu: {cpu:g}, resources.gpu: "
            f"{gpu:g}) must fit on one node of {where}")  # fmt: skip
    if types is not None:
        fitting = [t for t in types if t.fits(cpu=cpu, gpu=gpu)]
        if not fitting:
            startable = "; ".join(map(str, types)) or "none"
            raise ClusterError(rule, f"nodes with {have} and node types its autoscaler may start: {startable}")
        kinds = " or ".join(map(str, fitting))
        return f"no alive node fits a trial ({have}): the cluster's autoscaler may start one of type {kinds}"
    if autoscales() is False:
        raise ClusterError(rule, f"nodes with {have}")
    return (f"no alive node fits a trial ({have}): the trials wait for the cluster's autoscaler to start one; "
            f"its node types are not known here, and a trial none of them fits waits for good")
