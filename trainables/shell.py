"""This environment's Python as a person's shell runs it, for the commands losstune prints to copy.

A bare ``python`` ran whatever the person's shell finds first: without an activated virtual
environment (``.venv/bin/python -m search run ...``, ``uv run``, ``poetry run``, which put the
environment on the process's PATH only), another Python, one without losstune's dependencies.
"""

from __future__ import annotations

import os
import shlex
import sys

__all__ = ["python_command", "python_path"]


def python_path() -> str:
    """This interpreter's path as a shell in the current directory runs it: relative where it
    lies under the current directory (``.venv/bin/python``), else absolute (``python`` for an
    embedded interpreter, which has none)."""
    if not sys.executable:
        return "python"
    # Not resolved: a virtual environment's bin/ holds links to the system's interpreter.
    path = os.path.abspath(sys.executable)
    here = os.getcwd()
    if os.path.commonpath([path, here]) == here:
        return os.path.relpath(path, here)
    return path


def python_command(*args: str) -> str:
    """``PYTHON ARGS`` for this shell, every argument quoted."""
    return shlex.join([python_path(), *args])
