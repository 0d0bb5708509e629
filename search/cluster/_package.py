"""What a submitted search ships to the cluster as its Ray Job's working directory: losstune's
two packages, as imported here, and the space file, and nothing else (no virtual environment,
run directories, data sets, MLflow store or caches). The job runs ``python -m search`` from that
directory, and Ray puts it on every trial worker's import path, so the driver and the trials run
the very code the search was submitted with."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

__all__ = ["SHIPPED_PACKAGES", "stage"]

SHIPPED_PACKAGES = ("search", "trainables")
_LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def stage(space: Path, *, into: Path, cwd: Path | None = None) -> str:
    """Copy the packages and ``space`` into the empty directory ``into``; return the space's path
    there: the same relative path as from ``cwd`` when it lies below it, else ``spaces/<file>``."""
    for name in SHIPPED_PACKAGES:
        source = Path(importlib.import_module(name).__file__).parent
        shutil.copytree(source, into / name, ignore=_LEFT_OUT)
    space = space.resolve()
    try:
        relative = space.relative_to((cwd or Path.cwd()).resolve())
    except ValueError:
        relative = Path("spaces") / space.name
    if relative.parts[0] in SHIPPED_PACKAGES:  # never overwrite a shipped module with the space
        relative = Path("spaces") / space.name
    target = into / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(space, target)
    return relative.as_posix()
