"""Weighting strategies: how the head losses of a trial are combined and backpropagated.

Each strategy is a hook of the train loop (``trainables.hooks``): ``on_start`` attaches it to the
trial's ``MultiHeadLoss`` (and adds its parameters to the optimiser), which then calls
``combine`` for the task loss of every step and ``backward`` for its backward pass; ``on_epoch_end``
reports the effective per-head weights (``weights/<head>``); ``state_dict`` keeps what it learned
for a resumed trial. The head weights w_i of the space are the starting point or a fixed factor:

    fixed        sum_i w_i L_i
    uncertainty  sum_i 0.5 exp(-s_i) w_i L_i + 0.5 s_i      (s_i = log sigma_i^2, learned; Kendall et al. 2018)
    dwa          sum_i lambda_i w_i L_i                     (lambda from the last two epochs; Liu et al. 2019)
    gradnorm     sum_i g_i L_i, g learned from w scaled to sum to K, kept summing to K (Chen et al. 2018;
                 K: the heads of weight > 0, as for dwa)
    pcgrad       sum_i w_i L_i, the task gradients on the shared layers projected (Yu et al. 2020)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from trainables.flat_keys import WEIGHTS_PREFIX
from trainables.losses import UncertaintyWeighting

from ._methods import dwa_weights, gradnorm_targets, pcgrad
from ._params import STRATEGY, DWAParams, FixedParams, GradNormParams, PCGradParams, StrategyParams, UncertaintyParams

__all__ = ["DWA", "Fixed", "GradNorm", "PCGrad", "Strategy", "Uncertainty"]

Scale = Callable[[Tensor], Tensor]


class Strategy(nn.Module):
    """The base of the strategies. A subclass names its declaration in ``Params`` (its keywords,
    defaults and ``min_heads``, without torch); the constructor checks the keywords through it and
    keeps each as an attribute of the same name."""

    Params: ClassVar[type[StrategyParams]] = StrategyParams
    # Whether it combines and backpropagates the losses itself (else MultiHeadLoss's weighted sum).
    attaches: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__()
        declared = self.Params(**params)
        for field in dataclasses.fields(declared):
            setattr(self, field.name, getattr(declared, field.name))

    def on_start(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module) -> None:
        self.heads = list(criterion.losses)
        if len(self.heads) < self.Params.min_heads:
            raise ValueError(f"weighting {self.name()} needs at least {self.Params.min_heads} heads, but got "
                             f"{self.heads}")
        device = next(model.parameters()).device
        self.register_buffer("base", torch.tensor([criterion.weights[h] for h in self.heads], device=device))
        self.setup(model)
        self.to(device)
        own = list(self.parameters())
        if own:  # learned weights: optimised with the model, without weight decay
            optimizer.add_param_group({"params": own, "weight_decay": 0.0})
        if self.attaches:
            criterion.weighting = self

    @classmethod
    def name(cls) -> str:
        """The name it is entered under (as itself, else as its declaration)."""
        entered = [n for n, o in STRATEGY.options.items() if o is cls] or [
            n for n, o in STRATEGY.options.items() if o is cls.Params]
        return entered[0] if entered else cls.__name__

    def setup(self, model: nn.Module) -> None:
        """What the strategy needs of the model (its shared layers), before it moves to the device."""

    def training_heads(self) -> list[int]:
        """The indices of the heads of weight > 0: the only ones a learned weighting weighs."""
        return [i for i, weight in enumerate(self.base.tolist()) if weight > 0]

    def weights(self) -> Tensor:
        """The effective weight of each head's loss this step (no gradient)."""
        return self.base

    def combine(self, losses: Sequence[Tensor]) -> Tensor:
        """The task loss from the heads' losses (in ``heads`` order)."""
        return (self.weights() * torch.stack(list(losses))).sum()

    def backward(self, total: Tensor, *, losses: Sequence[Tensor], extra: Tensor | None, scale: Scale) -> None:
        """Gradients of ``total`` (the task loss plus ``extra``, the energy term) for the step."""
        scale(total).backward()

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        return {f"{WEIGHTS_PREFIX}{head}": w for head, w in zip(self.heads, self.weights().tolist())}


