"""The end of a search: per-trial summaries, the best trial, the Pareto set, and the table."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from search import ranking
from search.driver._callbacks import trial_error
from search.driver._trainable import FAILED_KEY, FINAL_KEY
from search.space import Objective
from trainables.flat_keys import FlatKey, head_losses, varied_keys

__all__ = ["TrialSummary", "best_config_yaml", "best_trial", "format_summary", "pareto_set", "summarize"]

# Tune's trial states, and what the summary calls them.
_STATES = {"TERMINATED": "STOPPED", "ERROR": "FAILED"}
_SHOWN_BEST = 10


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    state: str  # FINISHED | STOPPED (early, by the scheduler or the time budget) | FAILED | UNFINISHED
    config: dict[str, Any]
    values: tuple[float | None, ...]  # one per objective (the primary: its best so far)
    epochs: int
    error: str | None = None
    test: dict[str, float] = field(default_factory=dict)

    @property
    def losses(self) -> dict[str, str]:
        return head_losses(self.config)


def summarize(
    trials: Sequence[Any], objectives: Sequence[Objective], *, histories: Mapping[str, Any] = MappingProxyType({})
) -> list[TrialSummary]:
    """Summaries of Tune trials (``ExperimentAnalysis.trials``), in trial order. ``histories``: each
    trial's results by trial id, one row per result (``ExperimentAnalysis.trial_dataframes``)."""
    out = []
    for trial in trials:
        last = trial.last_result or {}
        state = _STATES.get(trial.status, "UNFINISHED")
        if state == "STOPPED" and last.get(FAILED_KEY):
            state = "FAILED"
        elif state == "STOPPED" and last.get(FINAL_KEY):
            state = "FINISHED"
        # The objectives at the trial's best epoch, as the report reads them from MLflow: a
        # finished trial's final result holds that epoch's values, a stopped trial's last result
        # only the primary's (best/...), the others at its last epoch.
        primary = _number(last.get(f"best/{objectives[0].metric}", last.get(objectives[0].metric)))
        values = (primary, *(_number(last.get(o.metric)) for o in objectives[1:]))
        if state == "STOPPED" and len(objectives) > 1:
            values = _at_best_epoch(histories.get(trial.trial_id), objectives) or values
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


def _at_best_epoch(history: Any, objectives: Sequence[Objective]) -> tuple[float | None, ...] | None:
    """The objectives at the best epoch of a trial's results (a DataFrame, one row per result;
    where an epoch was reported twice, by a retry, the later row counts); None without them."""
    metrics = [o.metric for o in objectives]
    if history is None or any(column not in history for column in ("epoch", *metrics)):
        return None
    rows = {int(row["epoch"]): row for row in history[["epoch", *metrics]].to_dict("records")
            if _number(row["epoch"]) is not None}
    curve = {epoch: value for epoch, row in rows.items() if (value := _number(row[metrics[0]])) is not None}
    best = ranking.best_epoch(curve, objectives[0].mode)
    return None if best is None else tuple(_number(rows[best][metric]) for metric in metrics)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def best_trial(summaries: Sequence[TrialSummary], objectives: Sequence[Objective]) -> TrialSummary | None:
    return ranking.best_trial(summaries, [o.mode for o in objectives])


def pareto_set(summaries: Sequence[TrialSummary], objectives: Sequence[Objective]) -> list[TrialSummary]:
    """The finished trials no other finished trial is at least as good as in every objective and
    better in one."""
    return ranking.pareto_set(summaries, [o.mode for o in objectives])


def best_config_yaml(summary: TrialSummary, *, search_id: str, objectives: Sequence[Objective]) -> str:
    values = ", ".join(f"{o.metric}={_show(v)}" for o, v in zip(objectives, summary.values))
    header = f"# best trial {summary.trial_id} of search {search_id}: {values}\n"
    body = {k: list(v) if isinstance(v, tuple) else v for k, v in summary.config.items()}
    # The trial's own key order: train() builds the heads (and draws their initial weights) in
    # the order the config names them, so a reordered config would not reproduce the trial.
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
    everything: str,
    searched: Collection[str] | None = None,
) -> str:
    """The terminal summary: ``notes`` on how the search ended, best trials (losses, varied
    parameters (``varied_keys`` of the space's ``searched`` keys), objectives, epochs, state;
    ``everything`` says where to see those not shown), the
    Pareto set with several objectives, and the failed trials with their reasons."""
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.state] = counts.get(s.state, 0) + 1
    counted = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "none run"
    lines = [title, f"trials: {counted}", *notes]
    varied = varied_keys([s.config for s in summaries], hidden=("train.threads",), searched=searched)

    def row(s: TrialSummary) -> list[str]:
        params = " ".join(f"{FlatKey.parse(k).short()}={_param(s.config.get(k))}" for k in varied if k in s.config)
        losses = " ".join(f"{h}={loss}" for h, loss in s.losses.items())
        return [s.trial_id, s.state, str(s.epochs), *(_show(v) for v in s.values), losses, params]

    header = ["trial", "state", "epochs", *(f"{o.metric} ({o.mode})" for o in objectives), "losses", "parameters"]
    modes = [o.mode for o in objectives]
    lines.append(ranking.best_line(ranking.best_trial(summaries, modes), objectives[0].metric))
    ranked = [s for s in ranking.ranked(summaries, modes) if s.state in ("FINISHED", "STOPPED") and s.values[0] is not None]
    if ranked:
        lines += ["", f"best trials by {objectives[0].metric}:", *_table([header, *map(row, ranked[:_SHOWN_BEST])])]
        if len(ranked) > _SHOWN_BEST:
            lines.append(f"({len(ranked) - _SHOWN_BEST} more not shown; every trial: {everything})")
    if len(objectives) > 1 and pareto:
        lines += ["", "Pareto set (finished trials no other one equals or beats in every objective, beating it in one):", *_table([header, *map(row, pareto)])]
    failed = [s for s in summaries if s.state == "FAILED"]
    if failed:
        lines += ["", "failed trials:"]
        lines += [f"  {s.trial_id} ({' '.join(f'{h}={x}' for h, x in s.losses.items())}): {s.error}" for s in failed]
    return "\n".join(lines)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
