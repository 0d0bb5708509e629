"""Each check made before a search reaches the cluster, and those ``search run`` makes on it: one
clear message and exit status 2 each, never a traceback, nothing submitted."""

from __future__ import annotations

import shlex
import subprocess
import sys

import numpy as np
import pytest
from _cluster import REPO, SPACES, free_ports, search_cli

import search.cluster._client
from search import exit_codes
from search.__main__ import main
from search._shell import python_path


def _submit_args(cluster, server, tmp_path, space=SPACES / "spread.yaml", **overrides):
    options = {"--address": cluster.dashboard_url, "--tracking-uri": server.url, "--storage": str(tmp_path / "runs")}
    options.update(overrides)
    return ["submit", str(space), *(item for pair in options.items() for item in pair)]


@pytest.fixture
def submit_here(cluster, monkeypatch, capsys):
    """``submit_here(args, **env)``: ``python -m search`` ARGS in this process (no interpreter to
    start), in the cluster's environment changed by ``env`` (None: removed)."""

    def run(args: list[str], **env: str | None) -> subprocess.CompletedProcess:
        monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", cluster.env["RAY_AUTH_TOKEN_PATH"])
        # Unset, so Ray's own client code adds no token of its own: only the one `submit` found.
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        for key, value in env.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        code = main(args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def _refused(done: subprocess.CompletedProcess, *texts: str) -> None:
    assert done.returncode == exit_codes.INVALID, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Submitted" not in done.stdout
    for text in texts:
        assert text in done.stderr, done.stderr


def _jobs_submitted(cluster) -> int:
    from search.cluster import connect, our_jobs

    return len(our_jobs(connect(cluster.dashboard_url, environ=cluster.env)))


def test_submit_without_the_cluster_token_names_where_it_is_read_from(cluster, cluster_mlflow, tmp_path, submit_here):
    # no ~/.ray/auth_token either
    done = submit_here(_submit_args(cluster, cluster_mlflow, tmp_path), RAY_AUTH_TOKEN_PATH=None, HOME=str(tmp_path))
    _refused(done, "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token", "no token")


def test_submit_with_a_wrong_token_says_it_was_refused_and_where_it_came_from(cluster, cluster_mlflow, tmp_path,
                                                                             submit_here):
    done = submit_here(_submit_args(cluster, cluster_mlflow, tmp_path), RAY_AUTH_TOKEN="0" * 32)
    _refused(done, "refuses", "from RAY_AUTH_TOKEN")


def test_submit_to_an_address_where_nothing_answers(cluster, cluster_mlflow, tmp_path, submit_here):
    (port,) = free_ports(1)
    args = _submit_args(cluster, cluster_mlflow, tmp_path, **{"--address": f"127.0.0.1:{port}"})
    _refused(submit_here(args), "a Ray cluster whose dashboard answers", f"http://127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("--tracking-uri", "sqlite:///mlflow.db", "an MLflow server"),
        ("--tracking-uri", "runs/mlruns", "an MLflow server"),
        ("--storage", "runs", "an absolute directory on the cluster's nodes"),
    ],
)
def test_submit_refuses_a_store_or_storage_only_this_machine_has(cluster, cluster_mlflow, tmp_path, submit_here,
                                                                 option, value, text):
    args = _submit_args(cluster, cluster_mlflow, tmp_path, **{option: value})
    _refused(submit_here(args), text, value)


def test_submit_refuses_trials_no_node_can_hold(cluster, cluster_mlflow, tmp_path, submit_here):
    space = tmp_path / "greedy.yaml"
    space.write_text((SPACES / "packed.yaml").read_text().replace("gpu: 0.5", "gpu: 3"))
    before = _jobs_submitted(cluster)
    done = submit_here(_submit_args(cluster, cluster_mlflow, tmp_path, space=space))
    _refused(done, "must fit on one node", "resources.gpu: 3", "2 CPU + 2 GPU")
    assert _jobs_submitted(cluster) == before


def test_run_on_a_cluster_without_an_autoscaler_refuses_trials_no_node_can_hold(cluster, cluster_mlflow, tmp_path):
    # The search itself checks too (a search run on the cluster, or a job submitted before the
    # cluster shrank): the head's autoscaler runs read-only, so no node can be added.
    space = tmp_path / "greedy.yaml"
    space.write_text((SPACES / "packed.yaml").read_text().replace("gpu: 0.5", "gpu: 3"))
    done = search_cli(cluster, "run", str(space), "--address", cluster.gcs_address, "--tracking-uri",
                      cluster_mlflow.url, "--storage", str(tmp_path / "runs"))  # fmt: skip
    assert done.returncode == exit_codes.INVALID, done.stdout[-2000:] + done.stderr[-3000:]
    assert "must fit on one node of the Ray cluster, but got nodes with " in done.stderr
    assert "2 CPU + 2 GPU" in done.stderr and "node types" not in done.stderr and "Traceback" not in done.stderr


