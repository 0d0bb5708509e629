"""Modules kept by head name, where a head's name is whatever its data set calls it."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["HeadModules"]


class HeadModules(nn.ModuleDict):
    """An ``nn.ModuleDict`` whose keys may be any head name, also one of its own attributes
    (``type``, ``train``, ``to``, ``keys``: a VIMH parameter named ``type`` is a head ``type``), which
    ``nn.ModuleDict`` refuses. Modules are reached by key (``[name]``, ``items()``), never as
    attributes: those stay the methods."""

    def add_module(self, name: str, module: nn.Module | None) -> None:
        if isinstance(name, str) and "." not in name and name not in self._modules and hasattr(self, name):
            if not isinstance(module, nn.Module):
                raise TypeError(f"a head's module must be an nn.Module, but got {type(module).__name__} for {name!r}")
            self._modules[name] = module  # what nn.Module.add_module does past its attribute check
            return
        super().add_module(name, module)

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module refuses a plain value under a child's name, and train() sets `training` on
        # every module: a head named `training` stays a key, the flag an attribute
        if name in self.__dict__.get("_modules", {}) and not isinstance(value, nn.Module):
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)
