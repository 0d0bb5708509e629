"""The Pareto table and figure of a multi-objective report, on hand-made trial records (no MLflow)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from search.report import (
    MARKER,
    PARETO_FIGURE,
    PARETO_TABLE,
    Objective,
    ReportError,
    SearchRecord,
    TrialRecord,
    front_label,
    log_report,
    write_report,
)
from search.report import _plots

ACC, ENERGY = "val/acc_mean", "val/energy"


def _trial(trial_id: str, state: str, acc: float | None, energy: float | None, **params: Any) -> TrialRecord:
    scored = acc is not None
    return TrialRecord(
        trial_id=trial_id,
        run_id=f"run-{trial_id}",
        state=state,
        losses={"digit": "ce"},
        params={"train.threads": 1, "model.kind": "mlp", "heads.digit.loss": "ce", **params},
        epochs=3 if scored else 0,
        best_epoch=2 if scored else None,
        values=(acc, energy),
        heads={"digit": {"acc": acc} if scored else {}},
        curve=((1, acc - 0.1), (2, acc), (3, acc - 0.05)) if scored else (),
        start_time=int(trial_id[1:]),
        error=None if state != "FAILED" else "boom",
    )


# acc (max) and energy (min) at the best epoch. By hand: t02 dominates t03 (better in both);
# t07 ties t02 exactly, so neither dominates the other; t05 would dominate all, but it stopped
# early and only finished trials make the front; t06 failed before an epoch.
TRIALS = [
    _trial("t01", "FINISHED", 0.90, 0.50, energy_weight=0.0, **{"train.lr": 0.01}),
    _trial("t02", "FINISHED", 0.80, 0.20, energy_weight=1e-3, **{"train.lr": 0.002}),
    _trial("t03", "FINISHED", 0.70, 0.30, energy_weight=1e-4, **{"train.lr": 0.003}),
    _trial("t04", "FINISHED", 0.60, 0.05, energy_weight=1e-2, **{"train.lr": 0.004}),
    _trial("t05", "STOPPED", 0.95, 0.01, energy_weight=1e-2, **{"train.lr": 0.005}),
    _trial("t06", "FAILED", None, None, energy_weight=6.594e-4, **{"train.lr": 0.006}),
    _trial("t07", "FINISHED", 0.80, 0.20, energy_weight=1e-3, **{"train.lr": 0.007}),
]
FRONT = ["t01", "t02", "t07", "t04"]  # best acc first; the t02/t07 tie by trial id
OTHERS = ["t03", "t05"]
FRONT_LABELS = {"t01 ew=0", "t02 ew=1e-03", "t07 ew=1e-03", "t04 ew=1e-02"}


def _search(trials: list[TrialRecord], objectives: tuple[Objective, ...]) -> SearchRecord:
    return SearchRecord(
        tracking_uri="sqlite:///nowhere.db",
        experiment_id="1",
        experiment="pareto",
        search_id="pareto-0",
        name="pareto",
        parent_run_id="parent",
        status="FINISHED",
        objectives=objectives,
        heads=("digit",),
        trials=trials,
    )


TWO = (Objective(ACC, "max"), Objective(ENERGY, "min"))


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _dominates(a: dict[str, str], b: dict[str, str]) -> bool:
    # acc is maximised, energy minimised.
    better_or_equal = float(a[ACC]) >= float(b[ACC]) and float(a[ENERGY]) <= float(b[ENERGY])
    strictly = float(a[ACC]) > float(b[ACC]) or float(a[ENERGY]) < float(b[ENERGY])
    return better_or_equal and strictly


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    return write_report(_search(TRIALS, TWO), tmp_path_factory.mktemp("pareto"))


def test_pareto_csv_lists_every_scored_trial_front_first(report):
    columns, rows = _read(report.out_dir / PARETO_TABLE)
    # energy_weight once (it also varies), then the varied parameters; constant and hidden keys
    # (model.kind, train.threads) and the loss switch are no columns.
    assert columns == ["trial_id", "state", ACC, ENERGY, "energy_weight", "train.lr", "pareto"]
    assert [r["trial_id"] for r in rows] == FRONT + OTHERS  # t06 has no value: no row
    assert {r["trial_id"]: r["pareto"] for r in rows} == {t: str(t in FRONT) for t in FRONT + OTHERS}
    by_id = {r["trial_id"]: r for r in rows}
    assert by_id["t05"]["state"] == "STOPPED" and by_id["t03"]["state"] == "FINISHED"
    assert (float(by_id["t04"][ACC]), float(by_id["t04"][ENERGY])) == (0.60, 0.05)
    assert (float(by_id["t02"]["energy_weight"]), float(by_id["t02"]["train.lr"])) == (1e-3, 0.002)
    assert float(by_id["t01"]["energy_weight"]) == 0.0
    assert sorted(t.trial_id for t in report.pareto) == sorted(FRONT)


def test_the_csv_front_is_non_dominated_and_dominates_the_other_finished_trials(report):
    _, rows = _read(report.out_dir / PARETO_TABLE)
    finished = [r for r in rows if r["state"] == "FINISHED"]
    front = [r for r in finished if r["pareto"] == "True"]
    assert len(front) == len(FRONT)
    for member in front:
        assert not any(_dominates(other, member) for other in finished), member["trial_id"]
    for rest in (r for r in finished if r["pareto"] == "False"):
        assert any(_dominates(member, rest) for member in front), rest["trial_id"]
    # The stopped trial dominates every front member; the front leaves it out on purpose.
    (stopped,) = [r for r in rows if r["state"] == "STOPPED"]
    assert stopped["pareto"] == "False" and all(_dominates(stopped, m) for m in front)


def test_the_csv_is_a_file_of_the_report_named_in_the_markdown_and_uploaded(report):
    assert report.out_dir / PARETO_TABLE in report.files
    assert f"[{PARETO_TABLE}]({PARETO_TABLE})" in (report.out_dir / "report.md").read_text()

    class Client:
        def __init__(self) -> None:
            self.logged: list[str] = []

        def log_artifact(self, run_id: str, path: str, *, artifact_path: str) -> None:
            self.logged.append(Path(path).name)

        def get_run(self, run_id: str) -> Any:
            return type("Run", (), {"info": type("Info", (), {"artifact_uri": "file:///a"})})

    client = Client()
    log_report(client, report)
    assert PARETO_TABLE in client.logged and PARETO_FIGURE in client.logged


def test_a_single_objective_report_writes_no_pareto_table(tmp_path: Path):
    single = [TrialRecord(**{**vars(t), "values": t.values[:1]}) for t in TRIALS]
    report = write_report(_search(single, TWO[:1]), tmp_path)
    assert not (tmp_path / PARETO_TABLE).exists() and not (tmp_path / PARETO_FIGURE).exists()
    assert tmp_path / PARETO_TABLE not in report.files
    assert PARETO_TABLE not in (tmp_path / "report.md").read_text()


def test_front_label_names_the_trial_and_its_energy_weight():
    by_id = {t.trial_id: t for t in TRIALS}
    assert front_label(by_id["t01"]) == "t01 ew=0"
    assert front_label(by_id["t02"]) == "t02 ew=1e-03"
    assert front_label(by_id["t06"]) == "t06 ew=6.59e-04"
    static = TrialRecord(**{**vars(by_id["t02"]), "params": {"train.lr": 0.002}})
    assert front_label(static) == "t02"


def _drawn(search: SearchRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The axes of the Pareto figure ``pareto_front`` draws (saved as usual)."""
    figures = []
    save = _plots._save
    monkeypatch.setattr(_plots, "_save", lambda figure, path: figures.append(figure) or save(figure, path))
    _plots.pareto_front(search, tmp_path / PARETO_FIGURE)
    (ax,) = figures[0].axes
    return ax


