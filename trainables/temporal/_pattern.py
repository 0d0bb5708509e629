"""Presentation patterns and reaction-time masking (seed 001).

A pattern has one character per timestep: ``1`` shows the image, ``0`` shows a null (zero) input.
A stimulus chunk is a maximal run of ``1``s. A step is supervised (its label kept) when it shows
the image and lies at least ``ceil(reaction_time / dt)`` steps after its chunk's onset: the model
is not asked to answer before it could have seen the stimulus.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence

__all__ = ["MaskedChunkWarning", "check_pattern", "chunks", "label_mask", "masked_chunks", "reaction_steps", "stretch"]

# ceil(6 / 2) must be 3 even where the division rounds up (0.9 / 0.3 = 3.0000000000000004).
_RATIO_DIGITS = 9
_LONGEST = 2**31  # steps: more than any pattern has


class MaskedChunkWarning(UserWarning):
    """A stimulus chunk shorter than the reaction window: none of its steps is supervised."""


def check_pattern(pattern: str) -> str:
    """``pattern`` if it is made of 0 and 1 with at least one 1, else ValueError."""
    if not isinstance(pattern, str) or not re.fullmatch(r"[01]+", pattern):
        raise ValueError(f"pattern must be a string of 0 and 1, but got {pattern!r}")
    if "1" not in pattern:
        raise ValueError(f"pattern must show the stimulus at least once (a 1), but got {pattern!r}")
    return pattern


def stretch(pattern: str, n_timesteps: int) -> str:
    """The pattern over ``n_timesteps`` steps: each character held ``n_timesteps / len(pattern)``
    steps ("10" over 4 steps is "1100"); the length must divide ``n_timesteps``."""
    check_pattern(pattern)
    if n_timesteps < 1 or n_timesteps % len(pattern):
        raise ValueError(f"n_timesteps must be a positive multiple of the pattern's length {len(pattern)}, "
                         f"but got {n_timesteps} for {pattern!r}")
    hold = n_timesteps // len(pattern)
    return "".join(c * hold for c in pattern)


def reaction_steps(*, dt: float, reaction_time: float) -> int:
    """``ceil(reaction_time / dt)``: the steps masked at the start of every chunk."""
    if not dt > 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a finite number > 0, but got {dt!r}")
    if not reaction_time >= 0 or not math.isfinite(reaction_time):
        raise ValueError(f"reaction_time must be a finite number >= 0, but got {reaction_time!r}")
    ratio = reaction_time / dt
    # a reaction window longer than any pattern (a tiny dt): every step of every chunk masked
    return math.ceil(round(ratio, _RATIO_DIGITS)) if ratio < _LONGEST else _LONGEST


def chunks(pattern: str) -> list[tuple[int, int]]:
    """(first step, length) of every stimulus chunk, in order."""
    return [(m.start(), m.end() - m.start()) for m in re.finditer("1+", check_pattern(pattern))]


def last_onset(presented: Sequence[bool]) -> int:
    """The step at which the last stimulus chunk of ``presented`` (one bool per step) starts."""
    return chunks("".join("1" if shown else "0" for shown in presented))[-1][0]


def label_mask(pattern: str, *, dt: float, reaction_time: float) -> list[bool]:
    """One bool per step of ``pattern``: True where the step's label is supervised.

    Null steps are False; the first ``ceil(reaction_time / dt)`` steps of every chunk are False.
    Warns (MaskedChunkWarning) once for every chunk left with no supervised step: the seed's
    example ``"1000111000"`` with dt 2 and reaction time 6 masks both chunks, so every step.
    """
    mask, masked = masked_chunks(pattern, dt=dt, reaction_time=reaction_time)
    for start, length in masked:
        warnings.warn(f"stimulus chunk at steps {start}-{start + length - 1} of {pattern!r} is shorter than the "
                      f"reaction window ({reaction_steps(dt=dt, reaction_time=reaction_time)} steps of dt={dt} for "
                      f"reaction_time={reaction_time}): none of its steps is supervised",
                      MaskedChunkWarning, stacklevel=2)
    return mask


def masked_chunks(pattern: str, *, dt: float, reaction_time: float) -> tuple[list[bool], list[tuple[int, int]]]:
    """(the label mask, the (start, length) of every chunk it masks wholly), without warnings."""
    delay = reaction_steps(dt=dt, reaction_time=reaction_time)
    mask = [False] * len(check_pattern(pattern))
    masked = []
    for start, length in chunks(pattern):
        for step in range(start + delay, start + length):
            mask[step] = True
        if delay >= length:
            masked.append((start, length))
    return mask, masked
