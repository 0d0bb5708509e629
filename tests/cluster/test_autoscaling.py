"""``search submit`` to an autoscaling cluster whose head has no CPU (as ``deploy/ray-cluster.yaml``
has it): no alive node fits a trial until the autoscaler starts one. A real Ray head with a real
autoscaler, whose nodes Ray's fake multi-node provider starts as processes on this machine."""

from __future__ import annotations

import pytest
from _cluster import SPACES, make_cluster, search_cli
from _mlflow import recorded
from search import exit_codes
from search.tracking import TAG_NODE

# What the autoscaler may start: one node of 1 CPU and no GPU.
WORKER = {"cpu_worker": {"resources": {"CPU": 1}, "max_workers": 1}}


@pytest.fixture(scope="module")
def autoscaling(process_groups):
    made = make_cluster()
    try:
        made.start_autoscaling_head(WORKER, registry=process_groups)
        made.wait_for(1)
        yield made
    finally:
        made.stop(process_groups)  # the autoscaler's nodes are the head's processes: they go with it


def _space(tmp_path, name: str, resources: str):
    space = tmp_path / f"{name}.yaml"
    text = (SPACES / "packed.yaml").read_text().replace("name: packed", f"name: {name}")
    space.write_text(text.replace("resources: {cpu: 0.5, gpu: 0.5}", f"resources: {resources}"))
    return space


def _submit(cluster, server, tmp_path, space):
    return search_cli(
        cluster, "submit", str(space), "--address", cluster.dashboard_url, "--tracking-uri", server.url,
        "--storage", str(tmp_path / "runs"), "--wait",
    )  # fmt: skip


def test_trials_no_alive_node_fits_run_on_a_node_the_autoscaler_starts(autoscaling, cluster_mlflow, tmp_path):
    head = autoscaling.ask("ray.get_runtime_context().get_node_id()")
    done = _submit(autoscaling, cluster_mlflow, tmp_path, _space(tmp_path, "grown", "{cpu: 0.5}"))
    out = done.stdout + done.stderr
    assert done.returncode == exit_codes.OK, out[-4000:]
    # submit cannot read the node types (a file on the head) but sees an autoscaler that may add nodes
    assert "note: no alive node fits a trial (0 CPU + 0 GPU): the trials wait for the cluster's autoscaler" in done.stderr
    # the search, on the head, names the node type the autoscaler may start
    assert "the cluster's autoscaler may start one of type cpu_worker (1 CPU + 0 GPU, at most 1)" in done.stdout
    runs = recorded(cluster_mlflow.url, "grown")
    assert len(runs.trials) == 4 and all(run.info.status == "FINISHED" for run in runs.trials)
    nodes = {run.data.tags[TAG_NODE] for run in runs.trials}
    assert len(nodes) == 1 and head not in nodes, (head, nodes)


def test_trials_no_node_type_fits_end_the_search_before_any_trial(autoscaling, cluster_mlflow, tmp_path):
    done = _submit(autoscaling, cluster_mlflow, tmp_path, _space(tmp_path, "too-big", "{cpu: 0.5, gpu: 1}"))
    assert done.returncode == exit_codes.INVALID, (done.stdout + done.stderr)[-4000:]
    assert (
        "resources of a trial (resources.cpu: 0.5, resources.gpu: 1) must fit on one node of the Ray cluster, but got "
        "nodes with" in done.stdout
    )
    assert "node types its autoscaler may start: cpu_worker (1 CPU + 0 GPU, at most 1)" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert recorded(cluster_mlflow.url, "too-big").trials == []
