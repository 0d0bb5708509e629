"""The names of the metrics the trainer reports, without torch: the search driver checks a
space's objectives against them (``trainables.metrics`` computes the values)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainables.data import HeadInfo

__all__ = ["BEST_EPOCH_KEY", "BREAKDOWN_TERMS", "DEFAULT_K", "HEAD_NAMES_RULE", "LAST_EPOCH_KEY", "MEANS",
           "STEP_METRICS", "better_mode", "head_metric_names", "metric_names"]

# In an epoch's report: 1 when the trial's training ends after this epoch (its epochs or its
# patience ran out), else 0. A scheduler lets such a trial finish instead of pausing it at a rung.
LAST_EPOCH_KEY = "last_epoch"
# In an epoch's report: the trial's best epoch so far by its objective (beside best/<objective>,
# its value there), so that a trial stopped early says which epoch its values are from.
BEST_EPOCH_KEY = "best/epoch"

# The loss breakdown's own terms, "loss/<term>" beside each head's "loss/<head>": no head is named so.
BREAKDOWN_TERMS = ("task", "energy", "energy_weighted", "energy_share", "auxiliary", "total")
# a head's loss is reported as loss/<head>, beside the breakdown's terms
HEAD_NAMES_RULE = f"head names other than the loss terms {', '.join(BREAKDOWN_TERMS)}"

DEFAULT_K = 5
# What a temporal trial adds per head (step_metrics), each also averaged over heads as <name>_mean.
_STEP_DISTANCE = "mae_norm_steps"  # of a distance between classes: only an ordinal head has it
STEP_METRICS = ("acc_steps", _STEP_DISTANCE, "reaction")
# The unweighted mean over the heads that report it of each of these per-head metrics is <name>_mean.
MEANS = ("acc", "mae_norm", *STEP_METRICS)


# Metrics that improve as they fall (distances, times, energy); the others (accuracies) as they rise.
_LOWER_IS_BETTER = frozenset({"mae", "mae_units", "mae_norm", _STEP_DISTANCE, "reaction", "energy", "energy_l1"})


def better_mode(metric: str) -> str:
    """``"min"`` or ``"max"``: the way metric ``metric`` improves (a name ``metric_names`` lists, or a
    head's metric without its split and head: ``mae``)."""
    name = metric.rsplit("/", 1)[-1]
    name = name.removesuffix("_mean") if name.removesuffix("_mean") in MEANS else name
    return "min" if name in _LOWER_IS_BETTER else "max"


def metric_names(heads: Mapping[str, HeadInfo], *, split: str = "val", temporal: bool = False) -> list[str]:
    """Every metric the trainer reports for ``split``: the valid objectives of a search. A temporal
    trial (a recurrent model) adds STEP_METRICS."""
    per_head = {head: head_metric_names(num_classes=info.num_classes, ordinal=info.ordinal,
                                        has_units=info.unit_range is not None, k=DEFAULT_K, temporal=temporal)
                for head, info in heads.items()}
    names = [f"{split}/{head}/{metric}" for head, metrics in per_head.items() for metric in metrics]
    means = [f"{split}/{name}_mean" for name in MEANS if any(name in metrics for metrics in per_head.values())]
    return names + means + [f"{split}/energy", f"{split}/energy_l1"]


def head_metric_names(*, num_classes: int, ordinal: bool, has_units: bool, k: int,
                      temporal: bool = False) -> list[str]:
    """A head's metrics, in the order ``trainables.metrics`` computes them. Those of a distance between
    classes only for an ordinal head (``HeadInfo.ordinal``): a categorical head's classes (CIFAR's, a
    digit's) are no nearer one to another; within{j} only where an error can exceed j classes (on
    digits' 5-level thickness within5 was 1 whatever the model did)."""
    within = [f"within{j}" for j in (1, k) if j < num_classes - 1]
    distances = ["mae", *(["mae_units"] if has_units else []), *within, "mae_norm"]
    steps = list(STEP_METRICS) if temporal else []
    if not ordinal:
        return ["acc", *(s for s in steps if s != _STEP_DISTANCE)]
    return ["acc", *distances, *steps]
