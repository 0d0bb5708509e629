"""The data set reaches the trials through Ray's object store: the driver loads it once, and no
trial reads the data files (on a cluster they may exist only where the driver runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from search.driver import SearchOptions, plan_search, prepare_data, run_search
from search.space import load_space

SPACE = """\
name: handoff
data: {{kind: mnist, path: {path}, val_fraction: 0.25}}
model: {{kind: mlp, hidden: 8, dropout: 0.0}}
train: {{epochs: 2, batch_size: 8, lr: {{loguniform: [1.0e-3, 1.0e-2]}}, patience: 2, seed: 0}}
heads:
  digit: {{loss: {{choice: [ce, focal]}}}}
objective: {{metric: val/acc_mean, mode: max}}
search: {{num_samples: 2, sampler: random, scheduler: none, max_concurrent: 2, seed: 0{more}}}
resources: {{cpu: 1}}
"""


def _space(tmp_path: Path, path: str, more: str = "") -> Path:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(path=path, more=more))
    return space


def test_trials_train_on_the_driver_loaded_data_when_the_files_are_gone(ray_session, tmp_path: Path, write_mnist):
    files = tmp_path / "mnist"
    files.mkdir()
    write_mnist(files, compress=True, rng=np.random.default_rng(0))
    space = load_space(_space(tmp_path, str(files)))
    plan = plan_search(space, SearchOptions(storage=str(tmp_path / "runs"),
                                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))  # fmt: skip
    data = prepare_data(space)
    assert data is not None and len(data.train) == 30
    shutil.rmtree(files)  # a trial that read them would now fail
    outcome = run_search(plan, data=data)
    assert outcome.exit_code == 0
    assert [t.state for t in outcome.trials] == ["FINISHED", "FINISHED"]


def test_per_node_loading_leaves_the_loading_to_each_trial(ray_session, tmp_path: Path, write_mnist, monkeypatch):
    files = tmp_path / "mnist"
    files.mkdir()
    write_mnist(files, compress=True, rng=np.random.default_rng(0))
    monkeypatch.chdir(tmp_path)
    space = load_space(_space(tmp_path, "mnist", more=", data_loading: per_node"))
    assert space.data.path == str(files)  # made absolute where the search starts: the same on every node
    assert prepare_data(space) is None  # checked here, loaded by each trial
    plan = plan_search(space, SearchOptions(storage=str(tmp_path / "runs"),
                                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))  # fmt: skip
    shutil.rmtree(files)  # the trials read the files themselves: now they cannot
    outcome = run_search(plan)
    assert [t.state for t in outcome.trials] == ["FAILED", "FAILED"]
    assert all("mnist" in (t.error or "") for t in outcome.trials)
