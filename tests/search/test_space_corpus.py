"""The malformed-space corpus: every file fails validation with exit status 2 and names its YAML path.

Each tests/search/bad_spaces/*.yaml starts with `# expect: <yaml.path>`, the path of (one of) its
problems.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.__main__ import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted((Path(__file__).parent / "bad_spaces").glob("*.yaml"))


def expected_path(file: Path) -> str:
    first = file.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{file.name}: first line must be `# expect: <yaml.path>`"
    return first.removeprefix("# expect: ").strip()


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import search._ray

    def refuse(**kwargs):
        raise AssertionError("Ray must not be started for invalid input")

    monkeypatch.setattr(search._ray, "connect", refuse)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("file", CORPUS, ids=lambda p: p.stem)
def test_validate_and_run_reject_with_exit_2_and_name_the_yaml_path(file, command, no_ray, tmp_path, capsys):
    # `run` applies the same rules as `validate`, before it creates anything.
    extra = ["--storage", str(tmp_path / "runs")] if command == "run" else []
    assert main([command, str(file), *extra]) == 2
    out, err = capsys.readouterr()
    assert f"{file}:" in err and f": {expected_path(file)}: " in err
    assert ", but got " in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "runs").exists()


def test_validate_in_a_subprocess_exits_2_without_traceback():
    file = next(f for f in CORPUS if f.stem == "objective_is_a_loss")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "search", "validate", str(file)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert ": objective.metric: " in result.stderr and "not comparable" in result.stderr
    assert "Traceback" not in result.stderr
