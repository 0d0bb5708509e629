"""The head losses' parameters, their defaults and their checks, without torch.

Each loss option is declared here as a frozen keyword-only dataclass: its fields are the
constructor's keywords (``num_classes`` and ``ignore_index``, which the head sets, then the
tunable ones), ``__post_init__`` checks them, and ``outputs`` says how many output units the head
needs. The search driver validates a space against these alone; the torch module of an option
(``implementation``) builds its declaration from the same keywords, so a default or a check lives
here only. Every message has the form "`rule`, but got `value`"; a parameter check raises
``SettingError`` with the parameter, the rule and the value as data.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from trainables.settings import SettingError
from trainables.switches import Declaration, implemented_by

# The target value a head loss skips (masked steps of a temporal trial, unlabelled rows): the
# default of every loss, the trainer's masks and the metrics.
IGNORE_INDEX = -1

Distance = Literal["l1", "l2", "huber"]
DISTANCES: tuple[str, ...] = get_args(Distance)

# A Gaussian this narrow is already one-hot (the neighbour class gets q = exp(-5e5)); far
# narrower ones overflow (j - y)^2 / (2 sigma^2) to inf, and q * log q becomes 0 * -inf = NaN.
SIGMA_MIN = 1e-3


def check_num_classes(num_classes: int, *, ignore_index: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, but got {num_classes!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int, but got {ignore_index!r}")
    # An ignore_index inside the class range would silently drop a real class from training.
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index must lie outside [0, {num_classes - 1}], but got {ignore_index}"
        )


def check_number(name: str, value: float, *, minimum: float = 0.0, strict: bool = False) -> None:
    """`value` must be a finite real number >= minimum (> minimum when `strict`)."""
    is_real = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_real and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise SettingError(name, f"a finite number {relation} {minimum:g}", value)


def check_distance(distance: str, delta: float) -> None:
    if distance not in DISTANCES:
        raise SettingError("distance", f"one of {list(DISTANCES)}", distance)
    check_number("delta", delta, strict=True)


def check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise SettingError(name, "a bool", value)


def check_class_weights(name: str, weights: Sequence[float] | None, num_classes: int) -> None:
    if weights is None:
        return
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise SettingError(name, "None or a sequence of floats", weights)
    if len(weights) != num_classes:
        raise SettingError(name, f"a sequence of num_classes={num_classes} entries", weights)
    for value in weights:
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
            raise SettingError(name, "a sequence of finite numbers >= 0", weights)
    if not any(weights):  # every class weighted 0: the loss is 0 whatever the model does
        raise SettingError(name, "a sequence of finite numbers >= 0, one of them > 0", weights)


def check_ce_params(label_smoothing: float) -> None:
    check_number("label_smoothing", label_smoothing)
    if label_smoothing >= 1:  # at 1 the target drops out of the loss
        raise SettingError("label_smoothing", "a number in [0, 1)", label_smoothing)


def check_weighted_ce_params(distance_power: float, weight: float, base: float) -> None:
    check_number("distance_power", distance_power)
    check_number("weight", weight)
    check_number("base", base)


def check_ordinal_params(distance: Distance, alpha: float, normalize: bool, delta: float) -> None:
    check_distance(distance, delta)
    check_number("alpha", alpha)
    check_bool("normalize", normalize)


def check_symmetric_params(alpha: float, beta: float, log_zero: float) -> None:
    check_number("alpha", alpha)
    check_number("beta", beta)
    if alpha + beta == 0:
        raise SettingError("beta", "a number > 0 where alpha is 0 (else the loss is constant)", beta)
    if isinstance(log_zero, bool) or not isinstance(log_zero, (int, float)) or not (
            math.isfinite(log_zero) and log_zero < 0):
        raise SettingError("log_zero", "a finite number < 0", log_zero)


@dataclass(frozen=True, kw_only=True)
class HeadLossParams(Declaration):
    """What every head loss takes: the head's class count and the target value it skips."""

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    # Whether the loss weighs a prediction's error by its distance from the target class (|j - y|):
    # a quantity only on an ordinal head, whose classes are ordered (a categorical head's class
    # numbers are arbitrary), so only an ordinal head takes such a loss.
    uses_class_distance: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_num_classes(self.num_classes, ignore_index=self.ignore_index)

    @classmethod
    def outputs(cls, num_classes: int) -> int:
        """Number of output units the head needs for `num_classes` classes."""
        return num_classes


@dataclass(frozen=True, kw_only=True)
class CrossEntropyParams(HeadLossParams):
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ce_params(self.label_smoothing)

    implementation = implemented_by("trainables.losses", "CrossEntropyLoss")


@dataclass(frozen=True, kw_only=True)
class WeightedCrossEntropyParams(HeadLossParams):
    uses_class_distance = True
    distance_power: float = 2.0
    weight: float = 1.0
    base: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weighted_ce_params(self.distance_power, self.weight, self.base)

    implementation = implemented_by("trainables.losses", "WeightedCrossEntropyLoss")


@dataclass(frozen=True, kw_only=True)
class FocalParams(HeadLossParams):
    gamma: float = 2.0
    alpha: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("gamma", self.gamma)
        check_class_weights("alpha", self.alpha, self.num_classes)
        if self.alpha is not None:
            object.__setattr__(self, "alpha", tuple(float(a) for a in self.alpha))

    implementation = implemented_by("trainables.losses", "FocalLoss")


@dataclass(frozen=True, kw_only=True)
class OrdinalParams(HeadLossParams):
    uses_class_distance = True
    distance: Distance = "l1"
    alpha: float = 0.1
    normalize: bool = True
    delta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ordinal_params(self.distance, self.alpha, self.normalize, self.delta)

    implementation = implemented_by("trainables.losses", "OrdinalLoss")


@dataclass(frozen=True, kw_only=True)
class QuantizedParams(HeadLossParams):
    uses_class_distance = True
    distance: Distance = "l1"
    delta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_distance(self.distance, self.delta)

    @classmethod
    def outputs(cls, num_classes: int) -> int:
        return 1  # the class index, regressed

    implementation = implemented_by("trainables.losses", "QuantizedLoss")


@dataclass(frozen=True, kw_only=True)
class SoftOrdinalParams(HeadLossParams):
    uses_class_distance = True
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("sigma", self.sigma, minimum=SIGMA_MIN)

    implementation = implemented_by("trainables.losses", "SoftOrdinalLoss")


@dataclass(frozen=True, kw_only=True)
class SymmetricCrossEntropyParams(HeadLossParams):
    alpha: float = 0.1
    beta: float = 1.0
    log_zero: float = -4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_symmetric_params(self.alpha, self.beta, self.log_zero)

    implementation = implemented_by("trainables.losses", "SymmetricCrossEntropyLoss")
