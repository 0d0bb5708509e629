"""The search driver: Ray Tune + Optuna (define-by-run space) + ASHA/median, tracked in MLflow.

``plan_search`` decides (before Ray starts) between a new search and resuming an unfinished one;
``run_search`` runs it on the connected Ray instance and ends with a summary, ``best_config.yaml``
and the MLflow parent/child runs closed.
"""

from search.driver._plan import (
    SearchInputError,
    SearchOptions,
    SearchPlan,
    check_resources,
    plan_search,
    prepare_data,
)
from search.driver._run import SearchOutcome, run_search
from search.driver._summary import TrialSummary
from search.driver._trainable import FINAL_KEY, make_trainable

__all__ = [
    "FINAL_KEY",
    "SearchInputError",
    "SearchOptions",
    "SearchOutcome",
    "SearchPlan",
    "TrialSummary",
    "check_resources",
    "make_trainable",
    "plan_search",
    "prepare_data",
    "run_search",
]