class Fixed(Strategy):
    # MultiHeadLoss's own weighted sum: the same numbers and cost as a trial before strategies.
    Params = FixedParams
    attaches = False


class Uncertainty(Strategy):
    """Kendall, Gal & Cipolla (2018): ``UncertaintyWeighting`` of the weighted head losses w_i L_i,
    learned s_i = log sigma_i^2 per head, starting at 0; a head of weight 0 takes no part."""

    Params = UncertaintyParams

    def setup(self, model: nn.Module) -> None:
        self.uncertainty = UncertaintyWeighting(num_tasks=len(self.heads))

    def weights(self) -> Tensor:
        return (0.5 * torch.exp(-self.uncertainty.log_vars) * self.base).detach()

    def combine(self, losses: Sequence[Tensor]) -> Tensor:
        return self.uncertainty(list(self.base * torch.stack(list(losses))), active=self.base > 0)


class DWA(Strategy):
    """Liu, Johns & Davison (2019): lambda from the ratio of the last two epochs' training losses
    (``dwa_weights``); equal weights for the first two epochs. A head of weight 0 takes no part:
    the lambdas of the others sum to their number."""

    Params = DWAParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.history: list[list[float]] = []

    def setup(self, model: nn.Module) -> None:
        self.register_buffer("lambdas", torch.ones(len(self.heads)))

    def weights(self) -> Tensor:
        return self.lambdas * self.base

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        used = super().on_epoch_end(epoch=epoch, metrics=metrics)  # the weights of the epoch that ended
        self.history.append([metrics[f"train/loss/{head}"] for head in self.heads])
        # a head of weight 0 in the softmax took a share the others lost (all of it, where its
        # untrained loss rose)
        active = self.training_heads()
        if active:
            history = [[epoch[i] for i in active] for epoch in self.history]
            lambdas = self.lambdas.new_zeros(len(self.heads))
            lambdas[active] = torch.tensor(dwa_weights(history, temperature=self.temperature), dtype=lambdas.dtype,
                                           device=lambdas.device)
            self.lambdas.copy_(lambdas)
        return used

    def get_extra_state(self) -> Any:
        return {"history": self.history}

    def set_extra_state(self, state: Any) -> None:
        self.history = [list(epoch) for epoch in state["history"]]


