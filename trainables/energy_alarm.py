"""Alarms on the energy term: a weighted energy that outweighs the task, or an energy that keeps
growing after the first epochs (healthy training: it rises, then plateaus; seed 001).

The trainer reports a raised alarm once, as a string ``alarm/<name>`` with the epoch's metrics
(the search tags the trial's MLflow run with it) and as a RuntimeWarning.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ALARM_PREFIX", "energy_alarms"]

ALARM_PREFIX = "alarm/"
# Seed 001's healthy training: the energy rises over epochs 1 to 10 (0.05 to about 0.15), then
# plateaus; its warning sign is an energy "continuously growing without plateau (raw energy > 1.0)".
# So growth is judged only after WARMUP_EPOCHS, above RAW_ENERGY_BOUND...
WARMUP_EPOCHS = 10
RAW_ENERGY_BOUND = 1.0
# ... as a rise of more than GROWTH_RATE in each of the last GROWTH_EPOCHS epochs.
GROWTH_EPOCHS = 3
GROWTH_RATE = 0.01


def energy_alarms(*, energies: Sequence[float], weighted: float, task: float) -> dict[str, str]:
    """The alarms raised at the latest epoch: ``energy_exceeds_task`` when its weighted energy
    (``weighted``, the epoch mean) exceeds the task loss (``task``); ``energy_growing`` when the
    validation energy (``energies``, one per epoch so far, oldest first) is above RAW_ENERGY_BOUND
    and rose by more than GROWTH_RATE in each of the last GROWTH_EPOCHS epochs, all after
    WARMUP_EPOCHS. (Judged from epoch 3 on, it fired at epoch 5 of every energy trial of the
    temporal space, whose energy then levelled off as the seed's healthy curve does.)"""
    alarms = {}
    if weighted > task:
        alarms["energy_exceeds_task"] = (f"weighted energy {weighted:.4g} exceeds the task loss {task:.4g}: "
                                         f"energy_weight is likely too large")
    recent = list(energies[WARMUP_EPOCHS - 1:])[-(GROWTH_EPOCHS + 1):]
    if (len(recent) == GROWTH_EPOCHS + 1 and recent[-1] > RAW_ENERGY_BOUND
            and all(b > a * (1 + GROWTH_RATE) for a, b in zip(recent, recent[1:]))):
        alarms["energy_growing"] = (f"the energy kept growing over the last {GROWTH_EPOCHS} epochs "
                                    f"({recent[0]:.4g} -> {recent[-1]:.4g}) instead of levelling off")
    return alarms
