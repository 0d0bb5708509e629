"""Hooks of the train loop: how a section a plugin adds (a new search dimension) acts on training.

A hook section's switch (``weighting``, or a section a plugin adds) chooses an option; ``train`` builds it with its parameters
(``switch.build(option, **params)``) and calls whichever of these methods it has::

    on_start(*, model, optimizer, criterion)       once, before a checkpoint is restored
    on_epoch_end(*, epoch, metrics) -> dict | None  after each epoch's validation, before the
                                                    checkpoint; a returned mapping of numbers is
                                                    reported with the epoch
    state_dict() / load_state_dict(state)           what the hook keeps between epochs, saved in
                                                    the trial's checkpoint (plain values, tensors)

The loop has no case of its own for any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainables.config import TrialConfig
from trainables.switches import switch_field

__all__ = ["build_hooks", "epoch_end", "load_states", "start", "states"]


def build_hooks(cfg: TrialConfig) -> dict[str, Any]:
    """Section name -> the chosen option of every hook section with a switch, built with its
    parameters."""
    hooks = {}
    for section_name, section in cfg.hook_sections():
        found = switch_field(type(section))
        if found is not None:
            name, switch = found
            hooks[section_name] = switch.build(getattr(section, name), **section.params)
    return hooks


def start(hooks: Mapping[str, Any], **context: Any) -> None:
    for hook in hooks.values():
        if hasattr(hook, "on_start"):
            hook.on_start(**context)


def epoch_end(hooks: Mapping[str, Any], *, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics the hooks add for this epoch."""
    added: dict[str, float] = {}
    for hook in hooks.values():
        if hasattr(hook, "on_epoch_end"):
            added.update(hook.on_epoch_end(epoch=epoch, metrics=dict(metrics)) or {})
    return added


def states(hooks: Mapping[str, Any]) -> dict[str, Any]:
    """Section name -> each hook's state for a checkpoint (None for a hook without one)."""
    return {name: hook.state_dict() if hasattr(hook, "state_dict") else None for name, hook in hooks.items()}


def load_states(hooks: Mapping[str, Any], saved: Mapping[str, Any] | list[Any]) -> None:
    """Each hook's state from ``saved``, by section name: a plugin's section registered since the
    checkpoint took the place of the states that followed it (a list, as checkpoints of older
    versions hold, is read in ``hook_sections`` order)."""
    by_name = saved if isinstance(saved, Mapping) else dict(zip(hooks, saved))
    for name, hook in hooks.items():
        state = by_name.get(name)
        if state is not None and hasattr(hook, "load_state_dict"):
            hook.load_state_dict(state)
