"""MLflow tracking of a search: one parent run per search, one nested child run per trial.

``SearchTracker`` owns the run lifecycle (``_tracker``) through a write buffer that survives an
unreachable store (``_buffer``); ``_store`` says where a search is tracked and how its runs are
tagged and named.
"""

from search.tracking import _store
from search.tracking._buffer import StoreError, open_store_in_background, opened_client, param_text, param_value
from search.tracking._store import *  # noqa: F403 - the names _store exports are this package's
from search.tracking._tracker import SearchTracker

__all__ = [
    *_store.__all__, "SearchTracker", "StoreError", "open_store_in_background", "opened_client", "param_text", "param_value",
]
