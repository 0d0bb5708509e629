"""Messages of Ray, Tune, MLflow and Optuna that a search's user cannot act on, kept off the terminal.

Each dropped message is listed with the reason; everything else these libraries log still shows,
and ``--verbose 1`` or more (Tune's own progress output) drops nothing.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["filtered_noise"]


# (logger, text): a record of that logger whose message contains the text is dropped ("": every one).
_DROPPED = (
    # Printed at every start of a local Ray; token authentication stays on.
    ("ray._private.authentication.authentication_token_setup", "Token authentication is enabled"),
    # The driver prints its own resume command and its own list of failed trials.
    ("ray.tune.tune", "Resume experiment with: Tuner.restore"),
    ("ray.tune.tune", "Trials did not complete"),
    # Trials that had not reported yet when a search was interrupted have no results file.
    ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics"),
    # The steps of creating a new SQLite store's tables, at INFO.
    ("mlflow.store.db.utils", ""),
)
# Tune logs the whole traceback of every failed attempt; the driver prints one line per failure
# naming the file that holds the traceback (Tune's documented switch). With a tracking server,
# MLflow prints two links each time a run ends; the driver names the store and experiment once.
_ENVIRONMENT = {"TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
# A resumed trial reports again the epochs it re-runs from its checkpoint; Optuna warns for each.
_OPTUNA_REPEATED_STEP = "The reported value is ignored because this `step="


class _DropFilter(logging.Filter):
    def __init__(self, texts: tuple[str, ...]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


@contextmanager
def filtered_noise(*, verbose: int) -> Iterator[None]:
    """Drop the messages above while the block runs (nothing at ``verbose`` > 0). Environment
    variables the user set are left as they are."""
    if verbose > 0:
        yield
        return
    with ExitStack() as stack:
        by_logger: dict[str, tuple[str, ...]] = {}
        for name, text in _DROPPED:
            by_logger[name] = (*by_logger.get(name, ()), text)
        for name, texts in by_logger.items():
            logger, dropper = logging.getLogger(name), _DropFilter(texts)
            logger.addFilter(dropper)
            stack.callback(logger.removeFilter, dropper)
        for key, value in _ENVIRONMENT.items():
            if key not in os.environ:
                os.environ[key] = value
                stack.callback(os.environ.pop, key, None)
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message=_OPTUNA_REPEATED_STEP, category=UserWarning)
        yield
