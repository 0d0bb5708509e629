"""Assemble a search's report: tables (text, Markdown, CSV), figures, and their upload to MLflow."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search import ranking
from search.report import _plots
from search.report._importance import importance_trials, parameter_importance
from search.report._load import Objective, ReportError, SearchRecord, TrialRecord
from search.tracking import redact_uri
from search.report._tables import (
    Table,
    compares_weighting,
    loss_type_table,
    markdown_text,
    pareto_table,
    shown_text,
    trial_table,
    weighting_table,
)

__all__ = [
    "ARTIFACT_PATH",
    "FIGURES",
    "MARKER",
    "PARETO_FIGURE",
    "PARETO_TABLE",
    "WEIGHTING_FIGURE",
    "WEIGHTING_TABLE",
    "Report",
    "check_out_folder",
    "log_report",
    "write_report",
]

ARTIFACT_PATH = "report"  # the folder of the parent run's artifacts the report goes to
FIGURES = ("objective.png", "loss_types.png", "importance.png", "learning_curves.png")
PARETO_FIGURE = "pareto.png"
PARETO_TABLE = "pareto.csv"  # multi-objective searches only, like the figure
WEIGHTING_FIGURE = "weighting.png"
WEIGHTING_TABLE = "weighting.csv"  # searches whose trials ran more than one weighting strategy, like the figure
_TABLES = ("trials.csv", "loss_types.csv", "importance.csv", "report.txt", "report.md")
# Every file a report may write: a rewrite removes those it no longer writes (a pareto.csv of an
# earlier multi-objective report of the same search), and a folder holding other files is refused.
REPORT_FILES = frozenset((*_TABLES, *FIGURES, PARETO_FIGURE, PARETO_TABLE, WEIGHTING_FIGURE, WEIGHTING_TABLE))
# Which search a folder's report is of: two searches of one name default to the same folder, and
# the second must not overwrite the first's report.
MARKER = "losstune-report.json"


@dataclass(frozen=True)
class Report:
    search: SearchRecord
    trials: Table
    loss_types: Table
    weighting: Table | None  # searches that compare weighting strategies only
    importances: tuple[dict[str, float] | str, ...]  # per objective: importances or why none
    pareto: tuple[TrialRecord, ...]  # multi-objective searches only
    out_dir: Path
    files: tuple[Path, ...]
    text: str  # what the terminal shows


def _counts(search: SearchRecord) -> str:
    counts: dict[str, int] = {}
    for trial in search.trials:
        counts[trial.state] = counts.get(trial.state, 0) + 1
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "none yet"


def _identity(search: SearchRecord) -> str:
    """How report.txt's first line names the search (reports from before the marker are known by it)."""
    return f"({search.search_id}), run {search.parent_run_id}"


def _ended_by(search: SearchRecord) -> str:
    """A search ended by its time budget finished as one that ran every trial does; the report says which."""
    return ", ended by its time budget" if search.end_reason == "time_budget" else ""


def _header(search: SearchRecord) -> list[str]:
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in search.objectives)
    modes = [o.mode for o in search.objectives]
    lines = [
        f"search: {search.name} {_identity(search)}, status {search.status.lower()}{_ended_by(search)}",
        f"MLflow: {redact_uri(search.tracking_uri)}, experiment {search.experiment!r} (id {search.experiment_id})",
        f"objective: {objectives}",
        f"trials: {len(search.trials)} ({_counts(search)})",
        ranking.best_line(ranking.best_trial(search.trials, modes), search.objectives[0].metric),
    ]
    return [shown_text(line) for line in lines]


def _importance_lines(search: SearchRecord, importances: tuple[dict[str, float] | str, ...]) -> list[str]:
    lines = []
    for objective, result in zip(search.objectives, importances):
        if isinstance(result, str):
            lines.append(f"parameter importance for {objective.metric}: {result}")
        else:
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(result.items())[:6])
            lines.append(f"parameter importance for {objective.metric} ({_importance_basis(search, objective)}): {top}")
    return [shown_text(line) for line in lines]


def _importance_basis(search: SearchRecord, objective: Objective) -> str:
    """What the importances rest on: how many trials, and how many of them a scheduler stopped
    (their values come from fewer epochs than the finished trials')."""
    trials = importance_trials(search, objective=search.objectives.index(objective))
    stopped = sum(t.state == "STOPPED" for t in trials)
    fewer = f", {stopped} of them stopped early: values after fewer epochs" if stopped else ""
    return f"fANOVA over {len(trials)} trials{fewer}"


