"""What a search left in MLflow: its parent run and its trials' runs, found by tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from search.tracking import ROLE_SEARCH, ROLE_TRIAL, TAG_ROLE, TAG_SEARCH_ID, TAG_TRIAL_ID


@dataclass
class Recorded:
    parents: list[Any]
    trials: list[Any]

    @property
    def trial_ids(self) -> list[str]:
        return [run.data.tags[TAG_TRIAL_ID] for run in self.trials]


def recorded(url: str, experiment: str) -> Recorded:
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return Recorded([], [])
    runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_SEARCH]
    ids = {r.data.tags[TAG_SEARCH_ID] for r in parents}
    trials = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL and r.data.tags.get(TAG_SEARCH_ID) in ids]
    return Recorded(parents, trials)
