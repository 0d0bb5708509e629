"""The end of a search: per-trial summaries, the best trial, the Pareto set, and the table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from search.driver._callbacks import loss_types, trial_error
from search.driver._trainable import FAILED_KEY, FINAL_KEY
from search.space import Objective

__all__ = ["TrialSummary", "best_config_yaml", "best_trial", "format_summary", "pareto_set", "summarize"]

# Tune's trial states, and what the summary calls them.
_STATES = {"TERMINATED": "STOPPED", "ERROR": "FAILED"}
_SHOWN_BEST = 10


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    state: str  # FINISHED | STOPPED (early, by the scheduler or the time budget) | FAILED | UNFINISHED
    config: dict[str, Any]
    values: tuple[float | None, ...]  # one per objective
    epochs: int
    error: str | None = None
    test: dict[str, float] = field(default_factory=dict)

    @property
    def losses(self) -> dict[str, str]:
        return loss_types(self.config)


def summarize(trials: Sequence[Any], objectives: Sequence[Objective]) -> list[TrialSummary]:
    """Summaries of Tune trials (``ExperimentAnalysis.trials``), in trial order."""
    out = []
    for trial in trials:
        last = trial.last_result or {}
        state = _STATES.get(trial.status, "UNFINISHED")
        if state == "STOPPED" and last.get(FAILED_KEY):
            state = "FAILED"
        elif state == "STOPPED" and last.get(FINAL_KEY):
            state = "FINISHED"
        values = tuple(_number(last.get(o.metric)) for o in objectives)
        error = trial_error(trial)[0] if state == "FAILED" else None
        test = {k: v for k, v in last.items() if k.startswith("test/") and _number(v) is not None}
        out.append(
            TrialSummary(
                trial_id=trial.trial_id,
                state=state,
                config=dict(trial.config),
                values=values,
                epochs=int(last.get("epoch", 0)),
                error=error,
                test=test,
            )
        )
    return sorted(out, key=lambda s: s.trial_id)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _ranked(summaries: Sequence[TrialSummary], objective: Objective) -> list[TrialSummary]:
    scored = [s for s in summaries if s.state in ("FINISHED", "STOPPED") and s.values[0] is not None]
    sign = -1.0 if objective.mode == "max" else 1.0
    # Trials that ran to the end first: an early-stopped trial's value is from fewer epochs.
    return sorted(scored, key=lambda s: (s.state != "FINISHED", sign * s.values[0]))


def best_trial(summaries: Sequence[TrialSummary], objectives: Sequence[Objective]) -> TrialSummary | None:
    ranked = _ranked(summaries, objectives[0])
    return ranked[0] if ranked else None


def pareto_set(summaries: Sequence[TrialSummary], objectives: Sequence[Objective]) -> list[TrialSummary]:
    """The finished trials no other finished trial is at least as good as in every objective and
    better in one."""
    signs = [1.0 if o.mode == "max" else -1.0 for o in objectives]
    candidates = [s for s in summaries if s.state == "FINISHED" and all(v is not None for v in s.values)]

    def score(s: TrialSummary) -> list[float]:
        return [sign * v for sign, v in zip(signs, s.values)]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [s for s in candidates if not any(dominates(score(o), score(s)) for o in candidates if o is not s)]


def best_config_yaml(summary: TrialSummary, *, search_id: str, objectives: Sequence[Objective]) -> str:
    values = ", ".join(f"{o.metric}={_show(v)}" for o, v in zip(objectives, summary.values))
    header = f"# best trial {summary.trial_id} of search {search_id}: {values}\n"
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in summary.config.items()}
    # The trial's own key order: train() builds the heads (and draws their initial weights) in
    # the order the config names them, so a reordered config would not reproduce the trial.
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _varied_keys(summaries: Sequence[TrialSummary]) -> list[str]:
    """Config keys whose value differs between trials (loss switches are shown separately)."""
    keys = sorted({k for s in summaries for k in s.config})
    varied = []
    for key in keys:
        if key.endswith(".loss") or key == "train.threads":
            continue
        values = {repr(s.config.get(key)) for s in summaries}
        if len(values) > 1:
            varied.append(key)
    return varied


def _short(key: str) -> str:
    # heads.<head>.<loss>.<param> -> <head>.<param>; heads.<head>.weight -> <head>.weight;
    # section.field -> field
    parts = key.split(".")
    if parts[0] == "heads":
        return f"{parts[1]}.{parts[-1]}"
    return parts[-1]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def format_summary(
    summaries: Sequence[TrialSummary],
    objectives: Sequence[Objective],
    *,
    title: str,
    pareto: Sequence[TrialSummary] = (),
    notes: Sequence[str] = (),
    everything: str = "python -m search report",
) -> str:
    """The terminal summary: ``notes`` on how the search ended, best trials (losses, varied
    parameters, objectives, epochs, state; ``everything`` says where to see those not shown), the
    Pareto set with several objectives, and the failed trials with their reasons."""
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines = [title, "trials: " + ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())), *notes]
    varied = _varied_keys(summaries)

    def row(s: TrialSummary) -> list[str]:
        params = " ".join(f"{_short(k)}={_param(s.config.get(k))}" for k in varied if k in s.config)
        losses = " ".join(f"{h}={loss}" for h, loss in s.losses.items())
        return [s.trial_id, s.state, str(s.epochs), *(_show(v) for v in s.values), losses, params]

    header = ["trial", "state", "epochs", *(f"{o.metric} ({o.mode})" for o in objectives), "losses", "parameters"]
    ranked = _ranked(summaries, objectives[0])
    if ranked:
        lines += ["", f"best trials by {objectives[0].metric}:", *_table([header, *map(row, ranked[:_SHOWN_BEST])])]
        if len(ranked) > _SHOWN_BEST:
            lines.append(f"({len(ranked) - _SHOWN_BEST} more not shown; every trial: {everything})")
    if len(objectives) > 1 and pareto:
        lines += ["", "Pareto set (no finished trial is better in every objective):", *_table([header, *map(row, pareto)])]
    failed = [s for s in summaries if s.state == "FAILED"]
    if failed:
        lines += ["", "failed trials:"]
        lines += [f"  {s.trial_id} ({' '.join(f'{h}={x}' for h, x in s.losses.items())}): {s.error}" for s in failed]
    return "\n".join(lines)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
