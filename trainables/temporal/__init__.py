"""Temporal trials (seed 001): presentation patterns, reaction-time masking, and how a batch is
presented to a model over timesteps.

The pure pieces are public: ``label_mask(pattern, *, dt, reaction_time)`` (one bool per step,
True where the label is supervised), ``stretch`` (a short pattern held over more steps),
``chunks`` and ``reaction_steps``. The ``temporal`` section of a trial is
``trainables.config.TemporalConfig``; the recurrent model is ``model.kind: recurrent_cnn``.
``Presenter`` (torch) is imported when first used: the trial schema reads only the patterns.
"""

from typing import Any

from ._pattern import (
    MaskedChunkWarning,
    check_pattern,
    chunks,
    label_mask,
    last_onset,
    masked_chunks,
    reaction_steps,
    stretch,
)

__all__ = [
    "MaskedChunkWarning",
    "Presenter",
    "check_pattern",
    "chunks",
    "label_mask",
    "last_onset",
    "masked_chunks",
    "reaction_steps",
    "stretch",
]


def __getattr__(name: str) -> Any:
    if name != "Presenter":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._present import Presenter

    return Presenter
