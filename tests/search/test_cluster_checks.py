"""The checks ``search run`` makes on every node of a cluster, on the shared local Ray instance with a
second node that the GCS lists although it is gone: as just after a node dies, before the GCS has
missed enough of its heartbeats to mark it dead."""

from __future__ import annotations

import time

import pytest
import ray

from search.cluster import ClusterError, check_paths_on_every_node, check_shared_storage

GONE = "ab" * 28  # a valid node id no node has: a task pinned to it is unschedulable


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _with_a_gone_node(monkeypatch, *, listed_alive: int) -> None:
    """``ray.nodes()`` lists the real node and a gone one, alive in its first ``listed_alive`` answers."""
    real = ray.nodes
    answers = []

    def nodes():
        answers.append(None)
        listed = real()
        gone = dict(listed[0], NodeID=GONE, NodeManagerAddress="192.0.2.9", Alive=len(answers) <= listed_alive)
        return [*listed, gone]

    monkeypatch.setattr(ray, "nodes", nodes)


def test_a_node_gone_during_the_storage_check_is_left_out(ray_session, monkeypatch, tmp_path):
    # Alive for the node count and the list the check runs on; dead when its task fails.
    _with_a_gone_node(monkeypatch, listed_alive=2)
    check_shared_storage(tmp_path / "runs")  # the one real node sees the marker
    assert not list((tmp_path / "runs").iterdir())  # and the marker is gone


def test_a_node_gone_during_the_path_check_does_not_hide_a_path_missing_on_another(ray_session, monkeypatch,
                                                                                   tmp_path):
    _with_a_gone_node(monkeypatch, listed_alive=1)
    with pytest.raises(ClusterError) as caught:
        check_paths_on_every_node([str(tmp_path / "absent")], what="data.path")
    assert caught.value.rule == "data.path on every node of the cluster"
    assert str(tmp_path / "absent") in caught.value.value and "192.0.2.9" not in caught.value.value


def test_a_node_still_listed_alive_whose_task_cannot_run_is_an_error_naming_it(ray_session, monkeypatch, tmp_path):
    _with_a_gone_node(monkeypatch, listed_alive=10)
    with pytest.raises(ClusterError) as caught:
        check_shared_storage(tmp_path / "runs")
    assert "zero-CPU task pinned to it" in caught.value.rule
    assert caught.value.value == f"TaskUnschedulableError on 192.0.2.9 (node {GONE[:8]})"
    assert not list((tmp_path / "runs").iterdir())


def test_a_node_that_does_not_answer_in_time_is_an_error_naming_it(ray_session, monkeypatch, tmp_path):
    import search.cluster._checks as checks

    monkeypatch.setattr(checks, "_TIMEOUT_S", 0.5)
    (node,) = checks.alive_nodes()
    with pytest.raises(ClusterError) as caught:
        checks._on_every_node(_sleep, 5.0)  # the answer comes too late
    assert caught.value.rule.endswith("within 0.5 s")
    assert caught.value.value == f"no answer from {node['NodeManagerAddress']} (node {node['NodeID'][:8]})"
