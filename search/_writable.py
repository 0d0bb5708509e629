"""Whether this user can write a path a command is about to use: checked before anything starts,
so that a bad path is invalid input (exit 2), not an error deep in MLflow or Ray Tune."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["why_unwritable"]


def why_unwritable(path: Path) -> str | None:
    """Why this user cannot write ``path``, a file or folder that is made (with its missing
    parents) if need be; None when it can, as far as the permissions tell."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        return f"the file {existing} is in the way of {path}"
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        return f"{existing} is not writable by this user"
    return None
