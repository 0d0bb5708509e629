"""The report's tables: one row per trial, the loss-type comparison per head and the weighting
strategies' comparison.

A table holds raw values (numbers stay numbers for the CSV); the text and Markdown renderings
round them. Trials are compared on their objective at their best epoch (the weights their test
metrics come from), never on loss values: losses of different types are not comparable.
"""

from __future__ import annotations

import csv
import html
import io
import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from search import ranking
from search.report._load import (
    HEAD_METRICS,
    WEIGHTS_PREFIX,
    Objective,
    SearchRecord,
    TrialRecord,
)
from trainables.flat_keys import FlatKey, varied_keys
from trainables.metric_names import better_mode

__all__ = [
    "ENERGY_WEIGHT",
    "WEIGHTING_STRATEGY",
    "Table",
    "best_first",
    "compares_weighting",
    "group_trials",
    "loss_type_table",
    "pareto_table",
    "ranked",
    "scored",
    "trial_table",
    "varied_params",
    "weighting_strategy",
    "weighting_table",
]

ENERGY_WEIGHT = "energy_weight"  # the flat key of the trainer's energy term weight
# The flat key of the weighting switch, built by FlatKey: trainables.config, which names the
# section, imports torch (through trainables.weighting) and the report must not.
WEIGHTING_STRATEGY = str(FlatKey(section=("weighting",), name="strategy"))

