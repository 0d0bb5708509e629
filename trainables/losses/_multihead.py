"""Combination of per-head losses and the energy regulariser, with a loggable breakdown."""

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from trainables.head_modules import HeadModules
from trainables.metric_names import BREAKDOWN_TERMS

from ._energy import EnergyLoss
from ._params import check_number


class MultiHeadLoss(nn.Module):
    """Weighted sum of the head losses plus an optional energy term (and an auxiliary one):

        total = sum_h w_h * L_h(outputs[h], targets[h]) + energy_weight * E [+ auxiliary]

    or, with a weighting strategy attached, its combination of the L_h instead of the sum.

    `forward` returns (total, breakdown). The breakdown holds DETACHED 0-dim tensors, so logging
    it costs no GPU sync inside the training loop (call `.item()` once per epoch, not per step):

        "loss/<head>"           L_h, unweighted
        "loss/task"             sum_h w_h L_h at the effective weights (the strategy's, no terms of its own)
        "loss/energy"           E, raw (0 without an EnergyLoss)
        "loss/energy_weighted"  energy_weight * E
        "loss/energy_share"     energy_weight * E / (task + added terms) (0 when that is 0; a
                                weighting strategy's own terms, uncertainty's 0.5 s_i, left out)
        "loss/total"            total

    The EnergyLoss is reset right after it is read, so each call sees the activity of the forward
    passes since the previous call and no graph is kept across steps.

    A weighting strategy (``trainables.weighting``) may attach itself as ``weighting``: it then
    combines the head losses (instead of the fixed weighted sum) and backpropagates the step
    (``backward``), e.g. one backward per head for PCGrad.
    """

    def __init__(
        self,
        *,
        losses: Mapping[str, nn.Module],
        weights: Mapping[str, float],
        energy: EnergyLoss | None = None,
        energy_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not losses:
            raise ValueError(f"losses must name at least one head, but got {dict(losses)}")
        if set(weights) != set(losses):
            raise ValueError(
                f"weights must have the heads of losses {sorted(losses)}, but got {sorted(weights)}"
            )
        clashing = [head for head in losses if head in BREAKDOWN_TERMS]
        if clashing:
            raise ValueError(f"head names must differ from the breakdown's terms {list(BREAKDOWN_TERMS)}, but got "
                             f"{clashing}")
        for head, weight in weights.items():
            check_number(f"weights[{head!r}]", weight)
        check_number("energy_weight", energy_weight)
        if energy is not None and not isinstance(energy, EnergyLoss):
            raise ValueError(
                f"energy must be an EnergyLoss or None, but got {type(energy).__name__}"
            )
        if energy_weight > 0 and energy is None:
            raise ValueError("energy_weight > 0 needs an EnergyLoss, but got energy=None")
        self.losses = HeadModules(dict(losses))
        self.weights = {head: float(weights[head]) for head in losses}
        self._keys = [f"loss/{head}" for head in losses]  # the breakdown's head keys, built once
        self.energy = energy
        self.energy_weight = float(energy_weight)
        self.weighting: nn.Module | None = None
        # An auxiliary loss (trainables.auxiliary) attaches itself here: + auxiliary(outputs, targets).
        self.auxiliary: nn.Module | None = None
        # this step's head losses and energy term, for a weighting strategy's backward
        self._parts: tuple[list[Tensor], Tensor | None] | None = None
        self._zeros: Tensor | None = None  # the breakdown's zero energy terms without an EnergyLoss

    def forward(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        heads = self.losses.keys()
        if outputs.keys() != heads or targets.keys() != heads:
            name, given = ("outputs", outputs) if outputs.keys() != heads else ("targets", targets)
            raise ValueError(f"{name} must have the heads {sorted(heads)}, but got {sorted(given)}")

        values = []
        for head, loss_fn in self.losses.items():
            try:
                value = loss_fn(outputs[head], targets[head])
            except ValueError as error:  # a shape or target check: which of the heads it was
                raise ValueError(f"head {head!r}: {error}") from error
            # a plugin's loss may return one value per sample: said here, not by autograd's backward
            if not isinstance(value, Tensor) or value.dim() != 0:
                got = f"shape {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"head {head!r}: its loss ({type(loss_fn).__name__}) must return a scalar tensor "
                                 f"(one value for the batch), but got {got}")
            values.append(value)
        breakdown = {key: value.detach() for key, value in zip(self._keys, values)}
        if self.weighting is None:
            total = _weighted_sum(values, list(self.weights.values()))
            task = total.detach()
        else:
            total = self.weighting.combine(values)
            # without the strategy's own terms (uncertainty's 0.5 s_i can make its total negative)
            task = (self.weighting.weights() * torch.stack(values).detach()).sum()
        breakdown["loss/task"] = task

        extra = None  # the terms beside the heads' losses
        if self.energy is not None:
            energy = self.energy().to(total.device)
            self.energy.reset()
            weighted_energy = self.energy_weight * energy
            if self.energy_weight > 0:
                extra = weighted_energy
        if self.auxiliary is not None:
            auxiliary = self.auxiliary(outputs, targets)
            breakdown["loss/auxiliary"] = auxiliary.detach()
            extra = auxiliary if extra is None else extra + auxiliary
        if extra is not None:
            total = total + extra
        if self.weighting is not None:
            self._parts = (values, extra)

        # the task sum is the total when nothing was added to it: one detach less per step
        total_value = task if extra is None and self.weighting is None else total.detach()
        if self.energy is None:
            # one shared zero: no tensor op per step for a term the trial does not have
            zero = self._zero(total_value)
            breakdown.update({"loss/energy": zero, "loss/energy_weighted": zero, "loss/energy_share": zero})
        else:
            weighted_value = weighted_energy.detach()
            breakdown["loss/energy"] = energy.detach()
            breakdown["loss/energy_weighted"] = weighted_value
            # of the losses the trial minimises, without a strategy's own terms (uncertainty's
            # 0.5 s_i turned the share negative)
            whole = total_value if self.weighting is None or extra is None else task + extra.detach()
            breakdown["loss/energy_share"] = torch.where(whole != 0, weighted_value / whole, torch.zeros_like(whole))
        breakdown["loss/total"] = total_value
        return total, breakdown

    def _zero(self, like: Tensor) -> Tensor:
        if self._zeros is None or (self._zeros.device, self._zeros.dtype) != (like.device, like.dtype):
            self._zeros = like.new_zeros(())
        return self._zeros

    def backward(self, total: Tensor, *, scale: Callable[[Tensor], Tensor] = lambda t: t) -> None:
        """Backpropagate ``total``, this step's forward result (``scale``: a GradScaler's): plainly,
        or the way the attached weighting strategy does."""
        if self.weighting is None:
            scale(total).backward()
            return
        if self._parts is None:
            raise RuntimeError("backward needs the forward result of this step, but got none (or a second call)")
        (losses, extra), self._parts = self._parts, None
        self.weighting.backward(total, losses=losses, extra=extra, scale=scale)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, energy_weight={self.energy_weight}"


def _weighted_sum(values: list[Tensor], weights: list[float]) -> Tensor:
    """sum_h w_h L_h in one fused multiply-add per head after the first (no multiply by a weight
    of 1): on a small model each extra op and its backward node is a visible share of a step."""
    total = values[0] if weights[0] == 1.0 else values[0] * weights[0]
    for value, weight in zip(values[1:], weights[1:]):
        total = torch.add(total, value, alpha=weight)
    return total
