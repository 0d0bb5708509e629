"""Plugins: packages that add losses, model kinds, data sets or trial sections, without a fork.

A plugin declares an entry point in the ``losstune.plugins`` group naming a function that takes
a ``Registry``::

    [project.entry-points."losstune.plugins"]
    my_losses = "my_package.losstune_plugin:register"

    def register(registry):
        registry.add_loss("hinge", HingeLoss)              # a HeadLoss, parameters from its signature
        registry.add_model("deep_mlp", DeepMLP)            # keyword-only input_shape, head_outputs, ...
        registry.add_dataset("svhn", DatasetKind(...))     # trainables.data.DatasetKind
        registry.add_section("lr_decay", LrDecayConfig)    # a section with a switch over hook classes

``load_plugins`` runs every installed plugin; the search driver calls it before it reads a space,
and every trial worker before it trains, so both know the same options.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from trainables.config import register_section
from trainables.data import DATASETS
from trainables.losses import LOSS, LOSSES
from trainables.models import MODEL, MODELS
from trainables.settings import RebuiltFromFields

__all__ = ["GROUP", "LoadedPlugin", "PluginError", "Registry", "load_plugins"]

GROUP = "losstune.plugins"


class PluginError(RebuiltFromFields, RuntimeError):
    """A plugin that could not be loaded or registered (``plugin``: its entry point name)."""

    _fields = ("plugin", "reason")

    def __init__(self, plugin: str, reason: str) -> None:
        self.plugin, self.reason = plugin, reason
        super().__init__(f"plugin {plugin!r}: {reason}")


@dataclass
class Registry:
    """What a plugin may add to; records what it added (``added``: "loss hinge", ...). A name
    already taken by something else is refused: a plugin extends, it does not replace."""

    added: list[str] = field(default_factory=list)

    def _add(self, kind: str, registry: MutableMapping[str, Any], name: str, value: Any,
             check: Callable[[], None] | None = None) -> None:
        # a loss's or model's name is a part of flat keys (model.<name>.<param>); a data set's a value
        if not isinstance(name, str) or not name or ("." in name and kind != "dataset"):
            raise ValueError(f"a {kind} name that is a non-empty string without '.', but got {name!r}")
        if kind in ("loss", "model") and not isinstance(value, type):
            raise ValueError(f"a class as {kind} {name!r}, but got {type(value).__name__} {value!r}")
        if check is not None:
            check()
        if name in registry and registry[name] is not value:
            raise ValueError(f"a new {kind} name, but got {name!r}, which is taken")
        registry[name] = value
        self.added.append(f"{kind} {name}")

    def add_loss(self, name: str, cls: type) -> None:
        from trainables.losses import HeadLoss  # torch: the plugin's loss module has imported it

        self._add("loss", LOSSES, name, cls, lambda: _check_class(
            "loss", name, cls, base=HeadLoss, base_name="trainables.losses.HeadLoss", fixed=LOSS.fixed))

    def add_model(self, name: str, cls: type) -> None:
        from torch import nn

        self._add("model", MODELS, name, cls, lambda: _check_class(
            "model", name, cls, base=nn.Module, base_name="torch.nn.Module", fixed=MODEL.fixed))

    def add_dataset(self, name: str, kind: Any) -> None:
        self._add("dataset", DATASETS, name, kind)

    def add_section(self, name: str, cls: type) -> None:
        register_section(name, cls)
        self.added.append(f"section {name}")


def _check_class(kind: str, name: Any, cls: Any, *, base: type, base_name: str, fixed: tuple[str, ...]) -> None:
    """``cls`` is a subclass of ``base`` whose constructor takes the ``fixed`` keywords the trainer
    passes and only keyword arguments: a space sets a parameter by name, so a positional one was
    left out of the space's parameters without a word, and a class of another kind failed in
    ``validate`` with a traceback."""
    if not issubclass(cls, base):
        raise ValueError(f"a subclass of {base_name} as {kind} {name!r}, but got {cls.__qualname__}")
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional:
        raise ValueError(f"a {kind} class whose constructor parameters are keyword-only (`def __init__(self, *, "
                         f"{', '.join(fixed)}, ...)`), but got {cls.__qualname__} with positional "
                         f"{', '.join(positional)}")
    names = {p.name for p in parameters}
    missing = [f for f in fixed if f not in names]
    if missing and not any(p.kind is p.VAR_KEYWORD for p in parameters):
        raise ValueError(f"a {kind} class whose constructor takes the keywords the trainer passes "
                         f"({', '.join(fixed)}), but got {cls.__qualname__} without {', '.join(missing)}")


@dataclass(frozen=True)
class LoadedPlugin:
    name: str  # the entry point's name
    target: str  # module:function
    distribution: str  # "name version" of the installed package
    location: str  # the file the function comes from
    added: tuple[str, ...]


def load_plugins() -> list[LoadedPlugin]:
    """Run every plugin of the ``losstune.plugins`` entry point group (in name order); running
    one again adds nothing new. Raises PluginError for one that fails."""
    loaded = []
    for entry in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
        registry = Registry()
        try:
            register = entry.load()
            register(registry)
        except SyntaxError as error:  # its text names the file without its folder
            where = f"{error.filename}, line {error.lineno}" if error.filename else f"line {error.lineno}"
            raise PluginError(entry.name, f"{type(error).__name__}: {error.msg} ({where})") from error
        except Exception as error:  # noqa: BLE001 - whatever a third-party package raises
            raise PluginError(entry.name, f"{type(error).__name__}: {error}") from error
        dist = entry.dist
        loaded.append(
            LoadedPlugin(
                name=entry.name,
                target=entry.value,
                distribution=f"{dist.name} {dist.version}" if dist is not None else "(no distribution)",
                location=inspect.getsourcefile(register) or "?",
                added=tuple(registry.added),
            )
        )
    return loaded
