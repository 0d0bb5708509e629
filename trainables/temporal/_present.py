"""How a batch reaches a model and its labels reach the losses, for static and temporal models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from trainables.losses import IGNORE_INDEX

__all__ = ["Presenter"]


@dataclass(frozen=True)
class Presenter:
    """``presented``: one bool per step (True: the image, False: a null input) for a temporal model,
    None for a static one. ``supervised``: one bool per step, True where the label is kept.

    A temporal model's outputs [N, T, K] become [N*T, K] rows for the head losses, and each label
    is repeated over the steps, with ``ignore_index`` at the unsupervised ones: every head loss
    then averages over the supervised (sample, step) pairs only.
    """

    presented: tuple[bool, ...] | None = None
    supervised: tuple[bool, ...] | None = None
    ignore_index: int = IGNORE_INDEX
    dt: float = 1.0  # the time of a step, for reaction times
    # ``supervised`` as a [T] bool tensor on the trial's device (``on``): built per step, its copy
    # from host memory would make every CUDA step wait for the device.
    mask: Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.presented is None) != (self.supervised is None) or (
            self.presented is not None and len(self.presented) != len(self.supervised)
        ):
            raise ValueError(f"presented and supervised must both be None or one bool per step each, but got "
                             f"{self.presented} and {self.supervised}")

    def on(self, device: torch.device) -> Presenter:
        """The same presenter with its mask on ``device``, built once."""
        if self.supervised is None:
            return self
        return replace(self, mask=torch.tensor(self.supervised, dtype=torch.bool, device=device))

    @property
    def steps(self) -> int | None:
        return None if self.presented is None else len(self.presented)

    @property
    def keeps_a_target(self) -> bool:
        """Whether every sample keeps a label at some step (every batch then has a target to learn)."""
        return self.supervised is None or any(self.supervised)

    def outputs(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        """The model's outputs: {head: [N, K]}, or [N, T, K] for a temporal model."""
        return model(x) if self.presented is None else model(x, self.presented)

    def for_loss(
        self, model: nn.Module, x: Tensor, targets: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(outputs, targets) in the head losses' form: one row per sample, or per (sample, step)."""
        outputs = self.outputs(model, x)
        if self.presented is None:
            return outputs, dict(targets)
        rows = {name: out.reshape(-1, out.shape[-1]) for name, out in outputs.items()}
        steps = len(self.supervised)
        if all(self.supervised):  # nothing to mask: no per-step select
            return rows, {name: y[:, None].expand(-1, steps).reshape(-1) for name, y in targets.items()}
        mask = self.mask if self.mask is not None else torch.tensor(self.supervised, device=x.device)
        labels = {
            name: torch.where(mask, y[:, None], self.ignore_index).reshape(-1) for name, y in targets.items()
        }
        return rows, labels
