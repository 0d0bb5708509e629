"""Ray's fake multi-node provider (a node is a set of processes on this machine), each node with
a temp dir of its own, as on a machine of its own: a node sharing the head's would unpack a job's
working directory again at the path of the head's copy, replacing the directory the job's driver
runs in. Imported by the head's autoscaler (the ``external`` provider type names this class)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import ray._private.node
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class OwnTempDirProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config: dict[str, Any], cluster_name: str) -> None:
        super().__init__(provider_config, cluster_name)
        self._temp_base = Path(provider_config["worker_temp_base"])

    def _create_node_with_resources_and_labels(self, *args: Any) -> None:
        start = ray._private.node.Node
        temp_dir = self._temp_base / f"n{self._next_node_id + 1}"  # the id the node is about to get

        def node(params: Any, **options: Any) -> Any:
            params.temp_dir = str(temp_dir)
            return start(params, **options)

        with mock.patch.object(ray._private.node, "Node", node):
            super()._create_node_with_resources_and_labels(*args)
