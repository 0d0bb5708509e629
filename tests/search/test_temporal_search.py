"""A temporal multi-objective search end to end: the Pareto set it reports is non-dominated, its
trials carry the temporal metrics and the energy alarm in MLflow, and `search train` reproduces
its best trial from best_config.yaml."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import ray
from mlflow import MlflowClient

from search.__main__ import main
from search.driver import SearchOptions, plan_search, run_search
from search.report import PARETO_TABLE, load_search, open_store, write_report
from search.space import load_space
from search.tracking import TAG_ALARM_PREFIX

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = """\
name: temporal-tiny
data: {kind: digits, val_fraction: 0.2, limit: 300}
model: {kind: recurrent_cnn, hidden: 12, dropout: 0.0}
temporal: {n_timesteps: 4, pattern: {choice: ["1111", "10"]}, dt: 1, reaction_time: {choice: [0, 1]}}
train: {epochs: 2, batch_size: 32, lr: 0.01, patience: 2, seed: 0}
heads: {digit: {loss: ce}, thickness: {loss: {ordinal: {alpha: 0.1}}}}
energy_weight: {choice: [0.0, 0.1, 100.0]}
objective:
  - {metric: val/acc_mean, mode: max}
  - {metric: val/energy, mode: min}
search: {num_samples: 5, sampler: random, scheduler: none, max_concurrent: 2, seed: 1}
resources: {cpu: 1}
"""


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a at least as good in both (acc up, energy down) and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def test_a_temporal_multi_objective_search_reports_a_non_dominated_front(ray_session, tmp_path: Path, capsys):
    space_file = tmp_path / "temporal.yaml"
    space_file.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    outcome = run_search(plan_search(load_space(space_file), SearchOptions(storage=str(tmp_path / "runs"),
                                                                           tracking_uri=uri)))
    assert outcome.exit_code == 0 and len(outcome.trials) == 5
    assert all(t.state == "FINISHED" for t in outcome.trials)

    values = {t.trial_id: (t.values[0], t.values[1]) for t in outcome.trials}
    expected_front = {i for i, v in values.items() if not any(_dominates(o, v) for o in values.values())}
    assert {t.trial_id for t in outcome.pareto} == expected_front

    search, _ = load_search(open_store(uri), tracking_uri=uri, selector=outcome.plan.search_id)
    report = write_report(search, tmp_path / "report")
    with open(report.out_dir / PARETO_TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["trial_id"] for r in rows if r["pareto"] == "True"} == expected_front
    assert {float(r["energy_weight"]) for r in rows} == {t.config["energy_weight"] for t in outcome.trials}

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(outcome.plan.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`losstune.role` = 'trial'")
    for run in runs:
        assert {"val/reaction_mean", "val/acc_steps_mean", "test/reaction_mean"} <= set(run.data.metrics)
        alarmed = f"{TAG_ALARM_PREFIX}energy_exceeds_task" in run.data.tags
        assert alarmed == (float(run.data.params["energy_weight"]) == 100.0)

    # best_config.yaml reproduces the best trial outside Ray, through `search train`.
    best = outcome.best
    capsys.readouterr()
    assert main(["train", str(space_file), "--config", str(outcome.plan.run_dir / "best_config.yaml")]) == 0
    out = capsys.readouterr().out.split("final metrics", 1)[1]
    assert f"val/acc_mean = {best.values[0]:.6g}" in out

    # any trial, by the id of its MLflow run (its params are its config): the test metrics it logged
    other = next(run for run in runs if run.data.tags["losstune.trial_id"] != best.trial_id)
    assert main(["train", str(space_file), "--run", other.info.run_id, "--tracking-uri", uri]) == 0
    printed = capsys.readouterr().out
    assert f"trial config from the MLflow run {other.info.run_id}:" in printed
    assert f"energy_weight = {other.data.params['energy_weight']}" in printed
    assert f"test/acc_mean = {other.data.metrics['test/acc_mean']:.6g}" in printed.split("final metrics", 1)[1]


def test_the_shipped_temporal_space_is_a_multi_objective_temporal_search():
    space = load_space(Path(__file__).resolve().parents[2] / "spaces" / "temporal_energy.yaml")
    assert [o.mode for o in space.objectives] == ["max", "min"]
    assert space.sample(seed=0)["model.kind"] == "recurrent_cnn"
    searched = set(space.searched())
    assert {"energy_weight", "energy.p", "temporal.pattern", "temporal.reaction_time"} <= searched
    assert any(k.startswith("heads.") and k.endswith(".weight") for k in searched)


def test_a_temporal_objective_is_valid_only_for_a_temporal_space(tmp_path: Path, capsys):
    space_file = tmp_path / "reaction.yaml"
    space_file.write_text(SPACE.replace("  - {metric: val/acc_mean, mode: max}", "  - {metric: val/reaction_mean, mode: min}"))
    assert main(["validate", str(space_file)]) == 0
    out = capsys.readouterr().out
    assert "objective: min val/reaction_mean, min val/energy" in out
    # both are searched; the fixed objective.metric is the trainer's: the first
    assert "best epoch and patience follow the first: objective.metric below" in out
    assert "objective.metric = val/reaction_mean" in out
