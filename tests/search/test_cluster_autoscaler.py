"""Whether a trial fits a cluster: on a node alive now or on one its autoscaler may start
(``search.cluster._autoscaler``). A real autoscaling cluster: tests/cluster/test_autoscaling.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from search.cluster import (
    ClusterError,
    NodeType,
    adds_nodes,
    check_trial_fits,
    config_node_types,
    read_node_types,
    wait_adds_nodes,
)

REPO = Path(__file__).resolve().parents[2]
GPU_WORKER = NodeType("gpu_worker", 48.0, 4.0, 4)


def _unasked():
    raise AssertionError("asked, though an alive node fits")


def _launcher_config() -> dict:
    """deploy/ray-cluster.yaml as Ray's launcher writes it to the head: each node type's resources
    filled out from its instance type (a g5.12xlarge: 48 vCPUs, 4 GPUs), the head's max_workers 0."""
    config = yaml.safe_load((REPO / "deploy" / "ray-cluster.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["resources"] = {"CPU": 48, "GPU": 4}
    config["available_node_types"]["head"]["max_workers"] = 0
    return config


def test_the_node_types_are_those_the_autoscaler_may_start_with_the_resources_it_plans_with():
    assert config_node_types(_launcher_config()) == [GPU_WORKER]  # not the head: it starts none of its type
    config = _launcher_config()
    config["max_workers"] = 2  # the cluster's cap caps every type
    types = config["available_node_types"]
    types["cpu_worker"] = {"resources": {"CPU": 8}, "node_config": {}, "max_workers": 3}
    types["head"]["max_workers"] = 1  # more nodes of the head's type: the autoscaler may start them too
    types["unlimited"] = {"resources": {"CPU": 8}, "node_config": {}}  # no max_workers: never started
    assert config_node_types(config) == [
        NodeType("head", 0.0, 0.0, 1), NodeType("gpu_worker", 48.0, 4.0, 2), NodeType("cpu_worker", 8.0, 0.0, 2)
    ]
    # Resources not filled out: the autoscaler plans with none, and never starts the type for a trial.
    assert config_node_types(yaml.safe_load((REPO / "deploy" / "ray-cluster.yaml").read_text())) == [
        NodeType("gpu_worker", 0.0, 0.0, 4)
    ]


def test_the_launcher_s_config_is_read_from_the_head_s_home(tmp_path: Path):
    assert read_node_types(tmp_path / "ray_bootstrap_config.yaml") is None  # not a launcher's head
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(json.dumps(_launcher_config()))  # JSON, as the launcher writes it
    assert read_node_types(path) == [GPU_WORKER]
    path.write_text("available_node_types: [a, b]\nmax_workers: 1\n")
    with pytest.raises(ClusterError, match="in Ray's launcher format, but got AttributeError"):
        read_node_types(path)
    path.write_text("{not: yaml: at all")
    with pytest.raises(ClusterError, match=r"ray_bootstrap_config.yaml readable, but got ParserError"):
        read_node_types(path)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # a head started without an autoscaling config: Ray's read-only autoscaler, a type per node
        ({"autoscaler_report": {"node_type_mapping": {"ab12": "node_ab12", "cd34": "node_cd34"}}}, False),
        # the launcher's autoscaler, as the GCS keeps its status and as the dashboard returns it
        ({"autoscaler_report": {"node_type_mapping": {"ab12": "head"}}}, True),
        ({"autoscalerReport": {"nodeTypeMapping": {"ab12": "head", "cd34": "gpu_worker"}}}, True),
        (None, None),  # no status kept: autoscaler v2, KubeRay's
        ({"autoscaler_report": {"node_type_mapping": None}}, None),
        ({"load_metrics_report": {}}, None),
    ],
)
def test_the_autoscaler_s_status_says_whether_it_may_add_nodes(status, expected):
    assert adds_nodes(status) is expected


def test_a_status_that_does_not_say_yet_is_asked_again_for_a_while():
    answers = iter([None, {"autoscaler_report": None}, {"autoscalerReport": {"nodeTypeMapping": {"ab": "node_ab"}}}])
    slept = []
    assert wait_adds_nodes(lambda: next(answers), wait_s=60, sleep=slept.append) is False
    assert slept == [1.0, 1.0]
    asked = []
    assert wait_adds_nodes(lambda: asked.append(1), wait_s=0.0, sleep=slept.append) is None  # no status kept
    assert asked == [1]


def test_a_trial_that_fits_an_alive_node_asks_nothing_of_the_autoscaler():
    alive = [(8.0, 0.0), (2.0, 1.0)]
    assert check_trial_fits(alive=alive, cpu=2, gpu=0.5, where="c", node_types=_unasked, autoscales=_unasked) is None


def test_a_trial_only_a_node_type_fits_is_let_wait_for_it_with_a_note():
    note = check_trial_fits(alive=[(0.0, 0.0)], cpu=4, gpu=1, where="c", node_types=lambda: [GPU_WORKER],
                            autoscales=_unasked)  # fmt: skip
    assert note == ("no alive node fits a trial (0 CPU + 0 GPU): the cluster's autoscaler may start one of type "
                    "gpu_worker (48 CPU + 4 GPU, at most 4)")  # fmt: skip


@pytest.mark.parametrize(
    ("cpu", "gpu", "types"),
    [
        (4, 8, [GPU_WORKER]),  # more GPUs than the type has
        (64, 1, [GPU_WORKER]),  # more CPUs
        (4, 1, [NodeType("gpu_worker", 48.0, 4.0, 0)]),  # a type the autoscaler may not start
        (4, 1, []),
    ],
)
def test_a_trial_no_node_and_no_node_type_fits_is_refused_naming_both(cpu, gpu, types):
    with pytest.raises(ClusterError) as refused:
        check_trial_fits(alive=[(8.0, 0.0), (2.0, 2.0)], cpu=cpu, gpu=gpu, where="the Ray cluster",
                         node_types=lambda: types, autoscales=_unasked)  # fmt: skip
    assert refused.value.rule == (
        f"resources of a trial (resources.cpu: {cpu:g}, resources.gpu: {gpu:g}) must fit on one node of the Ray cluster"
    )
    assert refused.value.value == "nodes with 8 CPU + 0 GPU, 2 CPU + 2 GPU and node types its autoscaler may start: " + (
        "; ".join(map(str, types)) or "none"
    )


def test_without_node_types_only_an_autoscaler_that_may_add_nodes_lets_the_trial_wait():
    def check(autoscales):
        return check_trial_fits(alive=[(2.0, 0.0)], cpu=1, gpu=1, where="the cluster at http://h:8265",
                                node_types=lambda: None, autoscales=lambda: autoscales)  # fmt: skip

    with pytest.raises(ClusterError) as refused:
        check(False)
    assert str(refused.value) == ("resources of a trial (resources.cpu: 1, resources.gpu: 1) must fit on one node of "
                                  "the cluster at http://h:8265, but got nodes with 2 CPU + 0 GPU")  # fmt: skip
    for autoscales in (True, None):
        assert check(autoscales).startswith("no alive node fits a trial (2 CPU + 0 GPU): the trials wait for the "
                                            "cluster's autoscaler to start one")  # fmt: skip
