"""The trial schema: every section of a trial and its fields, stated once, and the flat form of it.

A section is a frozen dataclass; each field's annotation gives its type and, in ``Annotated``, a
``trainables.settings.Rule`` (bounds, members, searchable) or a ``trainables.switches.Switch``
(a named choice whose options bring their own parameters, kept in the section's ``params``).
``SECTIONS`` lists the sections by name and ``LAYOUT`` the order a trial's settings come in;
a plugin adds a section with ``register_section``. The search-space validator walks the same
classes, so a new setting, section or switch option needs no change there.

``TrialConfig.from_flat`` / ``to_flat`` convert between the typed config and the flat, JSON-safe
mapping of ``trainables.flat_keys``, generically over the sections.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from trainables.data import DataSpec
from trainables.flat_keys import HEADS, FlatKey, FlatKeyError
from trainables.losses import LOSS
from trainables.metric_names import BREAKDOWN_TERMS, HEAD_NAMES_RULE
from trainables.models import MODEL
from trainables.settings import SEED_RULE, Rule, SettingError, check_fields
from trainables.switches import Switch, switch_field
from trainables.temporal import check_pattern, label_mask, masked_chunks, stretch
from trainables.auxiliary import AUXILIARY
from trainables.weighting import STRATEGY

__all__ = [
    "DRIVER_SECTIONS",
    "HOOK_SECTIONS",
    "LAYOUT",
    "SECTIONS",
    "EnergyConfig",
    "HeadConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "TemporalConfig",
    "WeightingConfig",
    "AuxiliaryConfig",
    "TrainConfig",
    "TrialConfig",
    "check_section",
    "is_switch_key",
    "register_section",
    "section_fields",
    "switch_of",
]


def check_section(instance: Any, section: str) -> None:
    """Check (and convert) a section's fields and its switch's option and parameters; a section
    class calls it from ``__post_init__``. Errors name ``<section>.<field>``."""
    check_fields(instance, section)
    found = switch_field(type(instance))
    if found is not None:
        name, switch = found
        prefix = f"{section}." if section else ""
        option = switch.check_option(f"{prefix}{name}", getattr(instance, name))
        object.__setattr__(instance, "params", switch.check(option, instance.params, prefix=prefix))


@dataclass(frozen=True)
class ModelConfig:
    """The model: a kind (``simple_cnn``, ``mlp``, ...) and that kind's own parameters, read from
    its declaration (``trainables.models.MLPParams``, ...: ``hidden``, ``dropout``, ...)."""

    # A switch: a space may fix one kind (usual: it defines the problem being compared) or
    # choose between kinds, each with its own parameters.
    kind: Annotated[str, MODEL] = "simple_cnn"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_section(self, "model")


@dataclass(frozen=True)
class TrainConfig:
    # epochs and patience are the budget a scheduler divides; seed, threads, amp and device make a
    # trial reproducible on given hardware: none of them is searched.
    epochs: Annotated[int, Rule(minimum=1, maximum=100_000)] = 20
    batch_size: Annotated[int, Rule(minimum=1, maximum=1 << 20, searchable=True)] = 128
    lr: Annotated[float, Rule(minimum=0.0, min_open=True, searchable=True)] = 2e-3
    weight_decay: Annotated[float, Rule(minimum=0.0, searchable=True)] = 0.0
    grad_clip: Annotated[float, Rule(minimum=0.0, searchable=True)] = 0.0  # max gradient norm; 0: off
    patience: Annotated[int, Rule(minimum=1, maximum=100_000)] = 5  # epochs without improvement
    seed: Annotated[int, SEED_RULE] = 0
    threads: Annotated[int | None, Rule(minimum=1, maximum=1024)] = None  # None: torch's default
    # Mixed precision on CUDA (trainables.device.amp_dtype): auto is bf16 where the GPU has it
    # natively, else fp16 with a gradient scaler, and float32 on the CPU. Earlier versions had a
    # bool; their files still load (true: auto, false: off).
    amp: Annotated[Literal["off", "fp16", "bf16", "auto"], Rule(aliases=((True, "auto"), (False, "off")))] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        check_section(self, "train")


@dataclass(frozen=True)
class HeadConfig:
    """One head: its weight in the total loss and its loss (a switch) with that loss's parameters."""

    weight: Annotated[float, Rule(minimum=0.0, searchable=True)] = 1.0
    loss: Annotated[str, LOSS] = "ce"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_section(self, "")  # keys relative to the head: weight, ordinal.alpha


