"""Learned homoscedastic-uncertainty weighting of several task losses."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla (2018) weighting of T task losses L_i:

        L = sum_{i active} 0.5 * exp(-s_i) * L_i + 0.5 * s_i,    s_i = log sigma_i^2

    s (`log_vars`, shape [T]) is a learnable parameter initialised to 0 (all weights 0.5):
    add it to the optimiser. `active` (bool [T], default all) leaves tasks out: a task whose loss
    is always 0 (weight 0) would otherwise be all 0.5 s_i, which drives s_i down until exp(-s_i)
    overflows and inf * 0 is NaN.
    """

    def __init__(self, *, num_tasks: int) -> None:
        super().__init__()
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError(f"num_tasks must be an int >= 1, but got {num_tasks!r}")
        self.num_tasks = num_tasks
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: Sequence[Tensor], *, active: Tensor | None = None) -> Tensor:
        if len(losses) != self.num_tasks:
            raise ValueError(
                f"losses must have num_tasks={self.num_tasks} entries, but got {len(losses)}"
            )
        shapes = [list(loss.shape) for loss in losses]
        if any(shape != [] for shape in shapes):
            raise ValueError(f"every loss must be a 0-dim tensor, but got shapes {shapes}")
        stacked = torch.stack(list(losses))
        s = self.log_vars
        terms = 0.5 * torch.exp(-s) * stacked + 0.5 * s
        return (terms if active is None else torch.where(active, terms, torch.zeros_like(terms))).sum()

    def extra_repr(self) -> str:
        return f"num_tasks={self.num_tasks}"
