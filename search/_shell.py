"""Commands printed for a person to copy into a shell.

Each runs this environment's Python by its path: relative where it lies under the current
directory (``.venv/bin/python``), else absolute. A bare ``python`` ran whatever the person's shell
finds first: without an activated virtual environment (``.venv/bin/python -m search run ...``,
``uv run``, ``poetry run``, which put the environment on the process's PATH only), another
Python, one without losstune's dependencies.
"""

from __future__ import annotations

import os
import shlex
import sys

__all__ = ["mlflow_ui_command", "python_path", "search_command"]


def python_path() -> str:
    """This interpreter's path as a shell in the current directory runs it (``python`` for an
    embedded interpreter, which has none)."""
    if not sys.executable:
        return "python"
    # Not resolved: a virtual environment's bin/ holds links to the system's interpreter.
    path = os.path.abspath(sys.executable)
    here = os.getcwd()
    if os.path.commonpath([path, here]) == here:
        return os.path.relpath(path, here)
    return path


def search_command(*args: str, here: bool = True) -> str:
    """``python -m search ARGS``, every argument quoted. ``here``: for this shell (``python_path``);
    else for another machine's (a submitted search's commands are run where it was submitted
    from, its job's on the cluster's head), plain ``python``."""
    return shlex.join([python_path() if here else "python", "-m", "search", *args])


def mlflow_ui_command(store_uri: str, *, here: bool = True) -> str:
    """MLflow's UI on ``store_uri``: through this environment's Python (``here``, as
    ``search_command``), else ``mlflow ui``."""
    command = [python_path(), "-m", "mlflow", "ui"] if here else ["mlflow", "ui"]
    return shlex.join([*command, "--backend-store-uri", store_uri])
