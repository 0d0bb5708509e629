"""The search driver: Ray Tune + Optuna (define-by-run space) + ASHA/median, tracked in MLflow.

``plan_search`` decides (before Ray starts) between a new search and resuming an unfinished one;
``run_search`` runs it on the connected Ray instance and ends with a summary, ``best_config.yaml``
and the MLflow parent/child runs closed.
"""

import importlib
import threading
from typing import Any

from search.driver._plan import (
    SearchInputError,
    SearchOptions,
    SearchPlan,
    check_resources,
    fit_concurrency,
    plan_search,
    prepare_data,
    read_meta,
    search_location,
)
from search.driver._lock import RunDirectoryHold
from search.driver._storage import RunLocation, is_uri, local_path
from search.driver._trainable import FINAL_KEY, make_trainable

# Imported on first use: they need Ray Tune and Optuna (about 0.8 s), which plan_search does not.
_RUN_MODULE = "search.driver._run"
_LAZY = {"SearchOutcome": _RUN_MODULE, "run_search": _RUN_MODULE, "TrialSummary": "search.driver._summary"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def import_run_in_background() -> threading.Thread:
    """Import what ``run_search`` needs (Ray Tune, Optuna, the search's callbacks) in a thread, so
    that it overlaps Ray's start, much of which ``ray.init`` spends waiting for Ray's own processes:
    a short search's first trial ended 0.2 s sooner (median of five interleaved pairs on 2 cores).
    An import that fails leaves the module out of ``sys.modules``: ``run_search``'s own import then
    raises the error."""

    def load() -> None:
        try:
            importlib.import_module(_RUN_MODULE)
        except Exception:  # noqa: BLE001 - raised again, in the caller's thread, by run_search's import
            pass

    thread = threading.Thread(target=load, name="losstune-import-driver", daemon=True)
    thread.start()
    return thread


__all__ = [
    "FINAL_KEY",
    "RunDirectoryHold",
    "RunLocation",
    "SearchInputError",
    "SearchOptions",
    "SearchOutcome",
    "SearchPlan",
    "TrialSummary",
    "check_resources",
    "fit_concurrency",
    "import_run_in_background",
    "is_uri",
    "local_path",
    "make_trainable",
    "plan_search",
    "prepare_data",
    "read_meta",
    "run_search",
    "search_location",
]
