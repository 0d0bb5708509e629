"""Search spaces: a safe YAML file -> a validated Space -> an Optuna define-by-run function and
flat trial configs (``trainables.config``).

    space = load_space("spaces/vimh.yaml")        # SpaceError lists every problem
    OptunaSearch(space=space.define_by_run, metric=..., mode=...)
    config = space.sample(seed=0)                 # one complete flat trial config
"""

import importlib
from typing import Any

# Imported when first used: `search validate` and `search report` load only what they need
# (the validator imports the trainer's schema, and with it torch; the YAML reader does not).
_EXPORTS = {
    "MAX_DEPTH": "_parse",
    "MAX_SPACE_BYTES": "_parse",
    "MAX_VALUES": "_parse",
    "SEARCH_NAME_RULE": "_schema",
    "Choice": "_distributions",
    "Grid": "_distributions",
    "IntRange": "_distributions",
    "LogUniform": "_distributions",
    "MlflowSettings": "_schema",
    "Objective": "_schema",
    "Resources": "_schema",
    "SearchSettings": "_schema",
    "Space": "_schema",
    "SpaceError": "_issues",
    "SpaceIssue": "_issues",
    "Uniform": "_distributions",
    "is_search_name": "_schema",
    "load_space": "_validate",
    "read_space_file": "_parse",
    "safe_load_value": "_parse",
    "from_json": "_distributions",
    "to_json": "_distributions",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
