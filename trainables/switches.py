"""Switches: a named choice whose options bring their own parameters (a head's loss, a model kind).

A section field annotated ``Annotated[str, Switch(REGISTRY, ...)]`` names one option of a registry
(name -> class, factory or ``Declaration``); the option's parameters are the keyword-only
parameters of its signature (a declaration's: its fields), minus those the trainer sets itself
(``fixed``), each with its default and its annotation (a ``trainables.settings.Rule`` in
``Annotated`` gives bounds and searchability). A registry is a plain dict: a plugin adds an
option by adding an entry, and the space validator, the trial config and the report know it from
then on. A built-in option whose code imports torch is entered as its ``Declaration``, so that
the search driver, which only validates and samples, never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainables.settings import SettingError, check_value, value_type

__all__ = ["Declaration", "Switch", "implemented_by", "switch_field"]


class Declaration:
    """An option declared apart from the code that runs it. A subclass is a frozen keyword-only
    dataclass whose fields are the option's keywords (defaults, and ``Rule`` s in ``Annotated``),
    whose ``__post_init__`` checks their values, and whose class attributes say what the space
    validator needs (a loss's output units, a model's ``temporal``, ...); ``implementation()``
    imports the class that runs the option, which takes the same keywords."""

    @classmethod
    def implementation(cls) -> Callable[..., Any]:
        raise NotImplementedError(f"{cls.__name__} must name the class that runs it")


def implemented_by(module: str, name: str) -> Any:
    """A declaration's ``implementation``: class ``name`` of ``module`` (one of ours, named in code),
    imported, with torch, only when a trial builds the option."""

    def implementation(cls: type) -> Callable[..., Any]:
        return getattr(importlib.import_module(module), name)

    return classmethod(implementation)


@dataclass(frozen=True)
class Switch:
    """Metadata of a section's switch field. ``complete``: the flat config lists every parameter
    of the chosen option, defaults included (a model's size belongs to a trial's record), not
    only those the space set (loss parameters)."""

    options: Mapping[str, Callable[..., Any]]
    fixed: tuple[str, ...] = ()
    complete: bool = False

    def declaration(self, option: str) -> Any:
        """What states ``option``'s parameters and facts (``outputs``, ``temporal``, ...): the
        entry itself, or, for a class entered whose constructor takes only ``**params`` (a
        plugin's subclass of a built-in class), the ``Declaration`` it names in ``Params``."""
        target = self.options[option]
        declared = getattr(target, "Params", None)
        if inspect.isclass(target) and isinstance(declared, type) and issubclass(declared, Declaration):
            kinds = {p.kind for p in inspect.signature(target.__init__).parameters.values()}
            if inspect.Parameter.KEYWORD_ONLY not in kinds and inspect.Parameter.VAR_KEYWORD in kinds:
                return declared
        return target

    def parameters(self, option: str) -> dict[str, inspect.Parameter]:
        """The option's parameters with their annotations resolved (``Annotated`` kept)."""
        target = self.declaration(option)
        function = target.__init__ if inspect.isclass(target) else target
        hints = typing.get_type_hints(function, include_extras=True)
        return {
            p.name: p.replace(annotation=hints.get(p.name, Any))
            for p in inspect.signature(function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in self.fixed
        }

    def build(self, option: str, **keywords: Any) -> Any:
        """The running object of ``option`` (a loss module, a model, ...): its class, imported
        where the option is a ``Declaration``, called with ``keywords``."""
        target = self.options[option]
        if isinstance(target, type) and issubclass(target, Declaration):
            target = target.implementation()
        return target(**keywords)

    def searchable(self, option: str, name: str) -> bool:
        """Whether a space may search parameter ``name``: every one with a scalar type (lists,
        such as focal's per-class alpha, are fixed: Optuna choices are scalars). Option
        parameters need no ``searchable=True``: an option's own checks, and the validator's
        probes of a searched range, keep a search within what the option accepts."""
        vtype = value_type(self.parameters(option)[name].annotation)
        return vtype is not None and not vtype.is_list

    def check_option(self, key: str, option: Any) -> str:
        """``option`` if it names an option, else a SettingError for ``key`` (``model.kind``)."""
        if not isinstance(option, str) or option not in self.options:
            raise SettingError(key, f"one of [{', '.join(self.options)}]", option)
        return option

    def check(self, option: str, params: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
        """``params`` of a known ``option`` checked against its signature and converted (lists
        become tuples, as constructors take them); with ``complete``, defaults filled in, in
        signature order. Errors name ``<prefix><option>.<param>`` (``heads.pitch.ordinal.alpha``),
        a parameter without a default that ``params`` lacks included."""
        allowed = self.parameters(option)
        unknown = [name for name in params if name not in allowed]
        if unknown:
            rule = f"among the parameters of `{option}` [{', '.join(allowed)}]"
            raise SettingError(f"{prefix}{option}.{unknown[0]}", rule, unknown[0])
        defaults = self.defaults(option) if self.complete else {}
        checked: dict[str, Any] = {}
        for name, parameter in allowed.items():
            if name in params:
                value = check_value(f"{prefix}{option}.{name}", parameter.annotation, params[name])
            elif parameter.default is inspect.Parameter.empty:
                raise SettingError(f"{prefix}{option}.{name}", f"given (`{option}` has no default)", None)
            elif name in defaults:
                value = defaults[name]
            else:
                continue
            checked[name] = tuple(value) if isinstance(value, list) else value
        return checked

    def defaults(self, option: str) -> dict[str, Any]:
        """The defaults of ``option``'s parameters that have one (and a value type), in signature
        order: what a ``complete`` option lists when a space does not say. An integer list's
        default (a CNN's ``channels``) is not listed: it became a checked setting after searches
        had logged trial configs without it, which would no longer fit a warm start."""
        return {
            name: tuple(p.default) if isinstance(p.default, list) else p.default
            for name, p in self.parameters(option).items()
            if p.default is not inspect.Parameter.empty and (vtype := value_type(p.annotation))
            and not (vtype.kind == "ints" and p.default is not None)
        }


def switch_field(cls: type) -> tuple[str, Switch] | None:
    """(name, Switch) of the dataclass field of ``cls`` that is a switch, if any (at most one)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        annotation = hints.get(field.name)
        if typing.get_origin(annotation) is typing.Annotated:
            for extra in typing.get_args(annotation)[1:]:
                if isinstance(extra, Switch):
                    return field.name, extra
    return None