@dataclass(frozen=True)
class EnergyConfig:
    # The activation norm; 64 is already close to the largest activation (the max norm).
    p: Annotated[int, Rule(minimum=1, maximum=64, searchable=True)] = 1

    def __post_init__(self) -> None:
        check_section(self, "energy")


@dataclass(frozen=True)
class TemporalConfig:
    """How each image is presented over ``n_timesteps`` steps (a recurrent model kind only): the
    pattern (``1``: the image, ``0``: a null input), stretched to ``n_timesteps`` when shorter, and
    which steps are supervised (``trainables.temporal.label_mask`` with ``dt`` and
    ``reaction_time``, in the same time unit). The default, one step showing the image, is the
    static presentation every model can take."""

    n_timesteps: Annotated[int, Rule(minimum=1, maximum=1024, searchable=True)] = 1
    pattern: Annotated[str, Rule(searchable=True)] = "1"
    dt: Annotated[float, Rule(minimum=0.0, min_open=True, searchable=True)] = 1.0
    reaction_time: Annotated[float, Rule(minimum=0.0, searchable=True)] = 0.0

    def __post_init__(self) -> None:
        check_section(self, "temporal")
        try:
            check_pattern(self.pattern)
        except ValueError:
            raise SettingError("temporal.pattern", "a string of 0 and 1 with at least one 1", self.pattern) from None
        if self.n_timesteps % len(self.pattern):
            raise SettingError("temporal.pattern", f"a pattern whose length divides temporal.n_timesteps "
                               f"({self.n_timesteps}), so each character is held equally long", self.pattern)
        if not any(masked_chunks(self.steps, dt=self.dt, reaction_time=self.reaction_time)[0]):
            raise SettingError("temporal.reaction_time", f"a reaction time that leaves a step to learn from (with "
                               f"dt={self.dt} it masks every chunk of {self.steps!r})", self.reaction_time)

    @property
    def steps(self) -> str:
        """The pattern stretched to one character per step."""
        return stretch(self.pattern, self.n_timesteps)

    @property
    def is_static(self) -> bool:
        """One step showing the image: what a model without a time axis sees."""
        return self.n_timesteps == 1

    def supervised(self) -> list[bool]:
        """One bool per step, True where the label is kept; warns for every wholly masked chunk."""
        return label_mask(self.steps, dt=self.dt, reaction_time=self.reaction_time)


@dataclass(frozen=True)
class WeightingConfig:
    """How the heads' losses are balanced (``trainables.weighting``): a strategy and its own
    parameters; the heads' weights are its starting point or fixed factor."""

    strategy: Annotated[str, STRATEGY] = "fixed"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_section(self, "weighting")


@dataclass(frozen=True)
class AuxiliaryConfig:
    """An auxiliary loss (``trainables.auxiliary``) with its own weight, or none."""

    kind: Annotated[str, AUXILIARY] = "none"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_section(self, "auxiliary")


@dataclass(frozen=True)
class ObjectiveConfig:
    """The metric that picks a trial's best epoch and stops it early (the driver's first objective)."""

    metric: str = "val/acc_mean"
    mode: Literal["min", "max"] = "max"

    def __post_init__(self) -> None:
        check_section(self, "objective")


SECTIONS: dict[str, type] = {
    "data": DataSpec,
    "model": ModelConfig,
    "temporal": TemporalConfig,
    "train": TrainConfig,
    "energy": EnergyConfig,
    "weighting": WeightingConfig,
    "auxiliary": AuxiliaryConfig,
    "objective": ObjectiveConfig,
}
# Core sections whose switch chooses a hook of the train loop (trainables.hooks), as a plugin's does.
HOOK_SECTIONS = ("weighting", "auxiliary")
# Sections of a space file that are the search driver's, not a trial's.
DRIVER_SECTIONS = ("name", "objective", "search", "resources", "mlflow")
# The order of a trial's settings: sections, the heads and the top-level fields of TrialConfig.
# It is the order a search suggests them in, so it is part of what a seed reproduces.
LAYOUT: list[str] = ["data", "model", "temporal", "train", HEADS, "energy_weight", "energy", "weighting", "auxiliary",
                     "objective"]


