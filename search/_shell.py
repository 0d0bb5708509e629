"""Commands printed for a person to copy into a shell.

Each names its program by the word that runs this environment's copy in the shell it was started
from: ``python`` (or ``mlflow``) where the shell's PATH finds this environment's, else the program's
path. A virtual environment used without activating it (``.venv/bin/python -m search run ...``)
otherwise printed ``python -m search ...``, which ran another Python, one without losstune's
dependencies.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["mlflow_ui_command", "program", "search_command"]


def program(name: str) -> str:
    """``name`` when the shell's PATH finds it in this interpreter's own directory, else its path
    there (``name`` when it has none: nothing better to say)."""
    if not sys.executable:  # an embedded interpreter: no directory to speak of
        return name
    # Not resolved: a virtual environment's bin/ holds links to the system's interpreter.
    home = Path(os.path.abspath(sys.executable)).parent
    found = shutil.which(name)
    if found is not None and Path(os.path.abspath(found)).parent == home:
        return name
    if name == "python":
        return sys.executable
    own = home / name
    return str(own) if own.is_file() and os.access(own, os.X_OK) else name


def search_command(*args: str, here: bool = True) -> str:
    """``python -m search ARGS``, every argument quoted. ``here``: for this shell (``program``);
    else for another machine's (a submitted search's commands are run where it was submitted
    from), plain ``python``."""
    return shlex.join([program("python") if here else "python", "-m", "search", *args])


def mlflow_ui_command(store_uri: str) -> str:
    return shlex.join([program("mlflow"), "ui", "--backend-store-uri", store_uri])
