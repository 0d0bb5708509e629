"""deploy/slurm.sbatch for real: a private SLURM cluster of two nodes on this machine (munged,
slurmctld and two slurmd from the Debian packages, in the foreground, on free ports, stopped by
their ids), `sbatch --wait` of a tiny search; and the script's own clean-up without SLURM, when it
is stopped mid-search. SLURM missing is a failure, not a skip: `make slurm` installs it.

Every process the job starts carries a marker in its environment, so a Ray process left behind is
found whatever its parent became.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "slurm.sbatch"
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # daemons live in sbin
TRIALS = 2


def _binary(name: str) -> str:
    found = shutil.which(name, path=SBIN_PATH)
    assert found, f"the SLURM test needs {name} (Debian packages slurmd slurmctld slurm-client munge): run `make slurm`"
    return found


@dataclass(frozen=True)
class Slurm:
    conf: Path
    root: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SBIN_PATH}

    def jobs(self) -> list[str]:
        out = subprocess.run([_binary("squeue"), "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True)
        return out.stdout.split()


SLURM_CONF = """\
ClusterName=losstune-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
PlugStackConfig=/dev/null
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 Port={n1_port} CPUs=1 RealMemory=2000 State=UNKNOWN
NodeName=n2 NodeHostname={host} NodeAddr=127.0.0.1 Port={n2_port} CPUs=1 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=n1,n2 Default=YES MaxTime=30 State=UP
"""


@pytest.fixture
def slurm(spawn, kit) -> Iterator[Slurm]:
    """Two SLURM nodes (n1, n2, one CPU each) on this machine: one slurmd per node, told apart by port."""
    for name in BINARIES:
        _binary(name)
    root = Path(tempfile.mkdtemp(prefix="lt-slurm-"))  # short: munge's socket path
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    subprocess.run(
        [_binary("mungekey"), "--create", f"--keyfile={root / 'munge.key'}"], check=True, capture_output=True
    )
    spawn(
        [
            _binary("munged"),
            "--foreground",
            "--force",
            f"--socket={root / 'munge.sock'}",
            f"--key-file={root / 'munge.key'}",
            f"--pid-file={root / 'munged.pid'}",
            f"--seed-file={root / 'munge.seed'}",
            f"--log-file={root / 'munged.log'}",
        ],
        log=root / "munged.out",
        what="munged of the SLURM test",
    )
    conf = root / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname().split(".")[0],
            root=root,
            user=os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
            ctld_port=kit.free_port(),
            n1_port=kit.free_port(),
            n2_port=kit.free_port(),
        )
    )
    cluster = Slurm(conf, root)
    kit.wait_for(lambda: (root / "munge.sock").exists(), timeout=30, what="munged socket")
    spawn(
        [_binary("slurmctld"), "-D", "-f", conf],
        env=cluster.env(),
        log=root / "slurmctld.out",
        what="slurmctld of the SLURM test",
    )
    for node in ("n1", "n2"):
        spawn(
            [_binary("slurmd"), "-D", "-f", conf, "-N", node],
            env=cluster.env(),
            log=root / f"slurmd-{node}.out",
            what=f"slurmd {node} of the SLURM test",
        )

    def idle() -> bool:
        out = subprocess.run(
            [_binary("sinfo"), "-h", "-N", "-o", "%N %t"], env=cluster.env(), capture_output=True, text=True
        )
        return sorted(out.stdout.split()) == ["idle", "idle", "n1", "n2"]

    kit.wait_for(idle, timeout=60, what="two idle SLURM nodes", log=root / "slurmctld.log")
    yield cluster
    # Jobs first: their step daemons outlive slurmd.
    for job in cluster.jobs():
        subprocess.run([_binary("scancel"), job], env=cluster.env(), capture_output=True)
    kit.wait_for(lambda: not cluster.jobs(), timeout=90, what="cancelled jobs gone")
    spawn.stop_all()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking(process_groups, kit, tmp_path_factory) -> Iterator[str]:
    """mlflow/serve on a store of its own: a search on a Ray cluster logs to a server, not a file."""
    store = tmp_path_factory.mktemp("mlflow")
    spawned = kit.Spawned(process_groups)
    port = kit.free_port()
    server = spawned(
        [REPO / "mlflow" / "serve", "--port", str(port), "--store", store],
        log=store / "serve.log",
        what=f"mlflow/serve on port {port}",
    )
    url = f"http://127.0.0.1:{port}"
    kit.wait_for(
        lambda: kit.http_ok(f"{url}/health"), timeout=120, what="mlflow/serve", alive=server, log=store / "serve.log"
    )
    yield url
    spawned.stop_all()


@pytest.fixture
def job_env(kit) -> Iterator[dict[str, str]]:
    """The environment of a job: its marker, its own Ray ports and directory, none of SLURM's variables."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="lt-ray-"))  # short: Ray's socket paths live below it
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "RAY_ADDRESS"}
    env.update(
        LOSSTUNE_TEST_JOB=uuid.uuid4().hex,
        LOSSTUNE_PYTHON=sys.executable,
        LOSSTUNE_RAY_PORT=str(kit.free_port()),
        LOSSTUNE_CLIENT_PORT=str(kit.free_port()),
        LOSSTUNE_AGENT_PORT=str(kit.free_port()),  # the nodes use it, +1, +2: free ports come in gaps
        LOSSTUNE_RAY_TMP=str(ray_tmp),
    )
    yield env
    survivors = kit.processes_with_env(f"LOSSTUNE_TEST_JOB={env['LOSSTUNE_TEST_JOB']}")
    for pid, _ in survivors:  # only after a failed test: the assertions below found none
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _no_survivors(kit, env: dict[str, str]) -> None:
    marker = f"LOSSTUNE_TEST_JOB={env['LOSSTUNE_TEST_JOB']}"
    deadline = time.monotonic() + 10  # a process may still be exiting
    while (left := kit.processes_with_env(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes the job started are still running: {left}"


def test_sbatch_runs_a_search_on_two_nodes_and_leaves_nothing_running(
    slurm: Slurm, tracking: str, job_env, kit, tmp_path: Path
):
    space = kit.tiny_space(tmp_path / "space.yaml", num_samples=TRIALS)
    out = tmp_path / "job.out"
    argv = [
        _binary("sbatch"),
        "--wait",
        "--nodes=2",
        "--time=10",
        f"--output={out}",
        SCRIPT,
        space,
        "--storage",
        tmp_path / "runs",
        "--tracking-uri",
        tracking,
    ]
    result = subprocess.run(
        argv,
        env={**job_env, "SLURM_CONF": str(slurm.conf), "PATH": SBIN_PATH},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=480,
    )
    log = out.read_text(errors="replace") if out.exists() else ""
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{log[-6000:]}"
    assert "slurm.sbatch: 2 Ray nodes, 2 CPUs" in log, log[-6000:]  # the worker on n2 joined through srun
    assert "slurm.sbatch: stopped the search and Ray" in log
    run_dir = tmp_path / "runs" / "tiny-deploy"
    assert (run_dir / "summary.txt").is_file() and (run_dir / "best_config.yaml").is_file()
    assert json.loads((run_dir / "losstune.json").read_text())["status"] == "finished"
    _no_survivors(kit, job_env)


def test_the_script_stops_what_it_started_when_stopped_mid_search(spawn, tracking: str, job_env, kit, tmp_path: Path):
    """Run with bash on one node, no SLURM at all: its trap alone must end the search (resumable)
    and the Ray head, as on scancel or a time limit."""
    space = kit.tiny_space(tmp_path / "space.yaml", num_samples=4)
    log = tmp_path / "job.out"
    script = spawn(
        ["bash", SCRIPT, space, "--storage", tmp_path / "runs", "--tracking-uri", tracking],
        env=job_env,
        cwd=tmp_path,
        log=log,
        what="deploy/slurm.sbatch run with bash",
    )
    kit.wait_for(
        lambda: "epoch 1/2" in log.read_text(errors="replace"),
        timeout=240,
        what="the first trial's epoch",
        alive=script,
        log=log,
    )
    script.send_signal(signal.SIGTERM)  # the script only, as scancel --batch does
    code = script.wait(timeout=150)
    text = log.read_text(errors="replace")
    assert code == 143, text[-4000:]
    assert "slurm.sbatch: 1 Ray nodes" in text and "slurm.sbatch: stopped the search and Ray" in text
    assert "interrupted" in text  # the search was told as Ctrl-C tells it, and said so
    # its resume command names no address: the job's Ray head is gone once the job ends
    (resume,) = [line for line in text.splitlines() if line.startswith("Resume it with:")]
    assert "--address" not in resume and "--resume --storage" in resume, resume
    assert json.loads((tmp_path / "runs" / "tiny-deploy" / "losstune.json").read_text())["status"] != "finished"
    _no_survivors(kit, job_env)
