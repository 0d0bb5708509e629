"""A search over the weighting strategies end to end: every strategy trains, logs its effective
weights per epoch to MLflow, and the report compares the strategies."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import ray
from mlflow import MlflowClient

from search.driver import SearchOptions, plan_search, run_search
from search.report import WEIGHTING_TABLE, load_search, open_store, write_report
from search.space import load_space
from trainables.weighting import STRATEGIES

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = """\
name: weighting-tiny
data: {kind: digits, val_fraction: 0.2, limit: 300}
model: {kind: mlp, hidden: 16, dropout: 0.0}
train: {epochs: 3, batch_size: 64, lr: 0.01, patience: 3, seed: 0}
heads: {digit: {loss: ce}, thickness: {loss: {ordinal: {alpha: 0.1}}}, smoothness: {loss: symmetric_ce}}
weighting: {grid: [fixed, uncertainty, dwa, gradnorm, pcgrad]}
auxiliary: {supcon: {head: digit, weight: 0.1}}
objective: {metric: val/acc_mean, mode: max}
search: {sampler: grid, scheduler: none, max_concurrent: 2, seed: 0}
resources: {cpu: 1}
"""


def test_a_search_over_the_strategies_logs_their_weights_and_reports_them(ray_session, tmp_path: Path):
    space_file = tmp_path / "weighting.yaml"
    space_file.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    outcome = run_search(plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"),
                                                                           tracking_uri=uri)))
    assert outcome.exit_code == 0
    assert sorted(t.config["weighting.strategy"] for t in outcome.trials) == sorted(STRATEGIES)
    assert all(t.state == "FINISHED" for t in outcome.trials)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(outcome.plan.experiment)
    for run in client.search_runs([experiment.experiment_id], filter_string="tags.`losstune.role` = 'trial'"):
        history = client.get_metric_history(run.info.run_id, "weights/thickness")
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert "train/loss/auxiliary" in run.data.metrics

    search, _ = load_search(open_store(uri), tracking_uri=uri, selector=outcome.plan.search_id)
    report = write_report(search, tmp_path / "report")
    with open(report.out_dir / WEIGHTING_TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["strategy"] for r in rows) == sorted(STRATEGIES)
    assert all(r["trials"] == "1" for r in rows)
