"""Commands printed for a person to copy into a shell: each runs this environment's Python by its
path (``trainables.shell``)."""

from __future__ import annotations

import shlex

from trainables.shell import python_command, python_path

__all__ = ["install_command", "mlflow_ui_command", "python_path", "report_command", "search_command"]


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


def install_command(extra: str) -> str:
    """Installs losstune with ``extra`` into this environment, run in its checkout (what
    ``make setup`` does with every extra)."""
    return python_command("-m", "pip", "install", "-e", f".[{extra}]")


def report_command(selector: str, *, tracking_uri: str, storage: str | None = None) -> str:
    """``search report SELECTOR`` on the store ``tracking_uri`` (its password left out) and the
    results directory ``storage``, each named only where it is not the command's default."""
    from search.tracking import default_tracking_uri, redact_uri, same_store

    words = ["report", selector]
    if not same_store(tracking_uri, default_tracking_uri()):
        words += ["--tracking-uri", redact_uri(tracking_uri)]
    if storage is not None:
        words += ["--storage", redact_uri(storage)]
    return search_command(*words)
