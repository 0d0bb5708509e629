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
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from trainables.config import register_section
from trainables.data import DATASETS
from trainables.losses import LOSSES
from trainables.models import MODELS
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

    def _add(self, kind: str, registry: MutableMapping[str, Any], name: str, value: Any) -> None:
        # a loss's or model's name is a part of flat keys (model.<name>.<param>); a data set's a value
        if not isinstance(name, str) or not name or ("." in name and kind != "dataset"):
            raise ValueError(f"a {kind} name that is a non-empty string without '.', but got {name!r}")
        if kind in ("loss", "model") and not isinstance(value, type):
            raise ValueError(f"a class as {kind} {name!r}, but got {type(value).__name__} {value!r}")
        if name in registry and registry[name] is not value:
            raise ValueError(f"a new {kind} name, but got {name!r}, which is taken")
        registry[name] = value
        self.added.append(f"{kind} {name}")

    def add_loss(self, name: str, cls: type) -> None:
        self._add("loss", LOSSES, name, cls)

    def add_model(self, name: str, cls: type) -> None:
        self._add("model", MODELS, name, cls)

    def add_dataset(self, name: str, kind: Any) -> None:
        self._add("dataset", DATASETS, name, kind)

    def add_section(self, name: str, cls: type) -> None:
        register_section(name, cls)
        self.added.append(f"section {name}")


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
