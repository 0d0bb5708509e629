"""A real two-node Ray cluster (head: 2 CPUs; worker: 2 CPUs and 2 logical GPUs) and an MLflow
server, shared by the cluster tests (and stopped after them, not at the end of the session);
every process they start is stopped by its PID."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _cluster import LocalCluster, make_cluster  # noqa: E402


@pytest.fixture(scope="package")
def cluster(process_groups) -> LocalCluster:
    made = make_cluster()
    try:
        made.start_head(num_cpus=2, registry=process_groups)
        made.start_worker(num_cpus=2, num_gpus=2, registry=process_groups)
        made.wait_for(2)
        yield made
    finally:
        made.stop(process_groups)


@pytest.fixture(scope="package")
def cluster_mlflow(tmp_path_factory: pytest.TempPathFactory, start_mlflow_server) -> Any:
    server = start_mlflow_server(tmp_path_factory.mktemp("cluster-mlflow") / "store")
    yield server
    server.stop()
