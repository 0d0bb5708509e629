"""A plugin installed as a package (tests/plugin, entry point group ``losstune.plugins``) adds a
loss that `search validate` lists with where it came from, and that a search's trial workers
know too. pip installs it into a directory of this test's own (put on PYTHONPATH), so the rest
of the suite does not see it."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from torch import nn

from trainables.losses import HeadLoss
from trainables.plugins import GROUP, PluginError, Registry, load_plugins

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


class _NotHead(nn.Module):
    def __init__(self, *, num_classes: int, ignore_index: int = -1) -> None:
        super().__init__()


class _Positional(HeadLoss):
    def __init__(self, num_classes: int, ignore_index: int = -1, k: float = 1.0) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)


class _NoIgnoreIndex(HeadLoss):
    def __init__(self, *, num_classes: int, k: float = 1.0) -> None:
        super().__init__(num_classes=num_classes)


class _PlainModel:
    def __init__(self, *, input_shape: tuple[int, ...], head_outputs: dict[str, int]) -> None:
        pass


class _PlainSection:
    pass


@dataclass
class _MutableSection:
    kind: str = "a"


# Before, each was registered and then failed with a traceback in `search validate` (a class of
# another kind), or lost its positional parameters from the space without a word.
@pytest.mark.parametrize(
    ("add", "value", "message"),
    [
        ("add_loss", _NotHead, "a subclass of trainables.losses.HeadLoss as loss 'new', but got _NotHead"),
        ("add_loss", _Positional, "a loss class whose constructor parameters are keyword-only (`def __init__(self, *, "
                                  "num_classes, ignore_index, ...)`), but got _Positional with positional "
                                  "num_classes, ignore_index, k"),
        ("add_loss", _NoIgnoreIndex, "a loss class whose constructor takes the keywords the trainer passes "
                                     "(num_classes, ignore_index), but got _NoIgnoreIndex without ignore_index"),
        ("add_model", _PlainModel, "a subclass of torch.nn.Module as model 'new', but got _PlainModel"),
        ("add_section", _PlainSection, "a frozen dataclass as section 'new' (`@dataclass(frozen=True)`), but got "
                                       "_PlainSection"),
        ("add_section", _MutableSection, "a frozen dataclass as section 'new' (`@dataclass(frozen=True)`), but got "
                                         "_MutableSection"),
    ],
)
def test_a_plugin_may_add_only_classes_of_the_kind_it_adds(add, value, message):
    from trainables.config import SECTIONS
    from trainables.losses import LOSSES
    from trainables.models import MODELS

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        getattr(Registry(), add)("new", value)
    assert "new" not in MODELS and "new" not in LOSSES and "new" not in SECTIONS


def test_a_plugin_with_a_syntax_error_is_named_by_its_whole_path(tmp_path, monkeypatch):
    # before: "(__init__.py, line 1)", the file's name without its folder
    package = tmp_path / "broken_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("def register(registry)\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(name="broken", value="broken_plugin:register", group=GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [entry] if group == GROUP else [])
    with pytest.raises(PluginError) as caught:
        load_plugins()
    assert caught.value.plugin == "broken"
    assert caught.value.reason == f"SyntaxError: expected ':' ({package / '__init__.py'}, line 1)"
