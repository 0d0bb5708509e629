"""Where a scheduler compares trials (its rungs, in epochs), from the space alone: no Ray, so that
``search validate`` can say it."""

from __future__ import annotations

import math

from search.space import Space
from search.space._schema import ASHA_SCHEDULERS

__all__ = ["asha_grace", "grace_period", "promotion_rungs", "rung_milestones", "scheduler_rungs", "scheduling_text", "space_epochs"]


def rung_milestones(*, epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The rungs' epochs, ascending: grace x rf^k below ``epochs`` (where Ray's ASHA puts its rungs)."""
    count = int(math.log(epochs / grace_period) / math.log(reduction_factor) + 1e-9) + 1
    # Ray's rung at a fractional epoch is reached at the next whole one
    return sorted({math.ceil(grace_period * reduction_factor**k - 1e-9) for k in range(count)} - {epochs})


def asha_grace(epochs: int, reduction_factor: float) -> int:
    """The grace period that puts ASHA's rungs (grace x rf^k epochs) as the space's epochs would in
    Hyperband: the last one at about ``epochs``, the first at epochs / rf^k >= 1 (9 epochs, rf 3:
    rungs at 1, 3, 9; 20 epochs: 2, 6, 18). ASHA with promotions takes the last for the end."""
    reductions = max(0, math.floor(math.log(epochs) / math.log(reduction_factor) + 1e-9))
    return max(1, round(epochs / reduction_factor**reductions))


def grace_period(space: Space, *, epochs: int) -> int:
    """The grace period the space sets (at most its epochs), else ASHA's from its epochs
    (``asha_grace``) or 1 epoch for median stopping (which has no rungs)."""
    settings = space.search
    if settings.grace_period is not None:
        return min(settings.grace_period, epochs)
    return asha_grace(epochs, settings.reduction_factor) if settings.scheduler in ASHA_SCHEDULERS else 1


def promotion_rungs(space: Space, *, epochs: int) -> list[int]:
    """The rungs of ASHA with promotions: grace x rf^k, each one whose next (grace x rf^(k+1)) is
    within the epochs; the end takes the place of the last, as in Hyperband, whose top rung is
    the budget (20 epochs from 2: rungs at 2 and 6, not 18, which trials would pass only once rf
    of them had waited there), whether the space sets the grace period or it follows the epochs."""
    rf = space.search.reduction_factor
    milestones = rung_milestones(epochs=epochs, grace_period=grace_period(space, epochs=epochs), reduction_factor=rf)
    return [m for m in milestones if m * rf <= epochs]


def space_epochs(space: Space) -> int:
    """The epochs every trial of ``space`` trains at most (``train.epochs``: a constant, never searched),
    the time axis of its scheduler."""
    return int(space.constants["train.epochs"])


def scheduler_rungs(space: Space) -> list[int]:
    """The epochs at which the space's ASHA scheduler compares trials ([] for the others)."""
    epochs = space_epochs(space)
    if space.search.scheduler == "asha_promotions":
        return promotion_rungs(space, epochs=epochs)
    if space.search.scheduler == "asha":
        return rung_milestones(epochs=epochs, grace_period=grace_period(space, epochs=epochs),
                               reduction_factor=space.search.reduction_factor)
    return []


def scheduling_text(space: Space) -> str:
    """Where the space's scheduler compares trials over its epochs, for a person (``validate`` and
    the search's first line): ``asha_promotions`` at epochs 1 and 3 of 9, say, or nowhere."""
    settings = space.search
    epochs = space_epochs(space)
    rf = f"{settings.reduction_factor:g}"
    grace = grace_period(space, epochs=epochs)
    rungs = scheduler_rungs(space)
    if settings.scheduler in ASHA_SCHEDULERS and not rungs:  # no rung before the end: it stops no trial
        return (f"{settings.scheduler}, no rung within {epochs} epochs (from a grace period of {grace}, reduction "
                f"factor {rf}): every trial trains to its end")
    if settings.scheduler == "asha_promotions":
        return (f"asha_promotions, {_at(rungs)} of {epochs}: a trial waits there until it is among the top 1/{rf}")
    if settings.scheduler == "asha":
        return f"asha, {_at(rungs)} of {epochs}: a trial below the top 1/{rf} there stops"
    if settings.scheduler == "median":
        return f"median, from epoch {grace} of {epochs}: a trial below the median of the others there stops"
    return f"none: every trial trains its {epochs} epochs"


def _at(rungs: list[int]) -> str:
    if len(rungs) == 1:
        return f"a rung at epoch {rungs[0]}"
    return f"rungs at epochs {', '.join(map(str, rungs[:-1]))} and {rungs[-1]}"
