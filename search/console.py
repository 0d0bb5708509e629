"""The driver's lines for a person (progress, notes, the summary) go through the ``losstune``
logger at INFO; library code logs them, and the command line shows them with ``shown_on``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["LOGGER", "say", "shown_on", "warn"]

LOGGER = logging.getLogger("losstune")


def say(text: str) -> None:
    LOGGER.info(text)


def warn(text: str) -> None:
    """A line that must reach a person even where nobody set up ``shown_on`` (Python's last-resort
    handler shows warnings)."""
    LOGGER.warning(text)


class _CurrentStdout:
    """sys.stdout as it is at each write (a test's capture, a redirection made later)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@contextmanager
def shown_on(stream: TextIO | None = None) -> Iterator[None]:
    """Write the driver's lines to ``stream`` (default: the current sys.stdout), as they are (no
    level or time prefix), while the block runs; they do not also reach the root logger's handlers."""
    handler = logging.StreamHandler(stream or _CurrentStdout())
    handler.setFormatter(logging.Formatter("%(message)s"))
    previous = LOGGER.level, LOGGER.propagate
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(previous[0])
        LOGGER.propagate = previous[1]
