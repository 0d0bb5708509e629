"""The report's comparison of weighting strategies (weighting.csv, weighting.png): on hand-made trial
records with known values, and on a search read back from MLflow whose trials log ``weights/<head>``."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from search.report import (
    WEIGHTING_FIGURE,
    WEIGHTING_STRATEGY,
    WEIGHTING_TABLE,
    WEIGHTS_PREFIX,
    Objective,
    SearchRecord,
    TrialRecord,
    _plots,
    load_search,
    open_store,
    weighting_table,
    write_report,
)
from trainables.flat_keys import FlatKey

ACC = "val/acc_mean"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trial(
    trial_id: str, strategy: str | None, acc: float | None, weights: dict[str, float], *, state: str = "FINISHED"
) -> TrialRecord:
    scored = acc is not None
    params: dict[str, Any] = {"train.lr": 0.01, "heads.digit.loss": "ce", "heads.thickness.loss": "ordinal"}
    if strategy is not None:
        params[WEIGHTING_STRATEGY] = strategy
    return TrialRecord(
        trial_id=trial_id,
        run_id=f"run-{trial_id}",
        state=state,
        losses={"digit": "ce", "thickness": "ordinal"},
        params=params,
        epochs=3 if scored else 0,
        best_epoch=2 if scored else None,
        values=(acc,),
        heads={"digit": {"acc": acc} if scored else {}, "thickness": {}},
        curve=((1, acc - 0.1), (2, acc)) if scored else (),
        start_time=len(trial_id),
        weights=weights,
    )


def _w(digit: float, thickness: float) -> dict[str, float]:
    return {"digit": digit, "thickness": thickness}


# The primary objective at the best epoch and the last effective weights, by strategy:
#   fixed:  0.70, 0.60, 0.50               weights digit 1, 1, 1        thickness 1, 1, 0.5
#   dwa:    0.90, 0.80, failed (no value, no weight)   digit 1.4, 1.2   thickness 0.6, 0.8
#   pcgrad: 0.65, 0.75                     digit 1, 2                   thickness 1, 1
# "old" has no weighting key (a run from before strategies): it is in no strategy's group.
TRIALS = [
    _trial("f1", "fixed", 0.70, _w(1.0, 1.0)),
    _trial("d1", "dwa", 0.80, _w(1.2, 0.8)),
    _trial("p1", "pcgrad", 0.65, _w(1.0, 1.0)),
    _trial("f2", "fixed", 0.60, _w(1.0, 1.0)),
    _trial("d2", "dwa", 0.90, _w(1.4, 0.6)),
    _trial("f3", "fixed", 0.50, _w(1.0, 0.5)),
    _trial("d3", "dwa", None, {}, state="FAILED"),
    _trial("p2", "pcgrad", 0.75, _w(2.0, 1.0)),
    _trial("old", None, 0.99, _w(5.0, 5.0)),
]
# strategy -> (trials, scored, best, median, mean digit weight, mean thickness weight), best first.
EXPECTED = {
    "dwa": (3, 2, 0.90, 0.85, 1.3, 0.7),
    "pcgrad": (2, 2, 0.75, 0.70, 1.5, 1.0),
    "fixed": (3, 3, 0.70, 0.60, 1.0, 2.5 / 3),
}
COLUMNS = ["strategy", "trials", "scored", f"best {ACC}", f"median {ACC}"] + [
    "mean weights/digit", "mean weights/thickness"
]


def _search(trials: list[TrialRecord], objectives: tuple[Objective, ...] = (Objective(ACC, "max"),)) -> SearchRecord:
    return SearchRecord(
        tracking_uri="sqlite:///nowhere.db",
        experiment_id="1",
        experiment="weighting",
        search_id="weighting-0",
        name="weighting",
        parent_run_id="parent",
        status="FINISHED",
        objectives=objectives,
        heads=("digit", "thickness"),
        trials=trials,
    )


def _capture(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """file name -> figure, of every figure saved from now on (saved as usual)."""
    figures: dict[str, Any] = {}
    save = _plots._save

    def keep(figure: Any, path: Path) -> Path:
        figures[path.name] = figure
        return save(figure, path)

    monkeypatch.setattr(_plots, "_save", keep)
    return figures


@pytest.fixture
def drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    figures = _capture(monkeypatch)
    return write_report(_search(TRIALS), tmp_path), figures


def _approx(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(pytest.approx(v) if isinstance(v, float) else v for v in row)


def test_the_table_counts_and_scores_each_strategy_best_first():
    table = weighting_table(_search(TRIALS))
    assert list(table.columns) == COLUMNS
    assert [row[0] for row in table.rows] == list(EXPECTED)
    for row in table.rows:
        assert row[1:] == _approx(EXPECTED[row[0]]), row[0]


def test_a_minimised_objective_takes_the_lowest_value_as_best():
    lowest = (Objective("val/loss", "min"),)
    table = weighting_table(_search(TRIALS, lowest))
    rows = {row[0]: row for row in table.rows}
    # fixed 0.5, pcgrad 0.65, dwa 0.8: the smallest of each group, and that order.
    assert [row[0] for row in table.rows] == ["fixed", "pcgrad", "dwa"]
    assert (rows["fixed"][3], rows["pcgrad"][3], rows["dwa"][3]) == (0.50, 0.65, 0.80)
    assert rows["dwa"][4] == pytest.approx(0.85)  # the median does not depend on the mode


def test_only_the_primary_objective_is_compared_and_weightless_heads_have_no_column():
    two = (Objective(ACC, "max"), Objective("val/energy", "min"))
    trials = [TrialRecord(**{**vars(t), "values": (t.values[0], 1.0), "weights": {}}) for t in TRIALS]
    trials[0] = TrialRecord(**{**vars(trials[0]), "weights": {"digit": 3.0}})
    table = weighting_table(_search(trials, two))
    assert list(table.columns) == [*COLUMNS[:5], "mean weights/digit"]
    assert table.column("mean weights/digit") == [None, None, 3.0]  # only f1 (fixed) logged one


def test_the_csv_and_both_reports_hold_the_table(drawn):
    report, _ = drawn
    assert report.out_dir / WEIGHTING_TABLE in report.files
    with (report.out_dir / WEIGHTING_TABLE).open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == COLUMNS
        rows = list(reader)
    assert [r[0] for r in rows] == list(EXPECTED)
    for r in rows:
        assert (int(r[1]), int(r[2]), *map(float, r[3:])) == _approx(EXPECTED[r[0]]), r[0]
    markdown = (report.out_dir / "report.md").read_text()
    assert "## Weighting strategies" in markdown and "| dwa | 3 | 2 | 0.9 | 0.85 | 1.3 | 0.7 |" in markdown
    assert f"![{WEIGHTING_FIGURE}]({WEIGHTING_FIGURE})" in markdown
    text = (report.out_dir / "report.txt").read_text()
    assert report.weighting.title in text and report.weighting.title in report.text


def test_the_figure_draws_each_strategy_best_first_with_its_trials(drawn):
    report, figures = drawn
    path = report.out_dir / WEIGHTING_FIGURE
    assert path in report.files and path.read_bytes()[:8] == PNG_SIGNATURE
    (ax,) = figures[WEIGHTING_FIGURE].axes
    assert [label.get_text() for label in ax.get_xticklabels()] == list(EXPECTED)
    by_box: dict[int, list[float]] = {}
    for collection in ax.collections:
        for x, y in collection.get_offsets().tolist():
            by_box.setdefault(round(x), []).append(y)
    assert {x: sorted(ys) for x, ys in by_box.items()} == {1: [0.8, 0.9], 2: [0.65, 0.75], 3: [0.5, 0.6, 0.7]}
    assert [a.get_text() for a in ax.texts] == ["n=2", "n=2", "n=3"]


def test_the_figure_orders_strategies_tied_in_their_best_value_as_the_table_does(tmp_path, monkeypatch):
    # Before: the table put ties in name order, the figure in the order the trials came
    figures = _capture(monkeypatch)
    trials = [_trial("u1", "uncertainty", 0.8, _w(1.0, 1.0)), _trial("p1", "pcgrad", 0.6, _w(1.0, 1.0)),
              _trial("d1", "dwa", 0.8, _w(1.0, 1.0)), _trial("d2", "dwa", 0.5, _w(1.0, 1.0))]
    report = write_report(_search(trials), tmp_path)
    (ax,) = figures[WEIGHTING_FIGURE].axes
    assert [label.get_text() for label in ax.get_xticklabels()] == [row[0] for row in report.weighting.rows] \
        == ["dwa", "uncertainty", "pcgrad"]


def test_the_loss_type_figure_still_draws_one_panel_per_head(drawn):
    _, figures = drawn
    digit, thickness = figures["loss_types.png"].axes
    assert (digit.get_title(), thickness.get_title()) == ("digit", "thickness")
    assert [label.get_text() for label in digit.get_xticklabels()] == ["ce"]
    # Every scored trial, the one without a strategy too: loss types do not depend on it.
    assert [a.get_text() for a in digit.texts] == [f"n={sum(t.values[0] is not None for t in TRIALS)}"]


@pytest.mark.parametrize(
    "strategies",
    [["dwa"] * 3, [None] * 3, ["dwa", None, "dwa"]],
    ids=["one strategy", "no strategy key", "one strategy and an old trial"],
)
def test_a_search_of_one_strategy_writes_neither_file(strategies, tmp_path: Path):
    trials = [_trial(f"t{i}", s, 0.5 + i / 10, _w(1.0, 1.0)) for i, s in enumerate(strategies)]
    report = write_report(_search(trials), tmp_path)
    assert report.weighting is None
    assert not (tmp_path / WEIGHTING_TABLE).exists() and not (tmp_path / WEIGHTING_FIGURE).exists()
    assert {p.name for p in report.files}.isdisjoint({WEIGHTING_TABLE, WEIGHTING_FIGURE})
    assert "Weighting strategies" not in (tmp_path / "report.md").read_text() + report.text


# --- read back from MLflow ---------------------------------------------------------------------


@dataclass(frozen=True)
class WeightedTrial:
    """A conftest toy trial that also ran a weighting strategy and logged its weights per epoch."""

    base: Any  # a ToyTrial (toy_parts.trials)
    strategy: str
    options: dict[str, float]  # the strategy's own parameters
    weights: tuple[dict[str, float], ...]  # per epoch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    @property
    def config(self) -> dict[str, Any]:
        section = FlatKey.parse(WEIGHTING_STRATEGY).section
        options = {str(FlatKey(section=section, name=k, option=self.strategy)): v for k, v in self.options.items()}
        return {**self.base.config, WEIGHTING_STRATEGY: self.strategy, **options}

    def epoch_metrics(self, epoch: int) -> dict[str, float]:
        logged = {f"{WEIGHTS_PREFIX}{head}": w for head, w in self.weights[epoch - 1].items()}
        return {**self.base.epoch_metrics(epoch), **logged}


class RecordingClient:
    """An MlflowClient that records the metric histories asked of it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.histories: list[str] = []

    def get_metric_history(self, run_id: str, key: str) -> Any:
        self.histories.append(key)
        return self.client.get_metric_history(run_id, key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _toy_weighted(trials: Any) -> list[WeightedTrial]:
    # The toy trials' objective at their best epoch: t0 0.7 (of 3 epochs), t1 0.55 (3), t4 0.8
    # (3), t2 0.3 (1, stopped early). t2's thickness weight diverged on its only epoch.
    t0, t1, t2, _, t4 = trials
    ones = _w(1.0, 1.0)
    return [
        WeightedTrial(t0, "fixed", {}, (ones, ones, ones)),
        WeightedTrial(t1, "dwa", {"temperature": 2.0}, (ones, _w(1.2, 0.8), _w(1.1, 0.9))),
        WeightedTrial(t4, "dwa", {"temperature": 1.0}, (ones, _w(0.7, 1.3), _w(0.6, 1.4))),
        WeightedTrial(t2, "uncertainty", {}, (_w(0.5, math.nan),)),
    ]


@pytest.fixture
def weighted(toy_store: Path, toy_parts, request: pytest.FixtureRequest) -> tuple[SearchRecord, RecordingClient]:
    """A finished toy search over three strategies, in the shared toy store under the test's name,
    loaded back through a RecordingClient."""
    name = f"weighted-{request.node.name.replace('_', '-')}"
    tracker = toy_parts.start(toy_store, name=name)
    for trial in _toy_weighted(toy_parts.trials):
        toy_parts.run(tracker, trial)
    tracker.end_search(end="finished")
    uri = f"sqlite:///{toy_store / 'mlflow.db'}"
    client = RecordingClient(open_store(uri))
    search, _ = load_search(client, tracking_uri=uri, selector=name)
    return search, client


def test_the_loader_reads_each_trials_last_weights_from_its_latest_metrics(weighted):
    search, client = weighted
    trials = {t.trial_id: t for t in search.trials}
    assert {t: trials[t].params[WEIGHTING_STRATEGY] for t in trials} == {
        "t0": "fixed", "t1": "dwa", "t4": "dwa", "t2": "uncertainty"
    }
    assert trials["t1"].params["weighting.dwa.temperature"] == 2.0
    assert trials["t0"].weights == {"digit": 1.0, "thickness": 1.0}
    assert trials["t1"].weights == {"digit": pytest.approx(1.1), "thickness": pytest.approx(0.9)}
    assert trials["t4"].weights == {"digit": pytest.approx(0.6), "thickness": pytest.approx(1.4)}
    assert trials["t2"].weights == {"digit": 0.5}  # the diverged (NaN) weight is left out
    # The weights cost no history request: the run's latest metrics hold them.
    assert ACC in client.histories
    assert not [key for key in client.histories if key.startswith(WEIGHTS_PREFIX)]


def test_a_search_read_from_mlflow_writes_the_comparison(weighted, tmp_path: Path):
    search, _ = weighted
    report = write_report(search, tmp_path)
    rows = {row[0]: row[1:] for row in report.weighting.rows}
    assert [row[0] for row in report.weighting.rows] == ["dwa", "fixed", "uncertainty"]
    assert rows["dwa"] == _approx((2, 2, 0.8, 0.675, 0.85, 1.15))
    assert rows["fixed"] == _approx((1, 1, 0.7, 0.7, 1.0, 1.0))
    assert rows["uncertainty"] == _approx((1, 1, 0.3, 0.3, 0.5, None))
    assert (tmp_path / WEIGHTING_TABLE).is_file() and (tmp_path / WEIGHTING_FIGURE).is_file()


def test_a_failed_or_running_trials_value_is_counted_but_not_scored():
    # d4 failed and r1 is running with values above dwa's best finished 0.90: neither is a best.
    late = [_trial("d4", "dwa", 0.99, _w(1.0, 1.0), state="FAILED"), _trial("r1", "dwa", 0.98, {}, state="RUNNING")]
    rows = {row[0]: row for row in weighting_table(_search([*TRIALS, *late])).rows}
    assert rows["dwa"][1:5] == _approx((5, 2, 0.90, 0.85))


def test_a_conditional_key_the_space_fixes_is_no_parameter_column(tmp_path):
    # before: `lr_schedule.cosine.total=3`, fixed wherever cosine was chosen, listed as if searched
    import dataclasses

    from search.report import trial_table
    from search.space import load_space

    base = {"train.lr": 0.01, "heads.digit.loss": "ce", "heads.thickness.loss": "ordinal"}
    ordinal = {**base, "heads.thickness.ordinal.alpha": 0.1, "heads.thickness.ordinal.distance": "l1"}
    trials = [dataclasses.replace(_trial("t1", None, 0.6, {}), params=ordinal),
              dataclasses.replace(_trial("t2", None, 0.7, {}), params={**base, "train.lr": 0.02,
                                                                        "heads.thickness.loss": "ce"})]
    space = tmp_path / "s.yaml"
    space.write_text("data: {kind: digits, limit: 200}\ntrain: {lr: {loguniform: [0.001, 0.1]}}\nheads:\n"
                     "  digit: {loss: ce}\n"
                     "  thickness: {loss: {choice: {ce: {}, ordinal: {alpha: {uniform: [0.05, 0.5]}, distance: l1}}}}\nobjective: {metric: val/acc_mean, mode: max}\n")
    searched = load_space(space).searched()
    assert "heads.thickness.ordinal.alpha" in searched and "heads.thickness.ordinal.distance" not in searched
    known = dataclasses.replace(_search(trials), dimensions=searched)
    # alpha is searched: shown, though one trial has it; distance is the space's constant of ordinal
    assert [c for c in trial_table(known).columns if c.startswith(("train.", "heads.thickness.ordinal"))] == \
        ["heads.thickness.ordinal.alpha", "train.lr"]
    # a search that logged no dimensions (an older one): every key that some trials lack, as before
    assert [c for c in trial_table(_search(trials)).columns if c.startswith(("train.", "heads.thickness.ordinal"))] == \
        ["heads.thickness.ordinal.alpha", "heads.thickness.ordinal.distance", "train.lr"]


def test_the_importance_line_says_how_many_trials_it_rests_on_and_how_many_were_stopped(tmp_path):
    # before: "(fANOVA): train.lr 0.64" from 5 trials, 4 of them stopped after 1 epoch of 3
    import dataclasses

    trials = [dataclasses.replace(_trial(f"t{i}", "fixed", 0.5 + 0.05 * i, {}, state="STOPPED" if i < 3 else "FINISHED"),
                                  params={"train.lr": 0.001 * (i + 1), "heads.digit.loss": "ce", "heads.thickness.loss": "ordinal"})
              for i in range(5)]
    report = write_report(_search(trials), tmp_path)
    assert "parameter importance for val/acc_mean (fANOVA over 5 trials, 3 of them stopped early: values after " \
           "fewer epochs): train.lr 1.00" in report.text


def test_the_report_says_a_search_ended_by_its_time_budget(tmp_path):
    # before: "status finished", as for a search that ran every trial (summary.txt said it)
    import dataclasses

    budget = write_report(dataclasses.replace(_search(TRIALS), end_reason="time_budget"), tmp_path / "a")
    assert "status finished, ended by its time budget\n" in budget.text
    whole = write_report(dataclasses.replace(_search(TRIALS), end_reason="finished"), tmp_path / "b")
    assert "status finished\n" in whole.text and "time budget" not in whole.text