def _pareto_lines(search: SearchRecord, pareto: tuple[TrialRecord, ...]) -> list[str]:
    if len(search.objectives) < 2:
        return []
    names = [o.metric for o in search.objectives]
    rows = [
        shown_text(f"  {t.trial_id}: " + ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values))
                   + f"  ({t.state.lower()})")
        for t in pareto
    ]
    return ["Pareto set (trials no other one equals or beats in every objective, beating it in one):", *(rows or [_no_front(search)])]


def _no_front(search: SearchRecord) -> str:
    """Why the Pareto set is empty: no finished trial has every objective (any that had would make
    a front), so every trial the Pareto table lists is a stopped one the set leaves out."""
    left_out = len(pareto_table(search, front=()).rows)
    if not left_out:
        return "  (no finished trial has every objective yet)"
    return (
        f"  (no trial finished with every objective; {left_out} stopped trial(s) with every objective, "
        f"listed in {PARETO_TABLE}, are left out: fewer epochs look cheap in a cost objective)"
    )


def _importance_csv(search: SearchRecord, importances: tuple[dict[str, float] | str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["objective", "parameter", "importance"])
    for objective, result in zip(search.objectives, importances):
        if not isinstance(result, str):
            writer.writerows([objective.metric, k, v] for k, v in result.items())
    return out.getvalue()


def _markdown(
    search: SearchRecord,
    *,
    trials: Table,
    loss_types: Table,
    weighting: Table | None,
    importance: list[str],
    pareto: list[str],
    figures: list[str],
) -> str:
    lines = [f"# Search report: {markdown_text(search.name)}", "",
             *(f"- {markdown_text(line)}" for line in _header(search)), ""]
    lines += ["## Trials", "", "Objective and head metrics at each trial's best epoch; best first.", ""]
    lines += [trials.to_markdown(), ""]
    lines += ["## Loss types per head", "", loss_types.to_markdown(), ""]
    if weighting is not None:
        lines += ["## Weighting strategies", "", weighting.to_markdown(), ""]
    lines += ["## Parameter importance", "", *(f"- {markdown_text(line)}" for line in importance), ""]
    if pareto:
        lines += ["## Pareto set", "", "```", *pareto, "```", ""]
        lines += [
            f"[{PARETO_TABLE}]({PARETO_TABLE}): every trial with a value of each objective, the Pareto set "
            "first (column `pareto`), with the energy weight where trials have one and the parameters that vary.",
            "",
        ]
    lines += ["## Figures", "", *(f"![{name}]({name})" for name in figures)]
    return "\n".join(lines) + "\n"


def _marker_search_id(out_dir: Path) -> str | None:
    """The search id ``out_dir``'s marker names; None when it has no readable one."""
    try:
        marker = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    search_id = marker.get("search_id") if isinstance(marker, dict) else None
    return search_id if isinstance(search_id, str) else None


def _earlier_report_of(out_dir: Path, search: SearchRecord) -> bool:
    """Whether ``out_dir`` holds a report of ``search`` written before the marker existed: its
    report.txt starts with the header line naming the search id and parent run."""
    try:
        first = (out_dir / "report.txt").read_text(encoding="utf-8").partition("\n")[0]
    except (OSError, UnicodeDecodeError):
        return False
    return first.startswith("search: ") and f"{_identity(search)}," in first


def check_out_folder(out_dir: Path) -> None:
    """Refuse ``out_dir`` (ReportError) where no report of any search may go: a file, or a folder
    holding files a report does not write. Needs no search: checked before one is read."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"a folder for the report, but got {out_dir}, which is a file")
    _refuse_other_files(out_dir, "a folder that is empty or holds a report and nothing else")


def _refuse_other_files(out_dir: Path, rule: str) -> None:
    others = sorted({p.name for p in out_dir.iterdir()} - REPORT_FILES - {MARKER}) if out_dir.is_dir() else []
    if others:
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise ReportError(f"{rule}, but got {out_dir}, which holds other files: {', '.join(others[:5])}{more}")


def _check_folder(out_dir: Path, search: SearchRecord) -> None:
    """Refuse ``out_dir`` (ReportError) unless it is new, empty, or holds a report of ``search``
    and nothing else: a report never overwrites another search's report or other files."""
    if not out_dir.is_dir():
        return  # new (or a file: creating the folder raises OSError, which the caller reports)
    present = {p.name for p in out_dir.iterdir()}
    if not present:
        return
    rule = f"a folder that is empty or holds a report of search {search.search_id} and nothing else"
    holder = _marker_search_id(out_dir) if MARKER in present else None
    if holder is not None and holder != search.search_id:
        raise ReportError(f"{rule}, but got {out_dir}, which holds the report of search {holder}")
    _refuse_other_files(out_dir, rule)
    if holder is None and not _earlier_report_of(out_dir, search):
        raise ReportError(f"{rule}, but got {out_dir}, which holds report files of no known search (no {MARKER})")


def _write_marker(out_dir: Path, search: SearchRecord) -> None:
    marker = {"search_id": search.search_id, "name": search.name, "parent_run_id": search.parent_run_id}
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _remove_stale(out_dir: Path, written: list[Path]) -> None:
    """Remove the report files an earlier report of the same search wrote and this one does not."""
    for name in sorted(REPORT_FILES - {p.name for p in written}):
        (out_dir / name).unlink(missing_ok=True)


def write_report(search: SearchRecord, out_dir: Path) -> Report:
    """Write the tables and figures of ``search`` into ``out_dir`` (created), with a marker naming
    the search. A folder with an earlier report of the same search gets its files replaced (those
    this report does not write removed); one holding anything else raises ReportError."""
    _check_folder(out_dir, search)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The marker first: a report interrupted midway still says whose files these are.
    _write_marker(out_dir, search)
    report = _build(search, out_dir)
    _remove_stale(out_dir, list(report.files))
    return report


def _build(search: SearchRecord, out_dir: Path) -> Report:
    trials = trial_table(search)
    losses = loss_type_table(search)
    weighting = weighting_table(search) if compares_weighting(search) else None
    importances = tuple(parameter_importance(search, objective=i) for i in range(len(search.objectives)))
    pareto = tuple(_plots.pareto_set(search)) if len(search.objectives) > 1 else ()

    figures = [
        _plots.objective_by_trial(search, out_dir / "objective.png"),
        _plots.loss_type_boxes(search, out_dir / "loss_types.png"),
        _plots.importance_bars(search, importances, out_dir / "importance.png"),
        _plots.learning_curves(search, out_dir / "learning_curves.png"),
    ]
    if len(search.objectives) > 1:
        figures.append(_plots.pareto_front(search, out_dir / PARETO_FIGURE))
    if weighting is not None:
        figures.append(_plots.weighting_boxes(search, out_dir / WEIGHTING_FIGURE))

    importance_lines = _importance_lines(search, importances)
    pareto_lines = _pareto_lines(search, pareto)
    text = "\n\n".join(
        [
            "\n".join(_header(search)),
            trial_table(search, compact=True).to_text(),
            losses.to_text(),
            *([weighting.to_text()] if weighting is not None else []),
            "\n".join(importance_lines + ([""] if pareto_lines else []) + pareto_lines),
        ]
    )
    files = {
        "trials.csv": trials.to_csv(),
        "loss_types.csv": losses.to_csv(),
        "importance.csv": _importance_csv(search, importances),
        "report.txt": text + "\n",
        "report.md": _markdown(
            search,
            trials=trials,
            loss_types=losses,
            weighting=weighting,
            importance=importance_lines,
            pareto=pareto_lines,
            figures=[f.name for f in figures],
        ),
    }
    if len(search.objectives) > 1:
        files[PARETO_TABLE] = pareto_table(search, front=pareto).to_csv()
    if weighting is not None:
        files[WEIGHTING_TABLE] = weighting.to_csv()
    written = []
    for name, content in files.items():
        (out_dir / name).write_text(content, encoding="utf-8")
        written.append(out_dir / name)
    return Report(
        search=search,
        trials=trials,
        loss_types=losses,
        weighting=weighting,
        importances=importances,
        pareto=pareto,
        out_dir=out_dir,
        files=tuple(written + figures),
        text=text,
    )


def log_report(client: Any, report: Report) -> str:
    """Upload the report's files as artifacts of the search's parent run (under ``report/``);
    a later report replaces them. Returns the artifact URI."""
    run_id = report.search.parent_run_id
    for path in report.files:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_PATH)
    return f"{client.get_run(run_id).info.artifact_uri}/{ARTIFACT_PATH}"
