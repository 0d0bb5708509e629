"""A search whose storage is an object store URI (here S3, served by moto on a loopback port):
Tune's state and checkpoints and losstune's own files all land in the bucket, none on this
machine's disk, and a second run of the same search finds it there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import exit_codes
from search.driver._storage import RunLocation

REPO = Path(__file__).resolve().parents[2]
# Two trials (a grid over the learning rate): one trains, one diverges and fails.
SPACE = """\
name: s3
data: {kind: digits, val_fraction: 0.2, limit: 300, labels: measured}
model: {kind: mlp, hidden: 16, dropout: 0.0}
train: {epochs: 2, batch_size: 64, lr: {choice: [1.0e-2, 1.0e+30]}, patience: 2, seed: 0}
heads: {digit: {loss: ce}}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: 2, sampler: grid, scheduler: none, max_concurrent: 2, seed: 0}
resources: {cpu: 1}
"""
BUCKET = "losstune"
URI_SECRET = "uriSecret42"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3(process_groups, tmp_path: Path):
    """A moto S3 server on a free loopback port with an empty bucket; its endpoint URL."""
    import boto3
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    process_groups.add(server.pid, f"moto_server on port {port}")
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in CREDENTIALS.items()
                                                          if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 - not answering yet
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.3)
    yield port, client
    os.killpg(server.pid, 9)
    server.wait()
    process_groups.remove(server.pid)


def test_a_search_on_s3_storage_keeps_everything_in_the_bucket(s3, tmp_path: Path, monkeypatch):
    port, client = s3
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    # credentials in the URI as pyarrow reads them: used, and shown nowhere (before, the first line,
    # the best config's line and the finished-search refusal wrote them)
    storage = f"s3://test:{URI_SECRET}@{BUCKET}/runs?endpoint_override=127.0.0.1:{port}&scheme=http"
    space = tmp_path / "s3.yaml"
    space.write_text(SPACE)
    work = tmp_path / "cwd"
    work.mkdir()
    command = [sys.executable, "-m", "search", "run", str(space), "--storage", storage,
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--num-cpus", "2"]  # fmt: skip
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == exit_codes.OK, done.stdout[-3000:] + done.stderr[-3000:]

    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]  # fmt: skip
    assert {"runs/s3/losstune.json", "runs/s3/summary.txt", "runs/s3/best_config.yaml"} <= set(keys)
    assert any(k.startswith("runs/s3/experiment_state-") for k in keys)
    # The trained trial's checkpoint (the other diverged in its first epoch) and the diverged
    # trial's traceback went to the bucket ...
    assert len({k.split("/")[2] for k in keys if k.endswith("/checkpoint.pt")}) == 1
    (error,) = [k for k in keys if k.endswith("/error.txt")]
    assert f"full traceback: s3://{BUCKET}/{error}" in done.stdout
    text = client.get_object(Bucket=BUCKET, Key=error)["Body"].read().decode()
    assert "TrainingDiverged" in text and "Traceback" in text
    assert list(work.iterdir()) == []  # ... and nothing to this machine's working directory
    summary = client.get_object(Bucket=BUCKET, Key="runs/s3/summary.txt")["Body"].read().decode()
    # the file in the path, before the URI's query (before: ...&scheme=http/best_config.yaml)
    assert f"best config: s3://test:***@losstune/runs/s3/best_config.yaml?endpoint_override=127.0.0.1:{port}&" in done.stdout
    assert URI_SECRET not in done.stdout + done.stderr + summary
    meta = RunLocation(storage, "s3").read_text("losstune.json")
    assert meta is not None and '"status": "finished"' in meta

    again = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == exit_codes.INVALID  # the search found again, finished, in the bucket
    assert "already finished in s3://test:***@losstune/runs/s3" in again.stderr
    assert URI_SECRET not in again.stdout + again.stderr


def test_an_object_store_that_cannot_be_reached_is_an_error_without_its_secret(tmp_path):
    # before: a traceback ending in "OSError: ... AWS Error NETWORK_CONNECTION during HeadObject", exit 1
    from search.driver import SearchInputError, SearchOptions, plan_search
    from search.space import load_space

    storage = "s3://AK:SECRET@bucket/runs?endpoint_override=127.0.0.1:9&scheme=http"
    options = SearchOptions(storage=storage, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(SearchInputError, match=r"^--storage: a place the run directory can be read, but got "
                                               r"s3://AK:\*\*\*@bucket/runs/") as refused:
        plan_search(load_space(REPO / "spaces" / "digits.yaml"), options)
    assert "SECRET" not in str(refused.value)
