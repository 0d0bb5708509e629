"""A node lost in the middle of a submitted search: its trials go on from their last checkpoints on
the node that is left (Tune's FailureConfig), and the search still ends with each trial once."""

from __future__ import annotations

import json
import time

from _cluster import SPACES, search_cli
from _mlflow import recorded

from search import exit_codes
from search.driver import FINAL_KEY
from search.tracking import TAG_NODE, TAG_RETRIES, TAG_TRIAL_ID


EPOCHS = 12


def _worker_node_id(cluster) -> str:
    node_id = cluster.ask("[n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Resources'].get('GPU')][0]")
    assert node_id is not None, "the cluster's worker node must be alive"
    return node_id


def test_trials_of_a_lost_node_resume_on_the_other_from_their_checkpoints(cluster, cluster_mlflow, tmp_path,
                                                                          process_groups):
    worker_id = _worker_node_id(cluster)
    space = tmp_path / "lost.yaml"
    # longer than slow.yaml's trials: the node goes while a trial of it has epochs left (with 8 of
    # about 1 s, a trial on the worker had now and then ended before the test saw it, and the test
    # killed a node that ran none)
    space.write_text((SPACES / "slow.yaml").read_text().replace("name: slow", "name: lost")
                     .replace("epochs: 8", f"epochs: {EPOCHS}").replace("patience: 8", f"patience: {EPOCHS}"))
    submitted = search_cli(
        cluster, "submit", str(space), "--address", cluster.dashboard_url, "--tracking-uri", cluster_mlflow.url,
        "--storage", str(tmp_path / "runs"),
    )  # fmt: skip
    assert submitted.returncode == exit_codes.OK, submitted.stderr
    job_id = submitted.stdout.split("as Ray Job ", 1)[1].split()[0]

    deadline = time.monotonic() + 300
    on_worker = []
    # A running trial on the worker with two epochs done: a failure repeats the last epoch whose
    # checkpoint Tune had not saved yet, and with only epoch 1 done that is a restart from scratch,
    # which the checks below would take for one (seen on a slow machine: epochs [1, 1, 2, ...]).
    while time.monotonic() < deadline and not on_worker:
        runs = recorded(cluster_mlflow.url, "lost")
        on_worker = [r for r in runs.trials if r.data.tags.get(TAG_NODE) == worker_id and r.info.status == "RUNNING"
                     and 2 <= r.data.metrics.get("epoch", 0) <= EPOCHS - 4]  # fmt: skip
        time.sleep(0.5)
    assert on_worker, "no trial ran on the worker node"
    worker = next(node for node in cluster.nodes if node.log.name == "worker.log")
    try:
        worker.stop()  # SIGKILL to its process group: the raylet and its workers
        process_groups.remove(worker.pid)
        followed = search_cli(cluster, "logs", job_id, "--address", cluster.dashboard_url, "--follow")
        assert followed.returncode == exit_codes.OK, followed.stdout[-4000:] + followed.stderr[-2000:]
    finally:
        cluster.nodes.remove(worker)
        cluster.start_worker(num_cpus=2, num_gpus=2, registry=process_groups)
        # The tests after this one start from two alive nodes: the new worker, not the killed one.
        cluster.wait_for(2, excluding=[worker_id])
        cluster.wait_until_dead(worker_id)

    runs = recorded(cluster_mlflow.url, "lost")
    assert len(runs.parents) == 1 and len(runs.trials) == 3 and len(set(runs.trial_ids)) == 3
    assert all(run.info.status == "FINISHED" for run in runs.parents + runs.trials)
    moved = [r for r in runs.trials if r.data.tags.get(TAG_RETRIES)]
    assert moved, "the trials of the lost node were retried"
    assert all(r.data.tags[TAG_NODE] != worker_id for r in moved)  # the retry ran on the head
    for run in moved:
        # From its checkpoint: Tune's record of every result the trial reported, over both attempts,
        # has epoch 1 once (a restart from scratch would report it again). Each failure repeats at
        # most the one epoch whose result Tune had taken but whose checkpoint it had not yet saved.
        results = tmp_path / "runs" / "lost" / f"trial_{run.data.tags[TAG_TRIAL_ID]}" / "result.json"
        reported = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        epochs = [result["epoch"] for result in reported if not result.get(FINAL_KEY)]  # the final repeats the last
        failures = int(run.data.tags[TAG_RETRIES])
        assert epochs.count(1) == 1 and set(epochs) == set(range(1, EPOCHS + 1)), epochs
        assert len(epochs) <= EPOCHS + failures, (epochs, failures)
