"""``make clean`` never touches the MLflow store; ``make clean-mlflow`` removes it only when asked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory with the Makefile, a venv, search results and an MLflow store (all fake files)."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for path in (".venv/bin/python", "runs/s/summary.txt", "mlflow/mlflow.db", "mlflow/artifacts/1/a.txt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    return tmp_path


def _make(checkout: Path, *args: str, answer: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=checkout,
        input=answer or "",  # never the terminal: a prompt must not wait for the person running the tests
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_clean_says_what_it_removes_and_keeps_the_store(checkout: Path):
    result = _make(checkout, "clean")
    assert result.returncode == 0, result.stderr
    assert "removing .venv runs .pytest_cache" in result.stdout
    assert "keeping the MLflow store mlflow/mlflow.db mlflow/artifacts" in result.stdout
    assert not (checkout / ".venv").exists() and not (checkout / "runs").exists()
    assert (checkout / "mlflow" / "mlflow.db").is_file() and (checkout / "mlflow" / "artifacts" / "1" / "a.txt").is_file()


@pytest.mark.parametrize("answer", ["", "n\n", "no\n"])
def test_clean_mlflow_keeps_the_store_unless_confirmed(checkout: Path, answer: str | None):
    result = _make(checkout, "clean-mlflow", answer=answer)
    assert result.returncode != 0
    assert "delete the MLflow store" in result.stdout and "kept mlflow/mlflow.db" in result.stdout
    assert (checkout / "mlflow" / "mlflow.db").is_file()


@pytest.mark.parametrize(("args", "answer"), [(("FORCE=1",), None), ((), "y\n")])
def test_clean_mlflow_removes_the_store_when_forced_or_confirmed(checkout: Path, args: tuple, answer: str | None):
    result = _make(checkout, "clean-mlflow", *args, answer=answer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (checkout / "mlflow" / "mlflow.db").exists() and not (checkout / "mlflow" / "artifacts").exists()
    assert (checkout / "mlflow").is_dir() and (checkout / ".venv").is_dir()  # nothing else goes
