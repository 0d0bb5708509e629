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


# `make postgres` and `make slurm` (prerequisites of `make test`): nothing when the programs are
# there; apt-get when missing and root; a message naming the packages otherwise. Run on a PATH of
# stubs, so nothing is installed and the machine's own programs do not count.
PROGRAMS = {
    "postgres": ("psql", "initdb"),
    "slurm": ("sbatch", "scontrol", "slurmctld", "slurmd", "munged", "mungekey"),
}
PACKAGES = {"postgres": "postgresql", "slurm": "slurmd slurmctld slurm-client munge"}


def _stub(path: Path, script: str) -> None:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def _make_with_stubs(checkout: Path, target: str, *, uid: int, present: bool) -> tuple[subprocess.CompletedProcess, str]:
    stubs = checkout / "stubs"
    stubs.mkdir(exist_ok=True)
    calls = checkout / "apt-get.calls"
    _stub(stubs / "apt-get", f'echo "$*" >> {calls}\n')
    _stub(stubs / "id", f"echo {uid}\n")
    for name in ("ls", "sh"):
        (stubs / name).unlink(missing_ok=True)
        (stubs / name).symlink_to(shutil.which(name))
    for name in PROGRAMS[target]:
        (stubs / name).unlink(missing_ok=True)
        if present:
            _stub(stubs / name, "exit 0\n")
    result = subprocess.run(
        [shutil.which("make"), "--no-print-directory", target, "PG_INITDB=/nonexistent/initdb", "SBIN=/nonexistent"],
        cwd=checkout, env={"PATH": str(stubs)}, capture_output=True, text=True, timeout=60,
    )
    return result, calls.read_text() if calls.exists() else ""


@pytest.mark.parametrize("target", ["postgres", "slurm"])
def test_install_targets_do_nothing_when_the_programs_are_there(checkout: Path, target: str):
    result, apt = _make_with_stubs(checkout, target, uid=0, present=True)
    assert result.returncode == 0 and not result.stdout and not result.stderr and not apt, result


@pytest.mark.parametrize("target", ["postgres", "slurm"])
def test_install_targets_install_the_packages_as_root(checkout: Path, target: str):
    result, apt = _make_with_stubs(checkout, target, uid=0, present=False)
    assert result.returncode == 0, result.stderr
    assert apt.splitlines() == ["update -q", f"install -y -q {PACKAGES[target]}"]


@pytest.mark.parametrize("target", ["postgres", "slurm"])
def test_install_targets_say_what_to_install_otherwise(checkout: Path, target: str):
    result, apt = _make_with_stubs(checkout, target, uid=1000, present=False)
    assert result.returncode == 0 and not apt
    assert f"apt-get install {PACKAGES[target]}" in result.stderr


def test_a_torch_spec_given_reinstalls_torch_and_later_targets_keep_it(checkout: Path):
    # the stamp did not depend on TORCH_SPEC, and an installed CPU build satisfied a CUDA spec; then
    # a later `make run` without the spec put the CPU build back
    calls = checkout / "python.calls"
    _stub(checkout / ".venv" / "bin" / "python", f'echo "$*" >> {calls}\n')
    (checkout / "pyproject.toml").write_text("")

    def pip_calls(*args: str) -> list[str]:
        calls.write_text("")
        result = _make(checkout, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return [line for line in calls.read_text().splitlines() if line.startswith("-m pip")]

    default = pip_calls("setup")  # a fresh venv: the default spec, recorded
    assert default[0] == "-m pip install -q --disable-pip-version-check torch==2.13.0"
    assert (checkout / ".venv" / ".torch-spec").read_text() == "torch==2.13.0\n"
    cuda = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
    # torch alone replaced (its dependencies as they are), then what the new build needs added
    assert pip_calls("setup", f"TORCH_SPEC={cuda}")[:2] == [
        f"-m pip install -q --disable-pip-version-check --force-reinstall --no-deps {cuda}",
        f"-m pip install -q --disable-pip-version-check {cuda}"]
    assert (checkout / ".venv" / ".torch-spec").read_text() == cuda + "\n"
    assert pip_calls("run") == [] and pip_calls("setup", f"TORCH_SPEC={cuda}") == []
    (checkout / "pyproject.toml").write_text("# changed\n")  # the stamp is rebuilt: the CUDA build stays
    assert pip_calls("setup")[0] == "-m pip install -q --disable-pip-version-check torch==2.13.0"
    assert (checkout / ".venv" / ".torch-spec").read_text() == cuda + "\n"
