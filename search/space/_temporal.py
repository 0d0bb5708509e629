"""Cross-field rules of a space's ``temporal`` section: its settings together (the checks of
``trainables.config.TemporalConfig``, at every value a search may reach) and the model kinds it
goes with (a recurrent kind needs the section, a static kind refuses it)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from search.space._compile import Branch, Const, Entry, Param
from search.space._distributions import MAX_PROBES, PROBES_RULE, probe_values
from trainables.config import TemporalConfig
from trainables.flat_keys import FlatKey
from trainables.models import MODELS, is_temporal
from trainables.settings import SettingError

__all__ = ["SECTION", "TemporalIssue", "runs_over_time", "temporal_issues"]

SECTION = "temporal"
TemporalIssue = tuple[str, str, Any]  # (flat key or YAML path, rule, value)


def temporal_issues(entries: Sequence[Entry], *, given: bool) -> list[TemporalIssue]:
    """The problems of the temporal settings in ``entries``; ``given``: the file has the section."""
    kinds = _model_kinds(entries)
    recurrent = [k for k in MODELS if is_temporal(k)]
    static = [k for k in kinds if k in MODELS and not is_temporal(k)]
    if given and static:
        return [(SECTION, f"a recurrent model.kind ({', '.join(recurrent)}) with a `{SECTION}` section (a static "
                 f"model sees one step)", static[0])]
    if not given and len(static) < len(kinds):
        kind = next(k for k in kinds if k not in static)
        return [("model.kind", f"a `{SECTION}` section {{n_timesteps, pattern, dt, reaction_time}} with a recurrent "
                 f"kind (it runs over those timesteps)", kind)]
    settings = {FlatKey.parse(e.key).name: e for e in entries if e.key.startswith(f"{SECTION}.")}
    probes = _probes(settings)
    combinations = math.prod(len(values) for values in probes.values())
    if combinations > MAX_PROBES:
        return [(SECTION, PROBES_RULE, combinations)]
    for drawn in itertools.product(*probes.values()):
        values = dict(zip(probes, drawn))
        try:
            TemporalConfig(**values)
        except SettingError as error:  # error.key: temporal.pattern, temporal.reaction_time, ...
            return [(error.key, _where(error.rule, values, settings), values[FlatKey.parse(error.key).name])]
    return []


def runs_over_time(entries: Sequence[Entry]) -> bool:
    """Whether every model kind the space may choose is recurrent: then its trials report the
    temporal metrics (``trainables.metrics.STEP_METRICS``) an objective may name."""
    kinds = _model_kinds(entries)
    return bool(kinds) and all(k in MODELS and is_temporal(k) for k in kinds)


def _model_kinds(entries: Sequence[Entry]) -> list[str]:
    entry = next((e for e in entries if e.key == "model.kind"), None)
    if isinstance(entry, Branch):
        return list(entry.options)
    return [entry.value] if isinstance(entry, Const) else []


# The reaction-time rule masks more steps the longer the reaction time and the shorter dt
# (ceil(reaction_time / dt) per chunk), so it holds everywhere when it holds at their worst pair,
# and neither takes part in the other rules: of each, only its worst probe value is checked.
_WORST = {"dt": min, "reaction_time": max}


def _probes(settings: dict[str, Entry]) -> dict[str, tuple[Any, ...]]:
    """The values each setting is checked at, together with every combination of the others'."""
    probes = {}
    for name, entry in settings.items():
        values = (entry.value,) if isinstance(entry, Const) else probe_values(entry.distribution) if isinstance(
            entry, Param) else ()
        probes[name] = (_WORST[name](values),) if name in _WORST and values else values
    return probes


def _where(rule: str, values: dict[str, Any], settings: dict[str, Entry]) -> str:
    """The rule, and with which values of the other searched settings it fails."""
    searched = [n for n, e in settings.items() if isinstance(e, Param)]
    if not searched:
        return rule
    at = ", ".join(f"{SECTION}.{n}={values[n]!r}" for n in searched)
    return f"{rule}, for every value the search may draw (fails at {at})"
