"""Head losses, the energy regulariser, uncertainty weighting and the multi-head combination.

Each head loss is a pure function (`*_loss`) plus a thin `nn.Module`; `LOSSES` maps the names used
in search spaces to the modules, `build_loss` instantiates them, and `loss_parameters` exposes the
tunable parameters read from the constructor signatures (the single source of truth for spaces).
"""

from ._base import HeadLoss
from ._checks import IGNORE_INDEX
from ._classification import (
    CrossEntropyLoss,
    FocalLoss,
    WeightedCrossEntropyLoss,
    cross_entropy_loss,
    focal_loss,
    weighted_ce_loss,
)
from ._energy import EnergyLoss
from ._multihead import MultiHeadLoss
from ._ordinal import (
    OrdinalLoss,
    QuantizedLoss,
    SoftOrdinalLoss,
    ordinal_loss,
    quantized_loss,
    soft_ordinal_loss,
)
from ._registry import LOSS, LOSSES, build_loss, loss_parameters
from ._robust import SymmetricCrossEntropyLoss, supcon_loss, symmetric_ce_loss
from ._uncertainty import UncertaintyWeighting

__all__ = [
    "IGNORE_INDEX",
    "LOSS",
    "LOSSES",
    "CrossEntropyLoss",
    "EnergyLoss",
    "FocalLoss",
    "HeadLoss",
    "MultiHeadLoss",
    "OrdinalLoss",
    "QuantizedLoss",
    "SoftOrdinalLoss",
    "SymmetricCrossEntropyLoss",
    "UncertaintyWeighting",
    "WeightedCrossEntropyLoss",
    "build_loss",
    "cross_entropy_loss",
    "focal_loss",
    "loss_parameters",
    "ordinal_loss",
    "quantized_loss",
    "soft_ordinal_loss",
    "supcon_loss",
    "symmetric_ce_loss",
    "weighted_ce_loss",
]
