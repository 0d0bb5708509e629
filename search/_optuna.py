"""Optuna's logging, quietened where a study is an implementation detail."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_optuna"]


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING for the block, without ExperimentalWarning: create_study logs "A new study
    created in memory" at INFO, and TPE's ``group`` option warns; both are noise for a single draw,
    a report or a searcher that the user never sees as a study."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(previous)
