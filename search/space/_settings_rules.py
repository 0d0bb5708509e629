"""Cross-field rules of the driver's settings: the search settings against each other and the
space's entries, and the GPU share per trial against ``train.device``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search.space._compile import Const, Entry, grid_size, grid_space
from search.space._schema import ASHA_SCHEDULERS, MAX_TRIALS, Objective, Resources, SearchSettings

__all__ = ["device_issues", "search_issues"]

Issue = tuple[str, str, Any]  # (YAML path, rule, value)


def _constant(entries: Sequence[Entry], key: str) -> Any:
    return next((e.value for e in entries if isinstance(e, Const) and e.key == key), None)


def search_issues(search: SearchSettings, entries: Sequence[Entry], objectives: Sequence[Objective],
                  raw: Any) -> list[Issue]:
    """The sampler against the searched values, the scheduler against the objectives and epochs."""
    issues: list[Issue] = []
    if search.sampler == "grid" and grid_space(tuple(entries)) is None:
        issues.append(("search.sampler", "`choice` or `grid` for every searched value with the grid sampler "
                       "(uniform, loguniform and int ranges cannot be enumerated)", search.sampler))
    elif search.sampler == "grid":
        size = grid_size(tuple(entries))
        if size > MAX_TRIALS:
            issues.append(("search.sampler", f"a grid of at most {MAX_TRIALS:,} points (one trial each)", size))
        elif isinstance(raw, dict) and "num_samples" in raw and search.num_samples != size:
            issues.append(("search.num_samples", f"the number of points of the grid ({size}), or no num_samples: the "
                           f"grid sampler runs each point once", search.num_samples))
    scheduled = search.scheduler != "none"
    given = raw if isinstance(raw, dict) else {}
    if scheduled and len(objectives) > 1:
        default = "" if "scheduler" in given else f"; {search.scheduler} is the default: set scheduler: none"
        issues.append(("search.scheduler" if "scheduler" in given else "search", "`none` with several objectives "
                       f"(a scheduler stops trials on one metric{default})", search.scheduler))
    # settings no scheduler of the space reads: accepted, they were ignored without a word
    if not scheduled and "grace_period" in given:
        issues.append(("search.grace_period", "no grace period with scheduler none, which stops no trial (asha, "
                       "asha_promotions and median use one)", search.grace_period))
    if search.scheduler not in ASHA_SCHEDULERS and "reduction_factor" in given:
        issues.append(("search.reduction_factor", f"no reduction factor with scheduler {search.scheduler} (asha "
                       "and asha_promotions use one)", search.reduction_factor))
    epochs = _constant(entries, "train.epochs")
    if scheduled and isinstance(epochs, int) and search.grace_period is not None and search.grace_period > epochs:
        path = "search.grace_period" if isinstance(raw, dict) and "grace_period" in raw else "search"
        issues.append((path, f"a grace period of at most train.epochs ({epochs}) epochs", search.grace_period))
    return issues


def device_issues(resources: Resources, entries: Sequence[Entry]) -> list[Issue]:
    """train.device against the GPU share Ray reserves per trial (resources.gpu)."""
    device = _constant(entries, "train.device")
    if device == "cpu" and resources.gpu > 0:
        return [("resources.gpu", "0 with train.device cpu (each trial would hold a GPU share it never uses; "
                 "train.device auto or cuda trains on it)", resources.gpu)]
    if device == "cuda" and resources.gpu == 0:
        return [("train.device", "auto or cpu with resources.gpu 0 (Ray reserves no GPU for such a trial, so "
                 "cuda would train on GPUs nothing accounts for, or find none)", device)]
    return []
