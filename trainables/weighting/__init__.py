"""Multi-task weighting (seed 004): the ``weighting`` switch of a trial, its strategies, and the
published rules as pure functions (``dwa_weights``, ``pcgrad``, ``gradnorm_targets``)."""

from ._methods import dwa_weights, gradnorm_targets, pcgrad
from ._strategies import DWA, STRATEGIES, Fixed, GradNorm, PCGrad, Strategy, Uncertainty

__all__ = [
    "DWA",
    "STRATEGIES",
    "Fixed",
    "GradNorm",
    "PCGrad",
    "Strategy",
    "Uncertainty",
    "dwa_weights",
    "gradnorm_targets",
    "pcgrad",
]
