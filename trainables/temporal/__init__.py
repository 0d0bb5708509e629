"""Temporal trials (seed 001): presentation patterns, reaction-time masking, and how a batch is
presented to a model over timesteps.

The pure pieces are public: ``label_mask(pattern, *, dt, reaction_time)`` (one bool per step,
True where the label is supervised), ``stretch`` (a short pattern held over more steps),
``chunks`` and ``reaction_steps``. The ``temporal`` section of a trial is
``trainables.config.TemporalConfig``; the recurrent model is ``model.kind: recurrent_cnn``.
"""

from ._pattern import (
    MaskedChunkWarning,
    check_pattern,
    chunks,
    label_mask,
    masked_chunks,
    reaction_steps,
    stretch,
)
from ._present import Presenter

__all__ = [
    "MaskedChunkWarning",
    "Presenter",
    "check_pattern",
    "chunks",
    "label_mask",
    "masked_chunks",
    "reaction_steps",
    "stretch",
]