def register_section(name: str, cls: type) -> None:
    """Add a section (a frozen dataclass, with at most one switch field) to every trial."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):
        raise ValueError(f"a frozen dataclass as section {name!r} (`@dataclass(frozen=True)`), but got "
                         f"{getattr(cls, '__qualname__', repr(cls))}")
    taken = name in SECTIONS and SECTIONS[name] is not cls
    reserved = name in (HEADS, "energy_weight", *DRIVER_SECTIONS) or not name.isidentifier()
    if taken or reserved:
        raise ValueError(f"a new section name (an identifier, not {HEADS} or one of the driver's), but got {name!r}")
    SECTIONS[name] = cls
    if name not in LAYOUT:
        LAYOUT.append(name)


def section_fields(cls: type) -> list[str]:
    """The settings of a section class (its switch's ``params`` excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.name != "params"]


def switch_of(key: str) -> Switch | None:
    """The switch whose choice flat key ``key`` is (``heads.<head>.loss``: the loss switch,
    ``model.kind``: the model switch); None for other keys and for strings that are not flat keys."""
    try:
        parsed = FlatKey.parse(key)
    except FlatKeyError:
        return None
    cls = HeadConfig if parsed.head is not None else SECTIONS.get(parsed.section[0]) if parsed.section else None
    found = switch_field(cls) if cls is not None else None
    return found[1] if found is not None and parsed.option is None and parsed.name == found[0] else None


def is_switch_key(key: str) -> bool:
    """Whether flat key ``key`` is a switch's choice (``switch_of``)."""
    return switch_of(key) is not None


def _section_property(name: str) -> property:
    return property(lambda self: self.sections[name], doc=f"The trial's `{name}` section.")


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    heads: Mapping[str, HeadConfig]
    sections: Mapping[str, Any] = field(default_factory=dict)  # name -> section; missing: defaults
    energy_weight: Annotated[float, Rule(minimum=0.0, searchable=True)] = 0.0  # 0 disables the energy term

    def __post_init__(self) -> None:
        if not self.heads:
            raise SettingError(HEADS, "at least one head", dict(self.heads))
        for name in self.heads:
            if not name or "." in name:
                raise SettingError(HEADS, "head names without '.'", name)
            if name in BREAKDOWN_TERMS:  # its loss would be reported under another term's name
                raise SettingError(HEADS, HEAD_NAMES_RULE, name)
        unknown = [name for name in self.sections if name not in SECTIONS]
        if unknown:
            raise SettingError(unknown[0], f"a section of a trial (one of: {', '.join(SECTIONS)})", unknown[0])
        object.__setattr__(self, "sections", {name: self.sections.get(name) or cls() for name, cls in SECTIONS.items()})
        check_fields(self, "")
        self._check_auxiliary_heads()

    def _check_auxiliary_heads(self) -> None:
        """The heads an auxiliary loss names are heads of this trial, and distinct (the space validator
        checks the same at every value a search may draw)."""
        kind, params = self.auxiliary.kind, self.auxiliary.params
        named = getattr(AUXILIARY.declaration(kind), "head_parameters", ())
        for name in named:
            if params[name] not in self.heads:
                raise SettingError(f"auxiliary.{kind}.{name}", f"a head of the trial (one of: {', '.join(self.heads)})",
                                   params[name])
        if len(named) == 2 and params[named[0]] == params[named[1]]:
            raise SettingError(f"auxiliary.{kind}.{named[0]}", f"another head than {named[1]}", params[named[0]])

    # The sections every trial has.
    data = _section_property("data")
    model = _section_property("model")
    temporal = _section_property("temporal")
    train = _section_property("train")
    energy = _section_property("energy")
    weighting = _section_property("weighting")
    auxiliary = _section_property("auxiliary")
    objective = _section_property("objective")

    def hook_sections(self) -> Iterator[tuple[str, Any]]:
        """(name, section) of the sections whose switch chooses a hook of the train loop: those
        plugins registered, then the HOOK_SECTIONS (after them, so the hook states of a checkpoint
        written before HOOK_SECTIONS had hooks still go to the hooks they came from)."""
        plugins = [name for name in SECTIONS if name not in _CORE]
        return ((name, self.sections[name]) for name in [*plugins, *HOOK_SECTIONS])

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> TrialConfig:
        """Parse a flat trial config; missing keys take their defaults, unknown keys raise
        SettingError (a key that is no flat key: FlatKeyError; both are ValueErrors).
        ``model.hidden`` and other parameters of a switch's chosen option given without the option
        (configs written before model kinds had their own parameters) are read as that option's;
        where both forms are given, the namespaced one wins."""
        grouped: dict[tuple[str, ...], dict[str, Any]] = {}
        by_option: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        first_key: dict[tuple[str, ...], str] = {}  # sections in the order the config names them
        for key, value in flat.items():
            parsed = FlatKey.parse(key)
            first_key.setdefault(parsed.section, key)
            if parsed.option is None:
                grouped.setdefault(parsed.section, {})[parsed.name] = value
            else:
                by_option.setdefault(parsed.section, {}).setdefault(parsed.option, {})[parsed.name] = value
        top = grouped.pop((), {})
        for name in top:
            if name not in section_fields(cls) or name in ("heads", "sections"):
                raise SettingError(name, "a known setting of a trial config", name)
        heads, sections = {}, {}
        for section, key in first_key.items():
            if not section:
                continue
            values, options = grouped.get(section, {}), by_option.get(section, {})
            if section[0] == HEADS and len(section) == 2:
                heads[section[1]] = _section(HeadConfig, ".".join(section), values, options)
            elif len(section) == 1 and section[0] in SECTIONS:
                sections[section[0]] = _section(SECTIONS[section[0]], section[0], values, options)
            else:
                raise SettingError(key, f"a key of a known section ({HEADS}, {', '.join(SECTIONS)})", key)
        return cls(heads=heads, sections=sections, **top)

    def to_flat(self, *, with_defaults: bool = False) -> dict[str, Any]:
        """The complete flat dict (every setting, defaults included), JSON-safe, in LAYOUT order.
        An option's parameters are those it was given (a loss's), or all of them for a switch
        that lists them (``Switch.complete``); ``with_defaults``: all of them for every switch,
        to compare what two configs train, not to record one."""
        flat: dict[str, Any] = {}
        for name in LAYOUT:
            if name == HEADS:
                for head, config in self.heads.items():
                    flat.update(_flat_section(config, f"{HEADS}.{head}", with_defaults=with_defaults))
            elif name in SECTIONS:
                flat.update(_flat_section(self.sections[name], name, with_defaults=with_defaults))
            else:
                flat[name] = getattr(self, name)
        return flat


_CORE = frozenset(SECTIONS)


def _section(cls: type, prefix: str, values: dict[str, Any], options: dict[str, dict[str, Any]]) -> Any:
    """A section from its flat values; a switch's parameters from ``options`` (option -> params)."""
    found = switch_field(cls)
    known = section_fields(cls)
    kwargs = {name: value for name, value in values.items() if name in known}
    extra = {name: value for name, value in values.items() if name not in known}
    if found is not None:
        switch_name, switch = found
        chosen = switch.check_option(f"{prefix}.{switch_name}", kwargs.get(switch_name, _default(cls, switch_name)))
        params = dict(options.pop(chosen, {}))
        for name in list(extra):
            if name in switch.parameters(chosen):  # written before the option namespaced it
                value = extra.pop(name)
                if name in params and params[name] != value:  # two values: neither is dropped unseen
                    raise SettingError(f"{prefix}.{name}", f"left out or equal to {prefix}.{chosen}.{name} "
                                       f"({params[name]!r}), which names the same setting", value)
                params[name] = value
        for option, stale in options.items():
            name, value = next(iter(stale.items()))
            raise SettingError(f"{prefix}.{option}.{name}", f"a parameter of the chosen {prefix}.{switch_name} "
                               f"({chosen}; it needs {prefix}.{switch_name}: {option})", value)
        kwargs["params"] = params
    elif options:
        option, stale = next(iter(options.items()))
        raise SettingError(f"{prefix}.{option}.{next(iter(stale))}", f"a setting of section {prefix}", option)
    if extra:
        name = next(iter(extra))
        raise SettingError(f"{prefix}.{name}", f"a setting of section {prefix} (one of: {', '.join(known)})", name)
    try:
        return cls(**kwargs)
    except SettingError as error:  # a head's keys are relative to it (it does not know its name)
        key = error.key if error.key.startswith(f"{prefix}.") else f"{prefix}.{error.key}"
        raise SettingError(key, error.rule, error.value) from None


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _flat_section(section: Any, prefix: str, *, with_defaults: bool = False) -> dict[str, Any]:
    flat = {f"{prefix}.{name}": _json(getattr(section, name)) for name in section_fields(type(section))}
    found = switch_field(type(section))
    if found is not None:
        switch_name, switch = found
        option = getattr(section, switch_name)
        params = {**switch.defaults(option), **section.params} if with_defaults else section.params
        flat.update({f"{prefix}.{option}.{name}": _json(value) for name, value in params.items()})
    return flat


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