def _shared_and_head_parameters(model: nn.Module, strategy: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    heads = getattr(model, "heads", None)
    if not isinstance(heads, nn.Module):
        raise ValueError(f"weighting {strategy} needs a model with its heads in a `heads` module (the rest is "
                         f"shared), but got {type(model).__name__}")
    own = {id(p) for p in heads.parameters()}
    shared = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
    return shared, [p for p in heads.parameters() if p.requires_grad]


class GradNorm(Strategy):
    """Chen et al. (2018): weights g_i learned so that the heads' gradient norms on the last shared
    layer, G_i = ||grad_W g_i L_i||, move to mean(G) * r_i ** alpha, r_i the head's inverse training
    rate (L_i(t) / L_i(0) relative to the mean, L_i(0) the head's first loss > 0 and the rate 1 until
    then); g renormalised to sum to the number of heads that train. A head of weight 0 keeps
    g_i = 0 and takes no part in mean(G), the rates or that number (as in DWA: a head left out of a
    trial does not scale up the others' weights)."""

    Params = GradNormParams

    def setup(self, model: nn.Module) -> None:
        _shared_and_head_parameters(model, "gradnorm")
        last = getattr(model, "last_shared", None)
        if not isinstance(last, nn.Module) or not any(p.requires_grad for p in last.parameters(recurse=False)):
            raise ValueError(f"weighting gradnorm needs a model that names its last shared layer (a `last_shared` "
                             f"module with parameters, before the heads), but got {type(model).__name__}")
        self.layer = [p for p in last.parameters(recurse=False) if p.requires_grad]
        k = len(self.heads)
        if not float(self.base.sum()) > 0:
            raise ValueError(f"weighting gradnorm needs head weights with a sum > 0, but got {self.base.tolist()}")
        # the heads that take part, as indices (a boolean mask's selection would wait for a GPU)
        self.register_buffer("active", torch.tensor(self.training_heads()), persistent=False)
        self.gains = nn.Parameter(self.base * len(self.active) / self.base.sum())
        # L_i(0): each head's first loss > 0, 0 until it has one (a first batch whose targets were all
        # ignored gives a head the loss 0, which as L_i(0) would make every rate after it inf)
        self.register_buffer("initial", torch.zeros(k))

    def weights(self) -> Tensor:
        g = torch.zeros_like(self.gains).index_copy(0, self.active, self.gains.detach()[self.active].clamp(min=1e-6))
        return g * len(self.active) / g.sum()

    def combine(self, losses: Sequence[Tensor]) -> Tensor:
        with torch.no_grad():  # the optimiser step moved the sum: back to K (and every weight > 0)
            self.gains.copy_(self.weights())
        return super().combine(losses)

    def backward(self, total: Tensor, *, losses: Sequence[Tensor], extra: Tensor | None, scale: Scale) -> None:
        # One backward per head, through the head and the last shared layer only; scaled like the
        # step's backward (fp16 gradients underflow unscaled), then unscaled.
        unit = scale(torch.ones((), device=self.gains.device))
        norms = torch.stack([
            torch.cat([g.flatten() for g in torch.autograd.grad(scale(loss), self.layer, retain_graph=True)]).norm()
            for loss in losses
        ]) / unit
        values = torch.stack([loss.detach() for loss in losses])
        # where, not if: a value read on the host would wait for a GPU at every step
        self.initial.copy_(torch.where(self.initial > 0, self.initial, values))
        rates = torch.where(self.initial > 0, values / self.initial, 1.0)  # 1 until the head has its L_i(0)
        g = self.weights()
        on = self.active
        targets = torch.zeros_like(g).index_copy(0, on, gradnorm_targets((g * norms)[on], rates[on], alpha=self.alpha))
        scale(total).backward()
        # d/dg_i of sum_j |g_j n_j - target_j| (n and the targets constant)
        self.gains.grad = scale(torch.sign(g * norms - targets) * norms)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        # Checkpoints of earlier code (which took the first step's losses as L_i(0), 0s included) also
        # hold, as torch's extra state, a flag saying whether `initial` was set: `initial` says it now.
        kept = {key: value for key, value in state_dict.items() if key != "_extra_state"}
        return super().load_state_dict(kept, strict=strict, assign=assign)


class PCGrad(Strategy):
    """Yu et al. (2020): each head's gradient on the shared parameters projected off the others it
    conflicts with (``pcgrad``), in a random order per step drawn from a generator seeded from the
    trial's seed; the heads' own parameters and the energy term get their plain gradients."""

    Params = PCGradParams

    def setup(self, model: nn.Module) -> None:
        self.shared, self.own = _shared_and_head_parameters(model, "pcgrad")
        # seeded by the trial's seed (the global generator train() seeded), kept in the checkpoint
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))

    def backward(self, total: Tensor, *, losses: Sequence[Tensor], extra: Tensor | None, scale: Scale) -> None:
        weighted = self.weights() * torch.stack(list(losses))
        parts = [_flat_grad(scale(weighted[i]), self.shared) for i in range(len(losses))]
        update = torch.stack(pcgrad([g for g, _ in parts], generator=self.generator)).sum(dim=0)
        if extra is not None and extra.requires_grad:
            parts.append(_flat_grad(scale(extra), self.shared))
            update = update + parts[-1][0]
        used = [any(reached) for reached in zip(*(r for _, r in parts))]
        scale(total).backward(inputs=self.own)
        offset = 0
        for p, reached in zip(self.shared, used):
            # none, as plain backward leaves it, where no term reaches p: the optimiser skips it
            p.grad = update[offset:offset + p.numel()].view_as(p).clone() if reached else None
            offset += p.numel()

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])


def _flat_grad(loss: Tensor, params: Sequence[nn.Parameter]) -> tuple[Tensor, list[bool]]:
    """(the gradient of ``loss`` on ``params``, flat, zeros where it does not reach; where it does)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])
    return flat, [g is not None for g in grads]

