"""The auxiliary losses' parameters, defaults and checks, without torch (see
``trainables.switches.Declaration``); ``head_parameters`` names the parameters that name a head
of the trial, which the space validator checks against the space's heads."""

from dataclasses import dataclass
from typing import Annotated, ClassVar

from trainables.settings import Rule, check_fields
from trainables.switches import Declaration, Switch, implemented_by

Weight = Annotated[float, Rule(minimum=0.0)]


@dataclass(frozen=True, kw_only=True)
class AuxiliaryParams(Declaration):
    """The base of the auxiliary losses' declarations."""

    def __post_init__(self) -> None:
        # also for a loss built without a trial config (which checks first, naming the key):
        # TaskCorrelation(weight=-1.0) pushed the correlation away from its target
        check_fields(self, "")


@dataclass(frozen=True, kw_only=True)
class NoAuxiliaryParams(AuxiliaryParams):
    """No auxiliary term (the default)."""

    head_parameters: ClassVar[tuple[str, ...]] = ()

    implementation = implemented_by("trainables.auxiliary._losses", "NoAuxiliary")


@dataclass(frozen=True, kw_only=True)
class SupConParams(AuxiliaryParams):
    head: str
    weight: Weight = 0.1
    temperature: Annotated[float, Rule(minimum=0.0, min_open=True)] = 0.1
    head_parameters: ClassVar[tuple[str, ...]] = ("head",)

    implementation = implemented_by("trainables.auxiliary._losses", "SupCon")


@dataclass(frozen=True, kw_only=True)
class TaskCorrelationParams(AuxiliaryParams):
    head: str
    other: str
    weight: Weight = 0.1
    target: Annotated[float, Rule(minimum=-1.0, maximum=1.0)] = 0.0
    head_parameters: ClassVar[tuple[str, ...]] = ("head", "other")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head == self.other:
            raise ValueError(f"other must be another head than head={self.head!r}, but got {self.other!r}")

    implementation = implemented_by("trainables.auxiliary._losses", "TaskCorrelation")


AUXILIARIES: dict[str, type] = {"none": NoAuxiliaryParams, "supcon": SupConParams, "correlation": TaskCorrelationParams}
# The ``kind`` switch of the auxiliary section.
AUXILIARY = Switch(AUXILIARIES)
