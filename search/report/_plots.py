"""The report's figures (PNG). Figures are built with matplotlib's object API on the Agg canvas,
not pyplot: no display, no global figure registry, safe in a headless process.

Every function writes its file even when there is nothing to draw yet (a running search whose
trials have not reported): the figure then says why it is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from search.report._load import Objective, SearchRecord, TrialRecord
from search import ranking
from search.report._tables import (ENERGY_WEIGHT, WEIGHTING_STRATEGY, best_first, group_trials, ranked, scored,
                                   weighting_strategy)

__all__ = [
    "front_label",
    "learning_curves",
    "loss_type_boxes",
    "objective_by_trial",
    "importance_bars",
    "pareto_front",
    "pareto_set",
    "weighting_boxes",
]

_DPI = 100
_STATE_COLORS = {
    "FINISHED": "tab:blue",
    "STOPPED": "tab:orange",
    "RUNNING": "tab:green",
    "FAILED": "tab:red",
    "INTERRUPTED": "tab:gray",
    "PENDING": "tab:gray",
}
_TOP_CURVES = 5


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def _plain(text: str) -> str:
    """``text`` shown as it is: matplotlib reads the part between two ``$`` as mathtext (and fails
    on what is not), and run, experiment, trial, loss and parameter names come from MLflow, where
    a user may write anything (``lr sweep $\\frac$ v2``). Apply once, to the text as drawn."""
    return text.replace("$", r"\$")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, _plain(text), ha="center", va="center", wrap=True, transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _label(objective: Objective) -> str:
    return _plain(f"{objective.metric} ({objective.mode})")


def _losses(trial: TrialRecord) -> str:
    return " ".join(f"{h}={loss}" for h, loss in trial.losses.items())


def _best_so_far(
    points: Sequence[tuple[int, TrialRecord]], *, objective: Objective, index: int
) -> tuple[list[int], list[float]]:
    """The best value of objective number ``index`` among the scored trials (``ranking.SCORED_STATES``,
    as for the best trial) up to each point, from the first scored one on."""
    xs: list[int] = []
    ys: list[float] = []
    best = None
    for n, t in points:
        if t.state in ranking.SCORED_STATES and (best is None or objective.better(t.values[index], best)):
            best = t.values[index]
        if best is not None:
            xs.append(n)
            ys.append(best)
    return xs, ys


def objective_by_trial(search: SearchRecord, path: Path) -> Path:
    """Each objective per trial (in start order, coloured by state) with the best-so-far line."""
    figure = _figure(7, 2.2 + 2.3 * len(search.objectives))
    axes = figure.subplots(len(search.objectives), 1, squeeze=False)[:, 0]
    for i, (ax, objective) in enumerate(zip(axes, search.objectives)):
        points = [(n, t) for n, t in enumerate(search.trials, start=1) if t.values[i] is not None]
        if not points:
            _empty(ax, f"no trial has a value of {objective.metric} yet")
            continue
        for state in sorted({t.state for _, t in points}):
            xs = [n for n, t in points if t.state == state]
            ys = [t.values[i] for n, t in points if t.state == state]
            ax.scatter(xs, ys, s=28, color=_STATE_COLORS.get(state, "black"), label=state.lower(), zorder=3)
        best_x, best_y = _best_so_far(points, objective=objective, index=i)
        if best_x:
            ax.step(best_x, best_y, where="post", color="black", linewidth=1.2, label="best so far (finished or stopped)")
        ax.set_xlabel("trial (start order)")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_ylabel(_label(objective))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    figure.suptitle(_plain(f"{search.name}: objective per trial (at each trial's best epoch)"))
    return _save(figure, path)


def _primary_values(
    trials: Sequence[TrialRecord], *, key: Callable[[TrialRecord], str | None]
) -> dict[str, list[float]]:
    """The primary objective of the scored ``trials`` (as in the tables) by ``key``; groups
    without a value are left out."""
    groups = group_trials(scored(trials), key=key).items()
    values = {name: [t.values[0] for t in group] for name, group in groups}
    return {name: scored for name, scored in values.items() if scored}


def _boxes(ax: Any, groups: dict[str, list[float]], *, objective: Objective, title: str) -> None:
    """One box per group, best group first, with its trials drawn on top and counted."""
    ax.set_title(_plain(title))
    if not groups:
        _empty(ax, "no trial has a value yet")
        return
    best = max if objective.mode == "max" else min
    names = [n for n, _ in best_first([(n, best(v)) for n, v in groups.items()], objective=objective, value=1, name=0)]
    ax.boxplot([groups[n] for n in names], tick_labels=[_plain(n) for n in names], widths=0.5, showfliers=False)
    for x, name in enumerate(names, start=1):
        values = groups[name]
        # Deterministic spread so overlapping trials stay visible.
        offsets = [((k % 5) - 2) * 0.04 for k in range(len(values))]
        ax.scatter([x + o for o in offsets], values, s=18, color="tab:blue", alpha=0.7, zorder=3)
        ax.annotate(f"n={len(values)}", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                    textcoords="offset points", ha="center", fontsize="x-small", color="0.3")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(axis="y", alpha=0.3)


def loss_type_boxes(search: SearchRecord, path: Path) -> Path:
    """The primary objective per loss type, one panel per head (box plot plus the trials)."""
    objective = search.objectives[0]
    heads = search.heads or ("(no head)",)
    figure = _figure(max(5.0, 3.2 * len(heads)), 4.2)
    axes = figure.subplots(1, len(heads), squeeze=False)[0]
    for ax, head in zip(axes, heads):
        groups = _primary_values(search.trials, key=lambda t: t.losses.get(head))
        _boxes(ax, groups, objective=objective, title=head)
    axes[0].set_ylabel(_label(objective))
    figure.suptitle(_plain(f"{search.name}: {objective.metric} by loss type"))
    return _save(figure, path)


def weighting_boxes(search: SearchRecord, path: Path) -> Path:
    """The primary objective per weighting strategy (box plot plus the trials)."""
    objective = search.objectives[0]
    groups = _primary_values(search.trials, key=weighting_strategy)
    figure = _figure(max(5.0, 1.2 * len(groups) + 2.0), 4.2)
    ax = figure.subplots()
    _boxes(ax, groups, objective=objective, title=WEIGHTING_STRATEGY)
    ax.set_ylabel(_label(objective))
    figure.suptitle(_plain(f"{search.name}: {objective.metric} by weighting strategy"))
    return _save(figure, path)


def importance_bars(search: SearchRecord, importances: Sequence[dict[str, float] | str], path: Path) -> Path:
    """fANOVA importance per objective (horizontal bars), or why it could not be computed."""
    figure = _figure(7, 1.6 + 2.6 * len(importances))
    axes = figure.subplots(len(importances), 1, squeeze=False)[:, 0]
    for ax, objective, result in zip(axes, search.objectives, importances):
        ax.set_title(f"for {_label(objective)}", fontsize="medium")
        if isinstance(result, str):
            _empty(ax, f"parameter importance {result}")
            continue
        items = sorted(result.items(), key=lambda kv: kv[1])
        ax.barh([_plain(k) for k, _ in items], [v for _, v in items], color="tab:purple")
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA, sums to 1)")
        ax.tick_params(axis="y", labelsize="small")
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(_plain(f"{search.name}: parameter importance"))
    return _save(figure, path)


def learning_curves(search: SearchRecord, path: Path) -> Path:
    """The primary objective per epoch for the best trials (finished or stopped, as for the best
    trial: a failed or running trial's value is no best); a dot marks each one's best epoch."""
    objective = search.objectives[0]
    figure = _figure(7, 4.5)
    ax = figure.subplots()
    top = [t for t in scored(ranked(search)) if t.curve][:_TOP_CURVES]
    if not top:
        _empty(ax, "no finished or stopped trial has logged an epoch yet")
    for trial in top:
        epochs = [e for e, _ in trial.curve]
        values = [v for _, v in trial.curve]
        label = _plain(f"{trial.trial_id} ({_losses(trial)}, {trial.state.lower()})")
        (line,) = ax.plot(epochs, values, marker=".", label=label)
        ax.scatter([trial.best_epoch], [trial.values[0]], s=60, color=line.get_color(), zorder=3)
    if top:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_ylabel(_label(objective))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="best")
    figure.suptitle(_plain(f"{search.name}: learning curves of the {len(top)} best trials"))
    return _save(figure, path)


def pareto_set(search: SearchRecord) -> list[TrialRecord]:
    """The finished trials no other finished trial is at least as good as in every objective and
    better in one (``search.ranking``). Trials stopped early are left out: fewer epochs look cheap
    in a cost objective such as energy."""
    return ranking.pareto_set(search.trials, [o.mode for o in search.objectives])


def _weight(value: float) -> str:
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


def front_label(trial: TrialRecord) -> str:
    """A front point's label: the trial id, and its energy weight where the trial has one
    (``t0003 ew=1e-03``): along an accuracy/energy front the weight is what moved the trial."""
    if ENERGY_WEIGHT not in trial.params:
        return trial.trial_id
    return f"{trial.trial_id} ew={_weight(trial.params[ENERGY_WEIGHT])}"


def pareto_front(search: SearchRecord, path: Path) -> Path:
    """The first two objectives of a multi-objective search: the finished and stopped trials, with
    the Pareto set (finished trials only) joined and labelled by ``front_label``."""
    first, second = search.objectives[0], search.objectives[1]
    figure = _figure(6.5, 5)
    ax = figure.subplots()
    scored = [
        t for t in search.trials if t.state in ranking.SCORED_STATES and t.values[0] is not None and t.values[1] is not None
    ]
    front = pareto_set(search)
    if not scored:
        _empty(ax, "no finished or stopped trial has a value of both objectives yet")
    else:
        for state in ranking.SCORED_STATES:
            drawn = [t for t in scored if t.state == state]
            if drawn:
                ax.scatter([t.values[0] for t in drawn], [t.values[1] for t in drawn], s=24,
                           color=_STATE_COLORS[state], alpha=0.6, label=state.lower())
        ordered = sorted(front, key=lambda t: t.values[0])
        ax.plot([t.values[0] for t in ordered], [t.values[1] for t in ordered], marker="o", color="tab:red",
                label="Pareto set (finished trials)")
        for i, t in enumerate(ordered):  # neighbours on the front alternate above and below it
            ax.annotate(_plain(front_label(t)), (t.values[0], t.values[1]), xytext=(4, 4 if i % 2 else -10),
                        textcoords="offset points", fontsize="x-small")
        ax.set_xlabel(_label(first))
        ax.set_ylabel(_label(second))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    extra = f" (of {len(search.objectives)} objectives)" if len(search.objectives) > 2 else ""
    figure.suptitle(_plain(f"{search.name}: Pareto front{extra}"))
    return _save(figure, path)
