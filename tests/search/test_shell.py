"""The commands losstune prints for a person to copy: they must run this environment's Python."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from search._shell import mlflow_ui_command, python_path, search_command


@pytest.fixture
def venv(tmp_path: Path, monkeypatch) -> Path:
    """This interpreter as a virtual environment's, in a folder whose name needs quoting, and a
    process PATH that finds it first (``uv run``, ``poetry run``: the person's shell does not)."""
    home = tmp_path / "my project" / ".venv" / "bin"
    home.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(home / "python"))
    monkeypatch.setenv("PATH", str(home))
    return home


def test_the_python_is_named_by_its_path_even_where_the_process_path_finds_it(venv: Path, monkeypatch):
    # Before: `python -m search run ... --resume`, which ran the shell's Python: without the
    # environment activated, the system's (no Ray: a traceback)
    monkeypatch.chdir(venv.parent.parent)
    assert python_path() == ".venv/bin/python"  # relative under the current directory
    assert search_command("run", "a b.yaml") == ".venv/bin/python -m search run 'a b.yaml'"
    assert mlflow_ui_command("sqlite:///m.db") == ".venv/bin/python -m mlflow ui --backend-store-uri sqlite:///m.db"
    elsewhere = venv.parent.parent.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert search_command("report", "s-1") == f"'{venv / 'python'}' -m search report s-1"  # absolute elsewhere


def test_a_command_for_another_machine_says_python(venv: Path):
    # a submitted search's commands are run where it was submitted from, the job's on the head
    assert search_command("submit", "x.yaml", here=False) == "python -m search submit x.yaml"
    assert mlflow_ui_command("sqlite:///m.db", here=False) == "mlflow ui --backend-store-uri sqlite:///m.db"
