"""Multihead models: a shared backbone and one linear head per task. Each kind's keywords,
defaults and bounds are declared without torch in ``_params``; the modules are imported when
first used, so the search driver never imports torch."""

import importlib
from typing import Any

from ._params import MLPParams, ModelParams, RecurrentCNNParams, SimpleCNNParams
from ._registry import MODEL, MODELS, build_model, is_temporal

_TORCH_EXPORTS = {"MLP": "_mlp", "RecurrentCNN": "_recurrent_cnn", "SimpleCNN": "_simple_cnn"}

__all__ = ["MLP", "MODEL", "MODELS", "MLPParams", "ModelParams", "RecurrentCNN", "RecurrentCNNParams",
           "SimpleCNN", "SimpleCNNParams", "build_model", "is_temporal"]


def __getattr__(name: str) -> Any:
    if name not in _TORCH_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_TORCH_EXPORTS[name]}"), name)
