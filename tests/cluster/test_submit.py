"""``search submit`` on a real two-node cluster: trials on both nodes, GPU trials packed two to a
(logical) GPU, a stopped job resumed by a second submit, and the MLflow server holding one parent
run and one run per trial, all ended."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _cluster import REPO, SPACES, search_cli
from _mlflow import recorded
from search import exit_codes
from search._shell import search_command
from search.tracking import TAG_NODE, TAG_RAY_GPUS, TAG_RAY_JOB_PREFIX, TAG_SEARCH_ID


def _submit(cluster, server, tmp_path, space: str | Path, *more: str, name: str | None = None):
    """Submit ``space``: a name in the shipped test spaces, or a path of its own."""
    return search_cli(
        cluster, "submit", str(SPACES / space), "--address", cluster.dashboard_url, "--tracking-uri", server.url,
        "--storage", str(tmp_path / "runs"), *(["--name", name] if name else []), *more,
    )  # fmt: skip


def _all_ended(runs) -> bool:
    return all(run.info.status != "RUNNING" for run in runs)


def test_submit_wait_runs_trials_on_both_nodes_and_lists_the_job(cluster, cluster_mlflow, tmp_path):
    # Trials longer than the shipped 3 epochs (about 4 s): Tune hands a finished trial's actor to
    # a pending trial (reuse_actors), so on a loaded machine, where the GPU node's workers took
    # longer to start than the head's trials to end, all four once ran on the head.
    space = tmp_path / "spread.yaml"
    space.write_text((SPACES / "spread.yaml").read_text().replace("epochs: 3", "epochs: 10").replace("patience: 3", "patience: 10"))
    done = _submit(cluster, cluster_mlflow, tmp_path, space, "--wait")
    assert done.returncode == exit_codes.OK, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Submitted search 'spread' as Ray Job losstune-spread-" in done.stdout
    assert "trials: 4 finished" in done.stdout  # the job's own output, streamed
    # the commands it prints name the space file submitted, not the job's copy on the cluster
    assert f"(python -m search train {space} --config ...)" in done.stdout, done.stdout[-3000:]

    runs = recorded(cluster_mlflow.url, "spread")
    assert len(runs.parents) == 1 and len(runs.trials) == 4
    assert len(set(runs.trial_ids)) == 4
    assert _all_ended(runs.parents + runs.trials)
    assert all(run.info.status == "FINISHED" for run in runs.trials)
    nodes = {run.data.tags[TAG_NODE] for run in runs.trials}
    assert len(nodes) == 2, f"four 1-CPU trials at once need both 2-CPU nodes, but ran on {nodes}"

    parent = runs.parents[0]
    (job_tag,) = [key for key in parent.data.tags if key.startswith(TAG_RAY_JOB_PREFIX)]
    job_id = job_tag[len(TAG_RAY_JOB_PREFIX):]
    listed = search_cli(cluster, "jobs", "--address", cluster.dashboard_url)
    assert listed.returncode == 0, listed.stderr
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert "SUCCEEDED" in line and parent.data.tags[TAG_SEARCH_ID] in line


def test_gpu_trials_are_packed_two_to_a_gpu_on_the_gpu_node(cluster, cluster_mlflow, tmp_path):
    done = _submit(cluster, cluster_mlflow, tmp_path, "packed.yaml", "--wait")
    assert done.returncode == exit_codes.OK, done.stdout[-3000:] + done.stderr[-3000:]
    runs = recorded(cluster_mlflow.url, "packed")
    assert len(runs.trials) == 4 and _all_ended(runs.parents + runs.trials)
    # The head has no GPU: every trial ran on the worker node, two to each of its two GPUs.
    assert len({run.data.tags[TAG_NODE] for run in runs.trials}) == 1
    per_gpu = Counter(run.data.tags[TAG_RAY_GPUS] for run in runs.trials)
    assert sorted(per_gpu.values()) == [2, 2], per_gpu
    # Trials sharing a GPU ran at the same time (packed), not one after the other.
    for gpu in per_gpu:
        first, second = (r.info for r in runs.trials if r.data.tags[TAG_RAY_GPUS] == gpu)
        assert first.start_time < second.end_time and second.start_time < first.end_time
    # No CUDA here (a CPU build of torch, logical GPUs): each trial said so and trained on the CPU.
    assert all(run.data.tags["losstune.device"] == "cpu" for run in runs.trials)
    assert "CUDA is unusable" in done.stdout


def test_a_stopped_job_is_resumed_by_submitting_again(cluster, cluster_mlflow, tmp_path):
    # three times slow.yaml's epochs: the search must outlast the wait for its first results below
    space = tmp_path / "slow.yaml"
    space.write_text((SPACES / "slow.yaml").read_text().replace("epochs: 8", "epochs: 24").replace("patience: 8", "patience: 24"))
    args = [sys.executable, "-m", "search", "submit", str(space), "--address", cluster.dashboard_url,
            "--tracking-uri", cluster_mlflow.url, "--storage", str(tmp_path / "runs"), "--name", "slow-stopped", "--wait"]
    first = subprocess.Popen(args, cwd=REPO, env=cluster.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until trials have results (and checkpoints) to keep
        runs = recorded(cluster_mlflow.url, "slow")
        if len(runs.trials) >= 2 and any("epoch" in run.data.metrics for run in runs.trials):
            break
        time.sleep(2)
    # Ctrl-C while following, with no terminal to ask on: it detaches and the job goes on.
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == exit_codes.LOST, out[-2000:] + err[-2000:]  # detached: the job goes on
    job_id = out.split("as Ray Job ", 1)[1].split()[0]
    assert f"detached; job {job_id} goes on" in err
    stopped = search_cli(cluster, "stop", job_id, "--address", cluster.dashboard_url)
    assert stopped.returncode == 0, stopped.stderr
    with contextlib.chdir(REPO):  # where search_cli runs: this Python as a shell there runs it
        submit = search_command("submit")
    assert f"job {job_id}: STOPPED" in stopped.stdout and f"resume it with: {submit}" in stopped.stdout
    before = recorded(cluster_mlflow.url, "slow")
    assert len(before.parents) == 1 and not any(run.info.status == "FINISHED" for run in before.parents)
    # Stopped as Ctrl-C stops a search: Tune saved its state and the runs ended interrupted.
    assert before.parents[0].data.tags.get("losstune.end_reason") == "interrupted"
    assert _all_ended(before.parents + before.trials)

    again = search_cli(cluster, *args[3:])  # the same submit again
    assert again.returncode == exit_codes.OK, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Resuming unfinished search" in again.stdout
    after = recorded(cluster_mlflow.url, "slow")
    assert len(after.parents) == 1 and after.parents[0].info.run_id == before.parents[0].info.run_id
    assert sorted(after.trial_ids) == sorted(set(after.trial_ids)) and len(after.trial_ids) == 3
    assert set(before.trial_ids) <= set(after.trial_ids)
    assert _all_ended(after.parents + after.trials)
    # Both jobs are recorded on the one search.
    jobs = [key for key in after.parents[0].data.tags if key.startswith(TAG_RAY_JOB_PREFIX)]
    assert len(jobs) == 2


def test_submit_wait_exits_with_the_search_s_own_failure_status(cluster, cluster_mlflow, tmp_path):
    space = tmp_path / "diverging.yaml"
    space.write_text((SPACES / "packed.yaml").read_text().replace("name: packed", "name: diverging")
                     .replace("lr: {loguniform: [1.0e-3, 3.0e-2]}", "lr: 1.0e+30")
                     .replace("num_samples: 4", "num_samples: 2"))  # fmt: skip
    done = search_cli(
        cluster, "submit", str(space), "--address", cluster.dashboard_url, "--tracking-uri", cluster_mlflow.url,
        "--storage", str(tmp_path / "runs"), "--wait",
    )  # fmt: skip
    assert done.returncode == exit_codes.FAILED, done.stdout[-3000:] + done.stderr[-3000:]  # every trial failed
    assert "(exit status 1)" in done.stderr and "FAILED: TrainingDiverged" in done.stdout
