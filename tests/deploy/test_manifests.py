"""deploy/ray-cluster.yaml and deploy/kuberay-rayjob.yaml, checked as far as this machine can: the
launcher config by Ray's own launcher code and schema (what `ray up` runs before it calls the
cloud), the RayJob by the fields KubeRay's ray.io/v1 CRD requires and by our own CLI."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config

from search.__main__ import build_parser
from search.commands.submit import STOP_WAIT_ENV

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / "deploy" / name).read_text())


def _launcher_config(config: dict) -> dict:
    """What `ray up` validates: the config merged with the provider's defaults."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_cluster_config_passes_the_launchers_validation():
    prepared = _launcher_config(_load("ray-cluster.yaml"))
    assert prepared["provider"]["type"] == "aws" and prepared["head_node_type"] == "head"


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=1),  # a misspelt key
        lambda c: c.update(max_workers=-1),
        lambda c: c.update(head_node_type="no-such-type"),
    ],
)
def test_the_launchers_validation_is_real(damage):
    """The same check refuses a damaged copy, so passing it above means something."""
    config = _load("ray-cluster.yaml")
    damage(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _launcher_config(config)


def test_ray_cluster_runs_trials_on_gpu_workers_with_token_auth():
    config = _load("ray-cluster.yaml")
    head, worker = config["available_node_types"]["head"], config["available_node_types"]["gpu_worker"]
    assert head["resources"] == {"CPU": 0, "GPU": 0}  # Ray schedules no trial on the head
    assert worker["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
    assert worker["max_workers"] <= config["max_workers"]
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert command == "ray stop" or "RAY_AUTH_MODE=token ray start" in command, command
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # It installs this repository with the cluster extra, which must exist.
    assert any("pip install" in c and ".[cluster]" in c for c in config["setup_commands"])
    assert 'cluster = ["ray[default]' in (REPO / "pyproject.toml").read_text()


def test_every_ray_requirement_asks_for_the_ray_losstune_is_tested_with():
    """search.cluster needs a recent Ray (ray.exceptions.AuthenticationError, token auth): the
    project's lower bounds are the tested version, and the cluster launcher installs exactly it."""
    tomllib = pytest.importorskip("tomllib")
    tested = Version(ray.__version__)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    bounds = {str(Requirement(r).specifier) for r in listed if Requirement(r).name == "ray"}
    assert bounds == {f">={tested.major}.{tested.minor}"}, bounds
    config = _load("ray-cluster.yaml")
    installs = [shlex.split(c.split("&&")[-1]) for c in config["setup_commands"] if "pip install" in c]
    pins = [Requirement(word) for words in installs for word in words if word.startswith("ray[")]
    assert [str(pin.specifier) for pin in pins] == [f"=={tested}"], installs
    assert _load("kuberay-rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"] == str(tested)


def test_ray_cluster_serves_its_dashboard_on_loopback_for_ray_dashboard_to_forward():
    config = _load("ray-cluster.yaml")
    (head,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in shlex.split(head.split(";", 1)[1])


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_rayjob_has_what_kuberay_requires():
    job = _load("kuberay-rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the Ray this project is tested with
    assert cluster["authOptions"] == {"mode": "token"}
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        # rayStartParams is a map of strings in the CRD: `num-cpus: 0` (a number) is refused.
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]
        for container in _containers(group):
            assert container["name"] and container["image"]
    for worker in cluster["workerGroupSpecs"]:
        assert worker["groupName"] and worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]
        limits = _containers(worker)[0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # trials on the workers


def test_rayjob_entrypoint_is_a_search_our_cli_accepts_with_storage_every_pod_mounts():
    spec = _load("kuberay-rayjob.yaml")["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "search"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "run"
    # Relative to working_dir, the repository in the image: the space ships with the repository.
    # a stop lets the search save its state as long as `search submit`'s does (Ray's default: 3 s)
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"working_dir": "/home/ray/losstune", "env_vars": STOP_WAIT_ENV}
    assert (REPO / args.space).is_file(), args.space
    assert args.tracking_uri.startswith("http://")  # a cluster logs to a server, never a file
    cluster = spec["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
        }
        mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] in claims]
        assert any(Path(args.storage).is_relative_to(m["mountPath"]) for m in mounts), (args.storage, mounts)


def test_slurm_warns_the_script_before_the_time_limit_long_enough_for_its_stop():
    # the script's stop: up to 60 s for the search to end resumable, then up to 30 s for each of
    # the search, the workers and the head; SLURM kills everything after KillWait otherwise
    import re

    text = (REPO / "deploy" / "slurm.sbatch").read_text()
    (lead,) = re.findall(r"^#SBATCH --signal=B:TERM@(\d+)$", text, flags=re.MULTILINE)  # the batch shell only
    assert "seq 60" in text and "seq 30" in text
    assert int(lead) >= 60 + 3 * 30
