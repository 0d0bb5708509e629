"""Multihead models: a shared backbone and one linear head per task."""

from ._mlp import MLP
from ._registry import MODEL, MODELS, build_model
from ._simple_cnn import SimpleCNN

__all__ = ["MLP", "MODEL", "MODELS", "SimpleCNN", "build_model"]
