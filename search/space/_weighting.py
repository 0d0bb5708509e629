"""Cross-field rule of a space's ``weighting`` section: a strategy that balances heads against
each other (``min_heads`` of ``trainables.weighting``) needs that many heads."""

from __future__ import annotations

from collections.abc import Sequence

from search.space._compile import Branch, Const, Entry
from trainables.weighting import STRATEGIES

__all__ = ["SECTION", "weighting_issues"]

SECTION = "weighting"
_SWITCH = f"{SECTION}.strategy"


def weighting_issues(entries: Sequence[Entry], *, heads: int) -> list[tuple[str, str, object]]:
    """The problems of the weighting strategies in ``entries`` for a space with ``heads`` heads."""
    entry = next((e for e in entries if e.key == _SWITCH), None)
    options = list(entry.options) if isinstance(entry, Branch) else [entry.value] if isinstance(entry, Const) else []
    return [(_SWITCH, f"a strategy for {heads} head(s): `{name}` balances at least {STRATEGIES[name].min_heads} "
             f"(fixed or uncertainty take any number)", name)
            for name in options if name in STRATEGIES and heads < STRATEGIES[name].min_heads]
