"""Trial configuration: typed dataclasses <-> the flat, JSON-safe dict that Ray, Optuna and MLflow see.

Flat keys are ``<section>.<field>`` (``train.lr``), ``heads.<head>.loss``, ``heads.<head>.weight``,
``heads.<head>.<loss>.<param>`` (loss parameters namespaced by the chosen loss, so one flat name never
carries two distributions), and the top-level ``energy_weight``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from trainables.data import DATASETS, DataSpec
from trainables.losses import LOSSES, loss_parameters
from trainables.models import MODELS

__all__ = [
    "DataConfig",
    "EnergyConfig",
    "HeadConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "TrainConfig",
    "TrialConfig",
]


def _require(ok: bool, rule: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{rule}, but got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    kind: str = "vimh"
    path: str | None = None
    val_fraction: float = 0.1
    limit: int | None = None
    labels: str = "measured"
    # Seeds the validation carve-out, the limit subset and the label cuts: apart from train.seed, so
    # trials with different training seeds are scored on the same validation samples.
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.kind in DATASETS, f"data.kind must be one of {sorted(DATASETS)}", self.kind)
        DataSpec(**dataclasses.asdict(self))  # the data package owns the rules (DataError is a ValueError)


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "simple_cnn"
    hidden: int = 128
    dropout: float = 0.25

    def __post_init__(self) -> None:
        _require(self.kind in MODELS, f"model.kind must be one of {sorted(MODELS)}", self.kind)
        _require(self.hidden >= 1, "model.hidden must be >= 1", self.hidden)
        _require(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)", self.dropout)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    patience: int = 5  # epochs without improvement of the objective before stopping
    seed: int = 0
    threads: int | None = None  # None leaves torch's default
    amp: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "train.epochs must be >= 1", self.epochs)
        _require(self.batch_size >= 1, "train.batch_size must be >= 1", self.batch_size)
        _require(math.isfinite(self.lr) and self.lr > 0, "train.lr must be finite and > 0", self.lr)
        _require(self.weight_decay >= 0, "train.weight_decay must be >= 0", self.weight_decay)
        _require(self.grad_clip >= 0, "train.grad_clip must be >= 0", self.grad_clip)
        _require(self.patience >= 1, "train.patience must be >= 1", self.patience)
        _require(self.threads is None or self.threads >= 1, "train.threads must be None or >= 1", self.threads)
        _require(self.device in ("auto", "cpu", "cuda"), "train.device must be one of ['auto', 'cpu', 'cuda']", self.device)


@dataclass(frozen=True)
class HeadConfig:
    loss: str = "ce"
    weight: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)  # the chosen loss's tunable parameters

    def __post_init__(self) -> None:
        _require(self.loss in LOSSES, f"loss must be one of {sorted(LOSSES)}", self.loss)
        _require(self.weight >= 0, "head weight must be >= 0", self.weight)
        allowed = loss_parameters(self.loss)
        for name in self.params:
            _require(name in allowed, f"parameters of loss {self.loss!r} are {sorted(allowed)}", name)
        # build_loss wants tuples where JSON gives lists (focal alpha).
        object.__setattr__(
            self, "params", {k: tuple(v) if isinstance(v, list) else v for k, v in self.params.items()}
        )


@dataclass(frozen=True)
class EnergyConfig:
    p: int = 1

    def __post_init__(self) -> None:
        _require(self.p >= 1, "energy.p must be >= 1", self.p)


@dataclass(frozen=True)
class ObjectiveConfig:
    metric: str = "val/acc_mean"
    mode: Literal["min", "max"] = "max"

    def __post_init__(self) -> None:
        _require(self.mode in ("min", "max"), "objective.mode must be one of ['min', 'max']", self.mode)


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    heads: Mapping[str, HeadConfig]
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    energy_weight: float = 0.0  # 0 disables the energy term
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def __post_init__(self) -> None:
        _require(bool(self.heads), "heads must name at least one head", dict(self.heads))
        for name in self.heads:
            _require(bool(name) and "." not in name, "head names must be non-empty and contain no '.'", name)
        _require(self.energy_weight >= 0, "energy_weight must be >= 0", self.energy_weight)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> TrialConfig:
        """Parse a flat trial config; missing keys take their defaults, unknown keys raise ValueError."""
        sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        heads: dict[str, dict[str, Any]] = {}
        head_params: dict[str, dict[str, tuple[str, Any]]] = {}
        top: dict[str, Any] = {}
        for key, value in flat.items():
            parts = key.split(".")
            if parts[0] == "heads" and len(parts) == 3 and parts[2] in ("loss", "weight"):
                heads.setdefault(parts[1], {})[parts[2]] = _coerce(key, value, _HEAD_TYPES[parts[2]])
            elif parts[0] == "heads" and len(parts) == 4:
                head_params.setdefault(parts[1], {})[parts[3]] = (parts[2], value)
            elif len(parts) == 2 and parts[1] in _FIELD_TYPES.get(parts[0], {}):
                sections[parts[0]][parts[1]] = _coerce(key, value, _FIELD_TYPES[parts[0]][parts[1]])
            elif key == "energy_weight":
                top[key] = _coerce(key, value, float)
            else:
                raise ValueError(f"trial config keys must be known settings, but got unknown key {key!r}")
        for head in [*heads, *(h for h in head_params if h not in heads)]:
            chosen = heads.setdefault(head, {}).get("loss", HeadConfig.loss)
            _require(chosen in LOSSES, f"heads.{head}.loss must be one of {sorted(LOSSES)}", chosen)
            params = head_params.get(head, {})
            for param, (loss, _) in params.items():
                key = f"heads.{head}.{loss}.{param}"
                _require(loss == chosen, f"{key} must name the chosen loss heads.{head}.loss={chosen!r}", loss)
                allowed = sorted(loss_parameters(chosen))
                _require(param in allowed, f"loss parameter keys must be heads.{head}.{chosen}.<one of {allowed}>", key)
            heads[head]["params"] = {param: value for param, (_, value) in params.items()}
        return cls(
            heads={name: HeadConfig(**head) for name, head in heads.items()},
            **{name: kind(**sections[name]) for name, kind in _SECTIONS.items()},
            **top,
        )

    def to_flat(self) -> dict[str, Any]:
        """The complete flat dict (every setting, defaults included), JSON-safe."""
        flat: dict[str, Any] = {}
        for name in _SECTIONS:
            for key, value in dataclasses.asdict(getattr(self, name)).items():
                flat[f"{name}.{key}"] = value
        for head, cfg in self.heads.items():
            flat[f"heads.{head}.loss"] = cfg.loss
            flat[f"heads.{head}.weight"] = cfg.weight
            for param, value in cfg.params.items():
                flat[f"heads.{head}.{cfg.loss}.{param}"] = list(value) if isinstance(value, tuple) else value
        flat["energy_weight"] = self.energy_weight
        return flat


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "energy": EnergyConfig,
    "objective": ObjectiveConfig,
}
_FIELD_TYPES: dict[str, dict[str, Any]] = {name: typing.get_type_hints(kind) for name, kind in _SECTIONS.items()}
_HEAD_TYPES: dict[str, Any] = {"loss": str, "weight": float}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (int, float, bool, str, Literal, X | None);
    ints are accepted for floats, bools never for numbers."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        _require(value in args, f"{key} must be one of {list(args)}", value)
        return value
    if type(None) in args:
        if value is None:
            return None
        (annotation,) = (a for a in args if a is not type(None))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    wrong_bool = isinstance(value, bool) and annotation is not bool
    _require(isinstance(value, annotation) and not wrong_bool, f"{key} must be {annotation.__name__}", value)
    return value