def test_the_figure_draws_finished_and_stopped_trials_and_labels_the_front(tmp_path: Path, monkeypatch):
    ax = _drawn(_search(TRIALS, TWO), tmp_path, monkeypatch)
    assert {a.get_text() for a in ax.texts} == FRONT_LABELS
    points = {tuple(p) for c in ax.collections for p in c.get_offsets().tolist()}
    drawn = {(t.values[0], t.values[1]) for t in TRIALS if t.state in ("FINISHED", "STOPPED")}
    assert points == drawn  # the stopped t05 included, the failed t06 (no values) not
    (line,) = ax.lines
    assert sorted(zip(line.get_xdata(), line.get_ydata())) == sorted(
        (t.values[0], t.values[1]) for t in TRIALS if t.trial_id in FRONT
    )


def test_a_search_without_energy_weight_labels_the_front_by_trial_id(tmp_path: Path, monkeypatch):
    static = [TrialRecord(**{**vars(t), "params": {"train.lr": t.params["train.lr"]}}) for t in TRIALS]
    ax = _drawn(_search(static, TWO), tmp_path, monkeypatch)
    assert {a.get_text() for a in ax.texts} == set(FRONT)
    write_report(_search(static, TWO), tmp_path / "report")
    columns, _ = _read(tmp_path / "report" / PARETO_TABLE)
    assert columns == ["trial_id", "state", ACC, ENERGY, "train.lr", "pareto"]


