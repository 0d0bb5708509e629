"""Cross-field rules of the sections whose options act on the train loop, against the space's
heads: a weighting strategy that balances heads against each other (``min_heads`` of
``trainables.weighting``) needs that many, and an auxiliary loss names distinct heads the space
trains (its ``head_parameters``), at every value a search may draw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search.space._compile import Branch, Const, Entry, Param
from search.space._distributions import Choice
from trainables.auxiliary import AUXILIARY
from trainables.config import AuxiliaryConfig, WeightingConfig
from trainables.flat_keys import HEADS, FlatKey
from trainables.switches import switch_field
from trainables.weighting import STRATEGY

__all__ = ["hook_issues"]

_STRATEGY = f"weighting.{switch_field(WeightingConfig)[0]}"
_AUXILIARY = f"auxiliary.{switch_field(AuxiliaryConfig)[0]}"


def hook_issues(entries: Sequence[Entry], *, heads: Sequence[str]) -> list[tuple[str, str, Any]]:
    """The problems of the weighting and auxiliary sections in ``entries`` for ``heads``."""
    any_number = ", ".join(name for name in STRATEGY.options if _min_heads(name) == 1)
    issues = [(_STRATEGY, f"a strategy for {len(heads)} head(s): `{name}` balances at least "
               f"{_min_heads(name)} ({any_number} take any number)", name)
              for name, _ in _options(entries, _STRATEGY)
              if name in STRATEGY.options and len(heads) < _min_heads(name)]
    issues += _all_weights_zero(entries, heads)
    for option, params in _options(entries, _AUXILIARY):
        known = option in AUXILIARY.options
        named = getattr(AUXILIARY.declaration(option), "head_parameters", ()) if known else ()
        values = {FlatKey.parse(e.key).name: (e.key, _values(e)) for e in params}
        for name in named:
            key, drawn = values.get(name, (None, ()))
            issues += [(key, f"a head the space trains (one of: {', '.join(heads)})", v) for v in drawn if v not in heads]
        if len(named) == 2 and all(n in values for n in named):
            # any value both may draw: a search draws them apart, so it may draw it for both
            (key, first), (_, second) = values[named[0]], values[named[1]]
            issues += [(key, f"another head than {named[1]}" + ("" if (v,) == second else f" (both may draw {v!r})"),
                        v) for v in first if v in second]
    return issues


def _all_weights_zero(entries: Sequence[Entry], heads: Sequence[str]) -> list[tuple[str, str, Any]]:
    """A draw with every head's weight 0: its trial learns nothing (a zero loss; gradnorm refuses
    it). Only constants and choices draw an exact 0."""
    weights = {e.key: _values(e) for e in entries if e.key in {f"{HEADS}.{h}.weight" for h in heads}}
    if len(weights) < len(heads) or not all(0 in values for values in weights.values()):
        return []
    key = next(iter(weights))
    return [(key, "a head weight that is not 0 while every other head's is (all 0: a trial learns nothing)", 0)]


def _min_heads(strategy: str) -> int:
    return getattr(STRATEGY.declaration(strategy), "min_heads", 1)


def _values(entry: Entry) -> tuple[Any, ...]:
    """The values an entry may take: a constant, or every choice (other ranges name no head)."""
    if isinstance(entry, Const):
        return (entry.value,)
    return entry.distribution.values if isinstance(entry, Param) and isinstance(entry.distribution, Choice) else ()


def _options(entries: Sequence[Entry], key: str) -> list[tuple[str, tuple[Entry, ...]]]:
    """(option, its parameter entries) of the switch ``key``."""
    entry = next((e for e in entries if e.key == key), None)
    if isinstance(entry, Branch):
        return list(entry.options.items())
    return [(entry.value, ())] if isinstance(entry, Const) else []
