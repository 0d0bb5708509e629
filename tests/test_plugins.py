"""A plugin installed as a package (tests/plugin, entry point group ``losstune.plugins``) adds a
loss that `search validate` lists with where it came from, and that a search's trial workers
know too. pip installs it into a directory of this test's own (put on PYTHONPATH), so the rest
of the suite does not see it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.plugins import Registry

REPO = Path(__file__).resolve().parents[1]
SPACE = """\
name: plugged
data: {kind: digits, limit: 300, val_fraction: 0.2}
model: {kind: mlp, hidden: 16}
train: {epochs: 2, batch_size: 64, lr: 0.02}
heads:
  digit: {loss: {margin: {margin: {uniform: [0.5, 2.0]}}}}
  thickness: {loss: ce}
  smoothness: {loss: ce}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: 2, sampler: random, scheduler: none, max_concurrent: 2}
resources: {cpu: 1}
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    # Built from a copy: setuptools leaves build/ and *.egg-info next to the sources it builds.
    source = shutil.copytree(REPO / "tests" / "plugin", tmp_path_factory.mktemp("plugin-src") / "plugin")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return target


def _search(*args: str, path: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_validate_lists_the_plugin_and_where_it_came_from(plugin_path: Path, tmp_path: Path):
    space = tmp_path / "plugged.yaml"
    space.write_text(SPACE)
    result = _search("validate", str(space), path=plugin_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("plugin ")]
    assert line.startswith("plugin example: losstune-example-plugin 0.1.0 (losstune_example_plugin:register, ")
    assert str(plugin_path / "losstune_example_plugin" / "__init__.py") in line and line.endswith("adds loss margin")
    assert "heads.digit.margin.margin" in result.stdout
    # Without the plugin the same space names a loss that does not exist.
    without = _search("validate", str(space), path=None, cwd=tmp_path)
    assert without.returncode == 2 and "heads.digit.loss.margin: one of: ce, ordinal" in without.stderr


def test_a_search_with_the_plugins_loss_trains_in_its_trial_workers(plugin_path: Path, tmp_path: Path):
    space = tmp_path / "plugged.yaml"
    space.write_text(SPACE)
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    result = _search("run", str(space), "--storage", str(tmp_path / "runs"), "--tracking-uri", uri,
                     "--num-cpus", "2", path=plugin_path, cwd=tmp_path)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "trials: 2 finished" in output and "digit=margin" in output


@pytest.mark.parametrize(
    ("add", "name", "value", "message"),
    [
        # a name becomes a part of flat keys (model.<name>.<param>): validate accepted it, every trial failed
        ("add_model", "my.mlp", type("M", (), {}), "a model name that is a non-empty string without '.', but got 'my.mlp'"),
        ("add_loss", "", type("L", (), {}), "a loss name that is a non-empty string without '.', but got ''"),
        # not a class: validate failed later with a traceback
        ("add_model", "weird", 42, "a class as model 'weird', but got int 42"),
    ],
)
def test_a_plugin_may_add_only_classes_under_names_flat_keys_can_hold(add, name, value, message):
    from trainables.losses import LOSSES
    from trainables.models import MODELS

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        getattr(Registry(), add)(name, value)
    assert name not in MODELS and name not in LOSSES
