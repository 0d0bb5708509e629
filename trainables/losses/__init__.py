"""Head losses, the energy regulariser, uncertainty weighting and the multi-head combination.

Each head loss is a pure function (`*_loss`) plus a thin `nn.Module`; its keywords, defaults and
checks are declared without torch in `_params` (`OrdinalParams`, ...). `LOSSES` maps the names
used in search spaces to those declarations, `build_loss` instantiates the modules, `check_loss`
checks parameters without building, and `loss_parameters` exposes the tunable parameters (the
single source of truth for spaces).
"""

import importlib
from typing import Any

from ._params import (
    IGNORE_INDEX,
    CrossEntropyParams,
    FocalParams,
    HeadLossParams,
    OrdinalParams,
    QuantizedParams,
    SoftOrdinalParams,
    SymmetricCrossEntropyParams,
    WeightedCrossEntropyParams,
)
from ._registry import LOSS, LOSSES, build_loss, check_fits_head, check_loss, loss_parameters

# The torch modules and functions, imported when first used: the search driver reads the
# declarations above and never imports torch.
_TORCH_EXPORTS = {
    "HeadLoss": "_base",
    "CrossEntropyLoss": "_classification",
    "FocalLoss": "_classification",
    "WeightedCrossEntropyLoss": "_classification",
    "cross_entropy_loss": "_classification",
    "focal_loss": "_classification",
    "weighted_ce_loss": "_classification",
    "EnergyLoss": "_energy",
    "RecurrentState": "_energy",
    "MultiHeadLoss": "_multihead",
    "OrdinalLoss": "_ordinal",
    "QuantizedLoss": "_ordinal",
    "SoftOrdinalLoss": "_ordinal",
    "ordinal_loss": "_ordinal",
    "quantized_loss": "_ordinal",
    "soft_ordinal_loss": "_ordinal",
    "SymmetricCrossEntropyLoss": "_robust",
    "supcon_loss": "_robust",
    "symmetric_ce_loss": "_robust",
    "UncertaintyWeighting": "_uncertainty",
}

__all__ = [
    "CrossEntropyLoss",
    "CrossEntropyParams",
    "EnergyLoss",
    "FocalLoss",
    "FocalParams",
    "HeadLoss",
    "HeadLossParams",
    "IGNORE_INDEX",
    "LOSS",
    "LOSSES",
    "MultiHeadLoss",
    "OrdinalLoss",
    "OrdinalParams",
    "QuantizedLoss",
    "QuantizedParams",
    "RecurrentState",
    "SoftOrdinalLoss",
    "SoftOrdinalParams",
    "SymmetricCrossEntropyLoss",
    "SymmetricCrossEntropyParams",
    "UncertaintyWeighting",
    "WeightedCrossEntropyLoss",
    "WeightedCrossEntropyParams",
    "build_loss",
    "check_fits_head",
    "check_loss",
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


def __getattr__(name: str) -> Any:
    if name not in _TORCH_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_TORCH_EXPORTS[name]}"), name)