def test_a_second_report_of_the_same_search_replaces_its_files_and_removes_stale_ones(tmp_path: Path):
    first = write_report(_search(TRIALS, TWO), tmp_path)
    assert (tmp_path / PARETO_TABLE).is_file() and (tmp_path / PARETO_FIGURE).is_file()
    # The same search (same id) reported with one objective: no Pareto files may stay beside it.
    single = [TrialRecord(**{**vars(t), "values": t.values[:1]}) for t in TRIALS]
    second = write_report(_search(single, TWO[:1]), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in second.files} | {MARKER}
    assert not (tmp_path / PARETO_TABLE).exists() and not (tmp_path / PARETO_FIGURE).exists()
    assert set(first.files) > set(second.files)


def test_a_folder_holding_another_searchs_report_or_other_files_is_refused_untouched(tmp_path: Path):
    write_report(_search(TRIALS, TWO), tmp_path / "taken")
    before = {p.name: p.read_bytes() for p in (tmp_path / "taken").iterdir()}
    other = dataclasses.replace(_search(TRIALS, TWO), search_id="pareto-1")
    with pytest.raises(ReportError, match=f"but got {tmp_path / 'taken'}, which holds the report of search pareto-0"):
        write_report(other, tmp_path / "taken")
    assert {p.name: p.read_bytes() for p in (tmp_path / "taken").iterdir()} == before

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("my notes")
    with pytest.raises(ReportError, match=f"but got {tmp_path / 'mine'}, which holds other files: notes.md"):
        write_report(other, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.md"]


def test_a_report_written_before_the_marker_is_taken_over_by_its_own_search_only(tmp_path: Path):
    write_report(_search(TRIALS, TWO), tmp_path)
    (tmp_path / MARKER).unlink()  # as an earlier version left it: report.txt names the search
    other = dataclasses.replace(_search(TRIALS, TWO), search_id="pareto-1")
    with pytest.raises(ReportError, match=f"which holds report files of no known search \\(no {MARKER}\\)"):
        write_report(other, tmp_path)
    write_report(_search(TRIALS, TWO), tmp_path)
    assert json.loads((tmp_path / MARKER).read_text())["search_id"] == "pareto-0"


def test_dollar_signs_in_names_from_mlflow_are_drawn_as_text(tmp_path: Path, monkeypatch):
    # matplotlib reads "$...$" as mathtext and raised ValueError on "\frac" without arguments.
    odd = "$\\frac$"
    trials = [
        TrialRecord(
            **{
                **vars(t),
                "trial_id": f"{t.trial_id} {odd}",
                "losses": {"digit": f"ce {odd}"},
                "params": {**t.params, f"train.lr{odd}": t.params["train.lr"]},
            }
        )
        for t in TRIALS
    ]
    objectives = (Objective(f"{ACC} {odd}", "max"), TWO[1])
    search = dataclasses.replace(_search(trials, objectives), name=f"lr sweep {odd} v2", heads=("digit",))
    figures = []
    save = _plots._save
    monkeypatch.setattr(_plots, "_save", lambda figure, path: figures.append(figure) or save(figure, path))
    report = write_report(search, tmp_path)
    assert {p.name for p in report.files} >= {"objective.png", "learning_curves.png", PARETO_FIGURE}
    shown = [figure.get_suptitle() for figure in figures]
    assert "lr sweep \\$\\frac\\$ v2: objective per trial (at each trial's best epoch)" in shown
    pareto = figures[-1].axes[0]
    assert "t01 \\$\\frac\\$ ew=0" in {a.get_text() for a in pareto.texts}
