"""Search spaces: a safe YAML file -> a validated Space -> an Optuna define-by-run function and
flat trial configs (``trainables.config``).

    space = load_space("spaces/vimh.yaml")        # SpaceError lists every problem
    OptunaSearch(space=space.define_by_run, metric=..., mode=...)
    config = space.sample(seed=0)                 # one complete flat trial config
"""

from search.space._distributions import Choice, Grid, IntRange, LogUniform, Uniform
from search.space._issues import SpaceError, SpaceIssue
from search.space._parse import MAX_DEPTH, MAX_SPACE_BYTES, MAX_VALUES, safe_load_value
from search.space._schema import (
    SEARCH_NAME_RULE,
    MlflowSettings,
    Objective,
    Resources,
    SearchSettings,
    Space,
    is_search_name,
)
from search.space._validate import load_space

__all__ = [
    "MAX_DEPTH",
    "MAX_SPACE_BYTES",
    "MAX_VALUES",
    "SEARCH_NAME_RULE",
    "Choice",
    "Grid",
    "IntRange",
    "LogUniform",
    "MlflowSettings",
    "Objective",
    "Resources",
    "SearchSettings",
    "Space",
    "SpaceError",
    "SpaceIssue",
    "Uniform",
    "is_search_name",
    "load_space",
    "safe_load_value",
]
