"""Auxiliary losses (seed 004): terms on the shared feature embedding or between heads, added to a
trial's total loss with their own weight; the ``auxiliary`` switch of a trial. The options are
declared without torch in ``_params``; the modules (``_losses``) are imported when first used.
"""

import importlib
from typing import Any

from ._params import AUXILIARIES, AUXILIARY, NoAuxiliaryParams, SupConParams, TaskCorrelationParams

_TORCH_EXPORTS = ("VARIANCE_FLOOR", "Auxiliary", "NoAuxiliary", "SupCon", "TaskCorrelation")

__all__ = ["AUXILIARIES", "AUXILIARY", "VARIANCE_FLOOR", "Auxiliary", "NoAuxiliary", "NoAuxiliaryParams", "SupCon", "SupConParams",
           "TaskCorrelation", "TaskCorrelationParams"]


def __getattr__(name: str) -> Any:
    if name not in _TORCH_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}._losses"), name)
