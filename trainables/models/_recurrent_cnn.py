"""A recurrent multihead CNN (seed 001): a small conv encoder, a recurrent state over timesteps,
and the heads read out at every step."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from trainables.losses import RecurrentState

from ._heads import Heads
from ._params import RecurrentCNNParams
from ._simple_cnn import _after_two_pools
# Smaller than SimpleCNN's 7x7: the encoder runs once per timestep, so its last layer is kept small.
_POOLED_SIZE = 4


class RecurrentCNN(nn.Module):
    """Per step t, with x_t the image (or a zero image at a null step of the presentation):

        f_t = Linear(ConvEncoder(x_t))                    (conv-ReLU-pool twice, to ``hidden``)
        leaky: h_t = (1 - leak) * h_{t-1} + leak * ReLU(f_t + U h_{t-1})
        gru:   h_t = GRUCell(ReLU(f_t), h_{t-1})
        y_t   = Heads(Dropout(h_t))

    with h_{-1} = 0. ``forward(x, presented)`` takes images [N, C, H, W] and one bool per step
    (True: the image, False: a null input) and returns ``{head: Tensor[N, T, outputs]}``. Every
    module runs once per step, so energy hooks count forward calls as timesteps. No batch norm:
    its statistics would mix the image steps with the null ones. Keywords: `RecurrentCNNParams`.
    """

    Params = RecurrentCNNParams

    def __init__(self, **params: Any) -> None:
        super().__init__()
        p = self.Params(**params)
        in_channels, height, width = p.input_shape
        c1, c2 = p.channels
        hidden = p.hidden
        pooled = (min(_POOLED_SIZE, _after_two_pools(height)), min(_POOLED_SIZE, _after_two_pools(width)))
        # No in-place ReLU: energy hooks keep the Conv/Linear outputs in the graph.
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(pooled),
            nn.Flatten(),
            nn.Linear(c2 * pooled[0] * pooled[1], hidden),
        )
        self.cell = p.cell
        if p.cell == "leaky":
            self.recurrent: nn.Module = LeakyCell(hidden, leak=p.leak)
        else:
            self.recurrent = nn.GRUCell(hidden, hidden)
        self.dropout = nn.Dropout(p.dropout)
        self.heads_features = hidden
        self.heads = Heads(features=hidden, head_outputs=p.head_outputs)

    @property
    def last_shared(self) -> nn.Module:
        """The input projection f_t, for GradNorm: it reaches the heads at every step, while the
        recurrent weights U act on a state that starts at zero (no gradient with one step)."""
        return self.encoder[-1]

    def forward(self, x: Tensor, presented: Sequence[bool]) -> dict[str, Tensor]:
        if len(presented) == 0:
            raise ValueError(f"presented must have one bool per timestep, but got {list(presented)}")
        blank = torch.zeros_like(x)
        state = x.new_zeros(x.shape[0], self.heads_features)
        outputs: list[dict[str, Tensor]] = []
        for shown in presented:
            features = self.encoder(x if shown else blank)
            state = self._step(features, state)
            outputs.append(self.heads(self.dropout(state)))
        return {name: torch.stack([out[name] for out in outputs], dim=1) for name in outputs[0]}

    def _step(self, features: Tensor, state: Tensor) -> Tensor:
        if self.cell == "gru":
            return self.recurrent(torch.relu(features), state)
        return self.recurrent(features, state)


class LeakyCell(RecurrentState):
    """h_t = (1 - leak) * h_{t-1} + leak * ReLU(f_t + U h_{t-1}): its output is the state, which the
    energy counts (U was a Linear of its own, and the energy counted U h_{t-1}, zero at the first
    step, instead of the state). ``weight``: U, initialised as ``nn.Linear``'s, under the name it had
    in checkpoints (``recurrent.weight``)."""

    def __init__(self, hidden: int, *, leak: float) -> None:
        super().__init__()
        self.leak = leak
        self.weight = nn.Parameter(torch.empty(hidden, hidden))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's

    def forward(self, features: Tensor, state: Tensor) -> Tensor:
        return (1 - self.leak) * state + self.leak * torch.relu(features + F.linear(state, self.weight))
