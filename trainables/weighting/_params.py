"""The weighting strategies' parameters, defaults and checks, without torch (see
``trainables.switches.Declaration``); ``min_heads`` is the fewest heads a strategy balances,
which the space validator checks against the space's heads."""

from dataclasses import dataclass
from typing import Annotated, ClassVar

from trainables.settings import Rule, check_fields
from trainables.switches import Declaration, Switch, implemented_by


@dataclass(frozen=True, kw_only=True)
class StrategyParams(Declaration):
    min_heads: ClassVar[int] = 1

    def __post_init__(self) -> None:
        # also for a strategy built without a trial config (which checks first, naming the key):
        # GradNorm(alpha=-3.0) trained
        check_fields(self, "")


@dataclass(frozen=True, kw_only=True)
class FixedParams(StrategyParams):
    implementation = implemented_by("trainables.weighting._strategies", "Fixed")


@dataclass(frozen=True, kw_only=True)
class UncertaintyParams(StrategyParams):
    implementation = implemented_by("trainables.weighting._strategies", "Uncertainty")


@dataclass(frozen=True, kw_only=True)
class DWAParams(StrategyParams):
    temperature: Annotated[float, Rule(minimum=0.0, min_open=True)] = 2.0
    min_heads: ClassVar[int] = 2

    implementation = implemented_by("trainables.weighting._strategies", "DWA")


@dataclass(frozen=True, kw_only=True)
class GradNormParams(StrategyParams):
    alpha: Annotated[float, Rule(minimum=0.0, maximum=10.0)] = 1.5
    min_heads: ClassVar[int] = 2

    implementation = implemented_by("trainables.weighting._strategies", "GradNorm")


@dataclass(frozen=True, kw_only=True)
class PCGradParams(StrategyParams):
    min_heads: ClassVar[int] = 2

    implementation = implemented_by("trainables.weighting._strategies", "PCGrad")


STRATEGIES: dict[str, type] = {
    "fixed": FixedParams,
    "uncertainty": UncertaintyParams,
    "dwa": DWAParams,
    "gradnorm": GradNormParams,
    "pcgrad": PCGradParams,
}
# The ``strategy`` switch of the weighting section.
STRATEGY = Switch(STRATEGIES)