# Config keys never shown as parameters: the loss switches have their own columns, the rest is
# bookkeeping that does not describe the loss design.
_HIDDEN = ("train.threads", "objective.metric", "objective.mode")


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]  # full names (CSV header)
    labels: tuple[str, ...]  # short names (text and Markdown header)
    rows: tuple[tuple[Any, ...], ...]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([["" if v is None else v for v in row] for row in self.rows])
        return out.getvalue()

    def to_markdown(self) -> str:
        def cell(value: Any) -> str:
            return markdown_text(_show(value)).replace("|", "\\|")

        lines = ["| " + " | ".join(cell(label) for label in self.labels) + " |",
                 "|" + "|".join("---" for _ in self.labels) + "|"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_text(self) -> str:
        cells = [list(self.labels), *([_show(v) for v in row] for row in self.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.labels))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join([self.title, lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return shown_text(str(value))


def shown_text(text: str) -> str:
    """``text`` on one line with its control characters written out (``\\n``, ``\\x1b``): params,
    names and tags come from an MLflow store anyone may write, and an escape sequence would reach
    the terminal, a newline break a table."""
    return text if text.isprintable() else repr(text)[1:-1]


def markdown_text(text: str) -> str:
    """``shown_text`` with HTML's special characters escaped: no raw HTML reaches report.md (which
    MLflow's UI renders), and no line of a value starts a Markdown block of its own."""
    return html.escape(shown_text(text), quote=False)


def ranked(search: SearchRecord) -> list[TrialRecord]:
    """The search's trials in the one ranking of ``search.ranking`` (the summary's too)."""
    return ranking.ranked(search.trials, [o.mode for o in search.objectives])


def varied_params(trials: Sequence[TrialRecord], searched: Collection[str] | None = None) -> list[str]:
    """Config keys whose value differs between trials (a conditional key counts as varied); the
    heads' losses have columns of their own; a conditional key the space fixes is left out where
    the search's ``searched`` keys are known (``varied_keys``)."""
    return varied_keys([t.params for t in trials], hidden=_HIDDEN, searched=searched)


def _head_metric_names(search: SearchRecord) -> list[tuple[str, str]]:
    """(head, metric) pairs any trial has, in head order."""
    return [(h, m) for h in search.heads for m in HEAD_METRICS if any(m in t.heads.get(h, {}) for t in search.trials)]


def _objective_label(objective: Objective) -> str:
    return f"{objective.metric} ({objective.mode})"


def trial_table(search: SearchRecord, *, compact: bool = False) -> Table:
    """One row per trial, best first: rank, state, epochs, the objectives at the best epoch, the
    loss per head, the per-head metrics at that epoch, the parameters that vary and the MLflow run.
    ``compact``: the parameters in one column, and no run (for the terminal)."""
    head_metrics = _head_metric_names(search)
    params = varied_params(search.trials, search.dimensions)
    columns = ["rank", "trial", "state", "epochs", "best_epoch"]
    columns += [o.metric for o in search.objectives]
    columns += [f"loss.{h}" for h in search.heads]
    columns += [f"val/{h}/{m}" for h, m in head_metrics]
    labels = ["#", "trial", "state", "epochs", "best ep."]
    labels += [_objective_label(o) for o in search.objectives]
    labels += [f"{h} loss" for h in search.heads]
    labels += [f"{h} {m}" for h, m in head_metrics]
    if compact:
        columns.append("parameters")
        labels.append("parameters")
    else:  # and the trial's MLflow run, which `search train --run` trains again
        columns += [*params, "run_id"]
        labels += [*(FlatKey.parse(k).short() for k in params), "MLflow run"]
    rows = []
    for rank, trial in enumerate(ranked(search), start=1):
        row: list[Any] = [
            rank if trial.values[0] is not None else None,
            trial.trial_id,
            trial.state,
            trial.epochs,
            trial.best_epoch,
            *trial.values,
            *(trial.losses.get(h) for h in search.heads),
            *(trial.heads.get(h, {}).get(m) for h, m in head_metrics),
        ]
        if compact:
            row.append(" ".join(f"{FlatKey.parse(k).short()}={_show(trial.params[k])}" for k in params if k in trial.params))
        else:
            row += [*(trial.params.get(k) for k in params), trial.run_id]
        rows.append(tuple(row))
    title = f"Trials of search {search.name!r} ({search.search_id}), best first"
    return Table(title=title, columns=tuple(columns), labels=tuple(labels), rows=tuple(rows))


def pareto_table(search: SearchRecord, *, front: Sequence[TrialRecord]) -> Table:
    """One row per finished or stopped trial with a value of every objective (the trials the plot
    draws): the ``front`` first in its order (``ranking.pareto_set``: best first by the primary
    objective), then the others by trial id. Columns: trial, state,
    the objectives at the best epoch, the energy weight, the parameters that vary, and ``pareto``."""
    members = {t.trial_id for t in front}
    drawn = [t for t in search.trials if t.state in ranking.SCORED_STATES and all(v is not None for v in t.values)]
    # The energy weight gets its own column even where it is constant: it is what traces the front.
    energy = [ENERGY_WEIGHT] if any(ENERGY_WEIGHT in t.params for t in search.trials) else []
    params = [k for k in varied_params(search.trials, search.dimensions) if k != ENERGY_WEIGHT]
    columns = ["trial_id", "state", *(o.metric for o in search.objectives), *energy, *params, "pareto"]
    labels = ["trial", "state", *(_objective_label(o) for o in search.objectives), *energy]
    labels += [FlatKey.parse(k).short() for k in params] + ["pareto"]
    ordered = [*front, *sorted((t for t in drawn if t.trial_id not in members), key=lambda t: t.trial_id)]
    rows = tuple(
        (
            t.trial_id,
            t.state,
            *t.values,
            *(t.params.get(k) for k in energy + params),
            t.trial_id in members,
        )
        for t in ordered
    )
    title = f"Trials of search {search.name!r} with every objective, Pareto set first"
    return Table(title=title, columns=tuple(columns), labels=tuple(labels), rows=rows)


def _best(values: list[float], mode: str) -> float | None:
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def group_trials(
    trials: Sequence[TrialRecord], *, key: Callable[[TrialRecord], str | None]
) -> dict[str, list[TrialRecord]]:
    """``trials`` by ``key`` (a loss type, a strategy), groups in first-seen order; a trial whose
    key is None is in no group."""
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        name = key(trial)
        if name is not None:
            groups.setdefault(name, []).append(trial)
    return groups


def _objective_headers(objectives: Sequence[Objective]) -> tuple[list[str], list[str]]:
    """Columns and labels of ``_objective_stats``."""
    columns, labels = ["trials", "scored"], ["trials", "scored"]
    for o in objectives:
        columns += [f"best {o.metric}", f"median {o.metric}"]
        labels += [f"best {o.metric} ({o.mode})", f"median {o.metric}"]
    return columns, labels


def scored(trials: Sequence[TrialRecord], *, objective: int = 0) -> list[TrialRecord]:
    """The trials whose value of objective number ``objective`` counts, as for the best trial:
    finished or stopped (``ranking.SCORED_STATES``) with a value. A failed or running trial's value
    is from an epoch it did not finish the trial after."""
    return [t for t in trials if t.state in ranking.SCORED_STATES and t.values[objective] is not None]


def _objective_stats(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[Any]:
    """Trial count, how many are scored (``scored``), and best and median of each of
    ``objectives`` (the search's first ones, in its order) over the scored trials, at each
    trial's best epoch."""
    row: list[Any] = [len(trials), len(scored(trials))]
    for i, o in enumerate(objectives):
        values = [t.values[i] for t in scored(trials, objective=i)]
        row += [_best(values, o.mode), _median(values)]
    return row


def best_first(rows: list[tuple[Any, ...]], *, objective: Objective, value: int, name: int) -> list[tuple[Any, ...]]:
    """``rows`` by their ``value`` column, best first; rows without a value last, ties by ``name``."""
    sign = -1.0 if objective.mode == "max" else 1.0
    return sorted(rows, key=lambda r: (r[value] is None, sign * r[value] if r[value] is not None else 0.0, r[name]))


def loss_type_table(search: SearchRecord) -> Table:
    """Per head and loss type: trial count, how many are scored, best and median of every
    objective and of the head's own metrics over the scored trials (at each trial's best epoch)."""
    head_metrics = _head_metric_names(search)
    stat_columns, stat_labels = _objective_headers(search.objectives)
    columns, labels = ["head", "loss", *stat_columns], ["head", "loss", *stat_labels]
    metric_names = list(dict.fromkeys(m for _, m in head_metrics))
    for m in metric_names:
        columns += [f"best {m}", f"median {m}"]
        labels += [f"best {m}", f"median {m}"]
    best = columns.index(stat_columns[2])  # best of the primary objective
    rows = []
    for head in search.heads:
        head_rows = []
        for loss, trials in group_trials(search.trials, key=lambda t: t.losses.get(head)).items():
            row = [head, loss, *_objective_stats(trials, search.objectives)]
            for m in metric_names:
                values = [t.heads[head][m] for t in scored(trials) if m in t.heads.get(head, {})]
                row += [_best(values, better_mode(m)), _median(values)]
            head_rows.append(tuple(row))
        rows += best_first(head_rows, objective=search.objectives[0], value=best, name=1)
    title = "Loss types per head (objective and head metrics at each trial's best epoch)"
    return Table(title=title, columns=tuple(columns), labels=tuple(labels), rows=tuple(rows))


def weighting_strategy(trial: TrialRecord) -> str | None:
    """The trial's weighting strategy; None for a trial whose config has none (written before
    strategies existed)."""
    value = trial.params.get(WEIGHTING_STRATEGY)
    return None if value is None else str(value)


def compares_weighting(search: SearchRecord) -> bool:
    """Whether the search's trials ran more than one weighting strategy (the report then compares them)."""
    return len(group_trials(search.trials, key=weighting_strategy)) > 1


def weighting_table(search: SearchRecord) -> Table:
    """Per weighting strategy, best first: trial count, how many are scored, best and median of
    the primary objective over the scored trials (at each trial's best epoch) and the mean of each head's last effective
    loss weight over the trials that logged it (heads no trial logged a weight of: no column)."""
    primary = search.objectives[:1]
    logged = {h for t in search.trials for h in t.weights}
    heads = [h for h in search.heads if h in logged] + sorted(logged - set(search.heads))
    stat_columns, stat_labels = _objective_headers(primary)
    columns = ["strategy", *stat_columns, *(f"mean {WEIGHTS_PREFIX}{h}" for h in heads)]
    labels = ["strategy", *stat_labels, *(f"{h} weight (mean)" for h in heads)]
    rows = []
    for strategy, trials in group_trials(search.trials, key=weighting_strategy).items():
        row = [strategy, *_objective_stats(trials, primary)]
        for head in heads:
            weights = [t.weights[head] for t in trials if head in t.weights]
            row.append(statistics.fmean(weights) if weights else None)
        rows.append(tuple(row))
    rows = best_first(rows, objective=primary[0], value=columns.index(stat_columns[2]), name=0)
    title = f"Weighting strategies ({primary[0].metric} at each trial's best epoch; mean last weight per head)"
    return Table(title=title, columns=tuple(columns), labels=tuple(labels), rows=tuple(rows))
