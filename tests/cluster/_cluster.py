"""A real two-node Ray cluster on this machine, started with ``ray start`` and stopped by PID.

Both nodes run ``ray start --block`` in a process group of their own, so stopping a node is
killing its group: never ``ray stop``, which ends every Ray process on the machine. Every port is
chosen free and given explicitly (two nodes on one machine would otherwise both take the
dashboard agent's default port, and the Jobs agent of one of them would never start). The nodes
listen on 127.0.0.1; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` lets a second node join a head on the
same machine. Token authentication is on, as ``ray start`` has it by default; the token is the
one in ``RAY_AUTH_TOKEN_PATH`` (a file of the test's own).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
SPACES = Path(__file__).parent / "spaces"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_env(token_path: Path) -> dict[str, str]:
    """The environment of the nodes and of every client the test runs against them."""
    env = dict(os.environ)
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
        # A joining node (and a client) needs token mode said: only `ray start --head` turns it
        # on by default.
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_path),
        # `python` in a job's entrypoint is this environment's, as after `source .venv/bin/activate`.
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        # A node's registration with the GCS within 30 s (Ray's default) failed now and then on a
        # busy 2-core machine, for a worker started again after a test killed one.
        RAY_raylet_start_wait_time_s="120",
    )
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    return env


@dataclass
class Node:
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        self.process.wait(timeout=60)


@dataclass
class LocalCluster:
    """``head`` (CPUs only) and ``worker`` (CPUs and logical GPUs) on this machine."""

    temp_dir: Path
    env: dict[str, str]
    gcs_port: int
    dashboard_port: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def gcs_address(self) -> str:
        return f"{LOOPBACK}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.dashboard_port}"

    def _start(self, name: str, args: list[str], registry) -> Node:
        ports = free_ports(6)
        log = self.temp_dir / f"{name}.log"
        command = [
            str(BIN / "ray"), "start", "--block", "--disable-usage-stats",
            "--node-ip-address", LOOPBACK,
            "--node-manager-port", str(ports[0]),
            "--object-manager-port", str(ports[1]),
            "--dashboard-agent-listen-port", str(ports[2]),
            "--dashboard-agent-grpc-port", str(ports[3]),
            "--runtime-env-agent-port", str(ports[4]),
            "--metrics-export-port", str(ports[5]),
            "--object-store-memory", str(200 * 1024**2),
            *args,
        ]  # fmt: skip
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = Node(process, log)
        if registry is not None:
            registry.add(process.pid, f"ray node {name} ({' '.join(command)})")
        self.nodes.append(node)
        return node

    def start_head(self, *, num_cpus: int, registry=None, more: Sequence[str] = ()) -> Node:
        client_port, = free_ports(1)
        return self._start(
            "head",
            [
                "--head", "--port", str(self.gcs_port), "--temp-dir", str(self.temp_dir / "ray"),
                "--dashboard-host", LOOPBACK, "--dashboard-port", str(self.dashboard_port),
                "--ray-client-server-port", str(client_port), "--include-dashboard", "true",
                "--num-cpus", str(num_cpus), "--num-gpus", "0", *more,
            ],
            registry,
        )  # fmt: skip

    def start_autoscaling_head(self, worker_types: dict, *, registry=None) -> Node:
        """A head with no CPU or GPU whose autoscaler starts nodes of ``worker_types`` (autoscaler
        node types) on this machine, as processes (Ray's fake multi-node provider). Its config is
        where Ray's cluster launcher puts it, ``~/ray_bootstrap_config.yaml``, under a home of the
        cluster's own (the HOME of the head and of every job it runs)."""
        import json

        home = self.temp_dir / "home"
        home.mkdir()
        config = home / "ray_bootstrap_config.yaml"
        config.write_text(json.dumps(_fake_autoscaling_config(self.gcs_address, self.temp_dir, worker_types)))
        clients = dict(self.env, HOME=str(home))
        self.env.update(clients, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])))
        try:
            return self.start_head(num_cpus=0, registry=registry, more=[f"--autoscaling-config={config}"])
        finally:
            self.env = clients

    def start_worker(self, *, num_cpus: int, num_gpus: int, registry=None) -> Node:
        return self._start(
            "worker",
            # A temp dir of its own, as on a machine of its own: nodes sharing one would delete each
            # other's unpacked job working directories (Ray's runtime env cache) from under the driver.
            ["--address", self.gcs_address, "--temp-dir", str(self.temp_dir / "ray-worker"),
             "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus)],
            registry,
        )

    def ask(self, expression: str, *args: str) -> str | None:
        """``expression`` (Python; ``ray`` and ``sys.argv[2:] == args`` in scope) evaluated in a
        fresh process connected to the cluster (this one may run Ray); None if that failed."""
        # Ray may print its own lines to stdout after ours (a node just killed has "lagging
        # heartbeats"), so the answer goes on a line of its own, with a prefix.
        code = f"import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('answer:', {expression})"
        done = subprocess.run([sys.executable, "-c", code, self.gcs_address, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        answers = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("answer:")]
        return answers[-1] if done.returncode == 0 and answers else None

    def alive_nodes(self, *, excluding: Collection[str] = ()) -> int:
        """Alive nodes as the GCS sees them, not counting the node ids ``excluding``."""
        count = self.ask("sum(n['Alive'] and n['NodeID'] not in sys.argv[2:] for n in ray.nodes())", *excluding)
        return int(count) if count is not None else 0

    def wait_for(self, count: int, *, excluding: Collection[str] = (), timeout_s: float = 120.0) -> None:
        """Until ``count`` nodes are alive, not counting ``excluding`` (a node just killed: the GCS
        takes a while to see it dead and counts it alive until then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.process.poll() is not None:
                    raise RuntimeError(f"a Ray node exited: {node.log.read_text()[-3000:]}")
            if self.alive_nodes(excluding=excluding) >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{count} Ray nodes alive within {timeout_s:g} s")

    def wait_until_dead(self, node_id: str, *, timeout_s: float = 120.0) -> None:
        """Until the GCS marks ``node_id`` (a node just killed) dead: until then it lists the node
        alive, and a check run on every alive node would wait on it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ask("any(n['Alive'] for n in ray.nodes() if n['NodeID'] == sys.argv[2])", node_id) == "False":
                return
            time.sleep(1.0)
        raise TimeoutError(f"Ray node {node_id} marked dead within {timeout_s:g} s")

    def wait_for_jobs_api(self, *, timeout_s: float = 120.0) -> None:
        """The head's Jobs API answers once its dashboard agent is up (it accepts jobs then)."""
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=5):
                    return
            except OSError:
                time.sleep(1.0)
        raise TimeoutError(f"Ray's Jobs API at {self.dashboard_url} within {timeout_s:g} s")

    def stop(self, registry=None) -> None:
        for node in reversed(self.nodes):
            node.stop()
            if registry is not None:
                registry.remove(node.pid)


def _fake_autoscaling_config(gcs_address: str, temp_dir: Path, worker_types: dict) -> dict:
    """An autoscaling config in the launcher's format (what it writes to the head after filling it
    out) whose nodes Ray's fake multi-node provider starts as processes on this machine
    (``_fake_provider``: each with a temp dir of its own under ``temp_dir``)."""
    return {
        "cluster_name": "losstune-test", "max_workers": sum(t["max_workers"] for t in worker_types.values()),
        "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "provider": {"type": "external", "module": "_fake_provider.OwnTempDirProvider", "gcs_address": gcs_address,
                     "worker_temp_base": str(temp_dir), "disable_launch_config_check": True,
                     "disable_node_updaters": True},
        "auth": {"ssh_user": "ubuntu"}, "docker": {},
        "available_node_types": {"ray.head.default": {"resources": {"CPU": 0, "GPU": 0}, "node_config": {}, "max_workers": 0},
                                 **{name: {"node_config": {}, "min_workers": 0, **spec}
                                    for name, spec in worker_types.items()}},
        "head_node_type": "ray.head.default",  # the head type of the fake provider
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
        "rsync_filter": [], "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }  # fmt: skip


def make_cluster(base: Path | None = None) -> LocalCluster:
    # Short: Ray's Unix socket paths live under the temp dir and may not exceed 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="lt-", dir=base or "/tmp"))
    token_path = temp_dir / "auth_token"
    token_path.write_text(os.urandom(16).hex())
    gcs_port, dashboard_port = free_ports(2)
    return LocalCluster(temp_dir, cluster_env(token_path), gcs_port, dashboard_port)


def search_cli(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m search ARGS`` as a user on this machine runs it against the cluster."""
    return subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=REPO, env=env or cluster.env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
