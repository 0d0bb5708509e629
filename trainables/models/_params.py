"""The model kinds' parameters, their defaults and their checks, without torch.

Each kind is declared here as a frozen keyword-only dataclass (see ``trainables.switches.
Declaration``): ``input_shape`` and ``head_outputs``, which the trainer sets, then the kind's own
parameters; ``temporal`` says whether the kind runs over timesteps. The torch module of a kind
builds its declaration from the same keywords, so a default or a bound lives here only. No
postponed annotations: a declaration subclassed in another module resolves these fields here.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from trainables.settings import Rule, check_fields
from trainables.switches import Declaration, implemented_by

# The width of a model's last shared layer and the dropout before the heads: searchable, bounded.
Hidden = Annotated[int, Rule(minimum=1, maximum=65_536, searchable=True)]
Dropout = Annotated[float, Rule(minimum=0.0, maximum=1.0, max_open=True, searchable=True)]
# The output channels of the two convolutions.
Channels = Annotated[tuple[int, int], Rule(minimum=1, maximum=65_536)]
# The recurrent update's share of the new input (leaky cell): 1 forgets the state at every step.
Leak = Annotated[float, Rule(minimum=0.0, maximum=1.0, min_open=True, searchable=True)]


@dataclass(frozen=True, kw_only=True)
class ModelParams(Declaration):
    """What every model kind takes: the input's (C, H, W) and the output units of each head."""

    input_shape: tuple[int, int, int]
    head_outputs: Mapping[str, int]
    # Whether the kind runs over timesteps: ``forward(x, presented)`` -> ``{head: [N, T, K]}``.
    temporal: ClassVar[bool] = False

    def __post_init__(self) -> None:
        shape = self.input_shape
        if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"input_shape must be three positive ints (C, H, W), but got {shape!r}")
        # The kind's own parameters against their rules, also for a model built without a trial
        # config (which checks them before, naming the key): MLP(hidden=0) built an empty layer.
        check_fields(self, "")
        object.__setattr__(self, "input_shape", tuple(shape))


@dataclass(frozen=True, kw_only=True)
class MLPParams(ModelParams):
    hidden: Hidden = 128
    dropout: Dropout = 0.25

    implementation = implemented_by("trainables.models", "MLP")


@dataclass(frozen=True, kw_only=True)
class SimpleCNNParams(ModelParams):
    hidden: Hidden = 128
    dropout: Dropout = 0.25
    channels: Channels = (32, 64)

    implementation = implemented_by("trainables.models", "SimpleCNN")


@dataclass(frozen=True, kw_only=True)
class RecurrentCNNParams(ModelParams):
    hidden: Hidden = 64
    dropout: Dropout = 0.1
    channels: Channels = (16, 32)
    cell: Literal["leaky", "gru"] = "leaky"
    leak: Leak = 0.5
    temporal: ClassVar[bool] = True  # the trainer presents a pattern of steps (trainables.temporal)

    implementation = implemented_by("trainables.models", "RecurrentCNN")
