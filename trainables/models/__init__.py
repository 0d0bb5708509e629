"""Multihead models: a shared backbone and one linear head per task."""

from ._mlp import MLP
from ._recurrent_cnn import RecurrentCNN
from ._registry import MODEL, MODELS, build_model, is_temporal
from ._simple_cnn import SimpleCNN

__all__ = ["MLP", "MODEL", "MODELS", "RecurrentCNN", "SimpleCNN", "build_model", "is_temporal"]
