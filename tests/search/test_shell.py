"""The commands losstune prints for a person to copy: they must run this environment's programs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from search._shell import mlflow_ui_command, program, search_command


def _bin(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.fixture
def venv(tmp_path: Path, monkeypatch) -> Path:
    """This interpreter as a virtual environment's (tmp/venv dir/bin/python, with mlflow beside it),
    and a system python elsewhere on PATH."""
    home = _bin(tmp_path / "my venv" / "bin", "python", "mlflow")
    system = _bin(tmp_path / "usr" / "bin", "python")
    monkeypatch.setattr(sys, "executable", str(home / "python"))
    monkeypatch.setenv("PATH", str(system))
    return home


def test_an_environment_used_without_activating_it_is_named_by_its_path(venv: Path):
    # Before: `python -m search run ... --resume`, which ran the system's Python (no Ray: a traceback)
    assert program("python") == str(venv / "python")
    assert search_command("run", "a b.yaml") == f"'{venv / 'python'}' -m search run 'a b.yaml'"
    assert mlflow_ui_command("sqlite:///m.db") == f"'{venv / 'mlflow'}' ui --backend-store-uri sqlite:///m.db"


def test_an_activated_environment_is_named_by_the_plain_words(venv: Path, monkeypatch):
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}{os.environ['PATH']}")
    assert search_command("report", "s-1") == "python -m search report s-1"
    assert mlflow_ui_command("sqlite:///m.db") == "mlflow ui --backend-store-uri sqlite:///m.db"


def test_a_command_for_another_machine_says_python(venv: Path):
    # a submitted search's commands are run where it was submitted from, the job's on the head
    assert search_command("submit", "x.yaml", here=False) == "python -m search submit x.yaml"


def test_a_program_the_environment_lacks_keeps_its_plain_name(venv: Path):
    assert program("ray") == "ray"
