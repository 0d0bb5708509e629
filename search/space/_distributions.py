"""The distributions a space value may use, and the typed value checks they are validated with.

A space value is a literal (fixed) or a one-key mapping naming one distribution:
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` (lo > 0), ``{int: [lo, hi]}`` (inclusive),
``{choice: [v, ...]}`` or ``{grid: [v, ...]}``. ``choice`` and ``grid`` are both categorical for
Optuna; ``grid`` says the values are meant to be enumerated (``search.sampler: grid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from trainables.settings import show_literal

__all__ = [
    "DISTRIBUTIONS", "MAX_PROBES", "PROBES_RULE", "Choice", "Distribution", "Grid", "IntRange", "LogUniform", "Uniform",
    "from_json", "probe_values", "to_json",
]

# An int range up to this long is probed at every value (n_timesteps against a pattern's length).
_ENUMERATED = 256
# A cross-field rule (a loss's parameters together, the temporal settings together) is checked at
# every combination of its settings' probe values, each check up to 0.3 ms: a bound keeps that
# under about 3 s, and a space of more combinations is refused.
MAX_PROBES = 10_000
PROBES_RULE = (f"searched settings with at most {MAX_PROBES:,} combinations of the values their joint rules are "
               f"checked at (every choice, every value of an int range under {_ENUMERATED} wide, the ends of any "
               f"other range, and next to them for an int range)")


class SuggestTrial(Protocol):
    """The part of ``optuna.Trial`` used here (Ray passes a wrapper, so no isinstance checks)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float
    kind = "uniform"

    def suggest(self, trial: SuggestTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)

    def __str__(self) -> str:
        return f"uniform [{self.low}, {self.high}]"


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float
    kind = "loguniform"

    def suggest(self, trial: SuggestTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def __str__(self) -> str:
        return f"loguniform [{self.low}, {self.high}]"


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    kind = "int"

    def suggest(self, trial: SuggestTrial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high)

    def __str__(self) -> str:
        return f"int [{self.low}, {self.high}]"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]
    kind = "choice"

    def suggest(self, trial: SuggestTrial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def __str__(self) -> str:
        return f"{self.kind} [{', '.join(show_literal(v) for v in self.values)}]"


@dataclass(frozen=True)
class Grid(Choice):
    kind = "grid"


Distribution = Uniform | LogUniform | IntRange | Choice | Grid
DISTRIBUTIONS: dict[str, type] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "int": IntRange,
    "choice": Choice,
    "grid": Grid,
}


def to_json(distribution: Distribution) -> dict[str, Any]:
    """``{"uniform": [lo, hi]}``, ``{"choice": [...]}``: the space file's own form."""
    if isinstance(distribution, Choice):
        return {distribution.kind: list(distribution.values)}
    return {distribution.kind: [distribution.low, distribution.high]}


def from_json(form: dict[str, Any]) -> Distribution:
    """The distribution ``to_json`` wrote."""
    (kind, args), = form.items()
    cls = DISTRIBUTIONS[kind]
    return cls(tuple(args)) if issubclass(cls, Choice) else cls(*args)


def probe_values(distribution: Distribution) -> tuple[Any, ...]:
    """The values that show whether a distribution stays within what a setting accepts with the
    others: every choice, every value of a short int range, else the two ends of the range, and of
    a long int range the values next to them too: two neighbours are never both multiples of 2 or
    more (n_timesteps against a pattern's length; [2, 400] passed with two even ends)."""
    if isinstance(distribution, Choice):
        return distribution.values
    if isinstance(distribution, IntRange):
        low, high = distribution.low, distribution.high
        if high - low < _ENUMERATED:
            return tuple(range(low, high + 1))
        return (low, low + 1, high - 1, high)
    return (distribution.low, distribution.high)
