"""Multi-task weighting (seed 004): the ``weighting`` switch of a trial, its strategies, and the
published rules as pure functions (``dwa_weights``, ``pcgrad``, ``gradnorm_targets``). The
strategies are declared without torch in ``_params``; the modules are imported when first used."""

import importlib
from typing import Any

from ._params import (
    STRATEGIES,
    STRATEGY,
    DWAParams,
    FixedParams,
    GradNormParams,
    PCGradParams,
    StrategyParams,
    UncertaintyParams,
)

_TORCH_EXPORTS = {
    "DWA": "_strategies",
    "Fixed": "_strategies",
    "GradNorm": "_strategies",
    "PCGrad": "_strategies",
    "Strategy": "_strategies",
    "Uncertainty": "_strategies",
    "dwa_weights": "_methods",
    "gradnorm_targets": "_methods",
    "pcgrad": "_methods",
}

__all__ = [
    "DWA",
    "STRATEGIES",
    "STRATEGY",
    "DWAParams",
    "Fixed",
    "FixedParams",
    "GradNorm",
    "GradNormParams",
    "PCGrad",
    "PCGradParams",
    "Strategy",
    "StrategyParams",
    "Uncertainty",
    "UncertaintyParams",
    "dwa_weights",
    "gradnorm_targets",
    "pcgrad",
]


def __getattr__(name: str) -> Any:
    if name not in _TORCH_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_TORCH_EXPORTS[name]}"), name)
