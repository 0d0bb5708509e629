"""Multihead models: a shared backbone and one linear head per task."""

from ._mlp import MLP
from ._registry import MODELS, build_model
from ._simple_cnn import SimpleCNN

__all__ = ["MLP", "MODELS", "SimpleCNN", "build_model"]
