"""Cross-field rules of the sections whose options act on the train loop, against the space's
heads: a weighting strategy that balances heads against each other (``min_heads`` of
``trainables.weighting``) needs that many, and an auxiliary loss names heads the space trains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search.space._compile import Branch, Const, Entry
from trainables.weighting import STRATEGIES

__all__ = ["hook_issues"]

_STRATEGY = "weighting.strategy"
_AUXILIARY = "auxiliary.kind"
_HEAD_PARAMETERS = ("head", "other")  # the auxiliary losses' parameters that name a head


def hook_issues(entries: Sequence[Entry], *, heads: Sequence[str]) -> list[tuple[str, str, Any]]:
    """The problems of the weighting and auxiliary sections in ``entries`` for ``heads``."""
    issues = [(_STRATEGY, f"a strategy for {len(heads)} head(s): `{name}` balances at least "
               f"{STRATEGIES[name].min_heads} (fixed or uncertainty take any number)", name)
              for name, _ in _options(entries, _STRATEGY)
              if name in STRATEGIES and len(heads) < STRATEGIES[name].min_heads]
    for option, params in _options(entries, _AUXILIARY):
        for entry in params:
            name = entry.key.rsplit(".", 1)[-1]
            if name in _HEAD_PARAMETERS and isinstance(entry, Const) and entry.value not in heads:
                issues.append((entry.key, f"a head the space trains (one of: {', '.join(heads)})", entry.value))
    return issues


def _options(entries: Sequence[Entry], key: str) -> list[tuple[str, tuple[Entry, ...]]]:
    """(option, its parameter entries) of the switch ``key``."""
    entry = next((e for e in entries if e.key == key), None)
    if isinstance(entry, Branch):
        return list(entry.options.items())
    return [(entry.value, ())] if isinstance(entry, Const) else []