def test_submit_without_the_cluster_extra_says_how_to_install_it(cluster, cluster_mlflow, tmp_path, monkeypatch, capsys):
    real = search.cluster._client.importlib.util.find_spec
    monkeypatch.setattr(
        search.cluster._client.importlib.util, "find_spec", lambda name, *a: None if name == "aiohttp" else real(name, *a)
    )
    assert main(_submit_args(cluster, cluster_mlflow, tmp_path)) == exit_codes.INVALID
    assert f"Jobs SDK installed (`{python_path()} -m pip install -e '.[cluster]'` in the losstune checkout" \
        in capsys.readouterr().err


def _in_private_mount(cluster, directory, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` in a mount namespace of its own where ``directory`` is a fresh tmpfs: the driver
    sees files there that no node of the cluster sees (as on a machine of its own)."""
    script = f"mount -t tmpfs none {shlex.quote(str(directory))} && exec {shlex.join(command)}"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_run_on_a_cluster_refuses_storage_the_nodes_do_not_share(cluster, cluster_mlflow, tmp_path, as_uri):
    private = tmp_path / "private"
    private.mkdir()
    storage = (private / "runs").as_uri() if as_uri else str(private / "runs")  # file:// is a local path too
    done = _in_private_mount(cluster, private, [
        sys.executable, "-m", "search", "run", str(SPACES / "spread.yaml"), "--address", cluster.gcs_address,
        "--tracking-uri", cluster_mlflow.url, "--storage", storage,
    ])  # fmt: skip
    assert done.returncode == exit_codes.INVALID, done.stdout[-2000:] + done.stderr[-3000:]
    assert "--storage that every node of the cluster shares" in done.stderr
    assert "2 of 2 nodes do not see" in done.stderr and "Traceback" not in done.stderr


def test_run_with_per_node_loading_refuses_data_the_nodes_do_not_have(cluster, cluster_mlflow, tmp_path, write_mnist):
    private = tmp_path / "private"
    private.mkdir()
    space = tmp_path / "mnist.yaml"
    space.write_text(
        (SPACES / "spread.yaml").read_text()
        .replace("data: {kind: digits, val_fraction: 0.2, labels: measured}",
                 f"data: {{kind: mnist, path: {private / 'mnist'}, val_fraction: 0.25}}")
        .replace("  thickness:\n    loss: ce\n", "")
        .replace("  seed: 0\nresources", "  seed: 0\n  data_loading: per_node\nresources")
    )  # fmt: skip
    files = tmp_path / "mnist"
    files.mkdir()
    write_mnist(files, compress=True, rng=np.random.default_rng(0))
    done = _in_private_mount(cluster, private, ["sh", "-c", shlex.join(["cp", "-r", str(files), str(private)]) + " && " + shlex.join([
        sys.executable, "-m", "search", "run", str(space), "--address", cluster.gcs_address,
        "--tracking-uri", cluster_mlflow.url, "--storage", str(tmp_path / "runs"),
    ])])  # fmt: skip
    assert done.returncode == exit_codes.INVALID, done.stdout[-2000:] + done.stderr[-3000:]
    assert "data.path (search.data_loading: per_node) on every node of the cluster" in done.stderr
    assert "missing on" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["logs", "stop"])
def test_a_job_id_the_cluster_does_not_know_is_refused(cluster, command):
    done = search_cli(cluster, command, "losstune-nope-000000", "--address", cluster.dashboard_url)
    assert done.returncode == exit_codes.INVALID and "Traceback" not in done.stderr
    assert "the id of a job on the cluster" in done.stderr and "'losstune-nope-000000'" in done.stderr


def test_jobs_without_an_address_says_where_to_give_one(cluster):
    env = {k: v for k, v in cluster.env.items() if k != "RAY_API_SERVER_ADDRESS"}
    done = search_cli(cluster, "jobs", env=env)
    assert done.returncode == exit_codes.INVALID and "--address http://HEAD:8265" in done.stderr
