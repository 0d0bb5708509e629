"""``search report`` on SQLite stores holding searches with known values (see conftest.py)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import socket
import time
from pathlib import Path

import matplotlib.image
import pytest
from mlflow import MlflowClient

from search.__main__ import main
from search._shell import search_command
from search.report import FIGURES, MARKER, PARETO_FIGURE, PARETO_TABLE, load_search, open_store, write_report
from search.space import Choice, LogUniform

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _uri(store: Path) -> str:
    return f"sqlite:///{store / 'mlflow.db'}"


def _load(store: Path, selector: str | None):
    return load_search(open_store(_uri(store)), tracking_uri=_uri(store), selector=selector)[0]


def _rows(table) -> dict[str, dict[str, object]]:
    return {row[1]: dict(zip(table.columns, row)) for row in table.rows}


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, (path, image.shape)
    assert image.std() > 0.01, f"{path} is blank"


@pytest.fixture(scope="module")
def toy_report(toy_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """The finished toy search's report, written once for the tests that only read it."""
    return write_report(_load(toy_store, "toy"), tmp_path_factory.mktemp("report"))


def test_trial_table_has_losses_objective_head_metrics_epochs_and_state(toy_report):
    report, out = toy_report, toy_report.out_dir
    assert [o.metric for o in report.search.objectives] == ["val/acc_mean"]
    assert report.search.heads == ("digit", "thickness")
    rows = _rows(report.trials)
    # Best first; a trial's objective and head metrics are from its best epoch (t4: epoch 2 of 3).
    assert [row[1] for row in report.trials.rows] == ["t4", "t0", "t1", "t2", "t3"]
    t4 = rows["t4"]
    assert (t4["rank"], t4["state"], t4["epochs"], t4["best_epoch"]) == (1, "FINISHED", 3, 2)
    assert t4["val/acc_mean"] == pytest.approx(0.8)
    assert (t4["loss.digit"], t4["loss.thickness"]) == ("ce", "ordinal")
    assert t4["val/digit/acc"] == pytest.approx(0.9) and "val/digit/mae" not in t4  # categorical: no distance
    assert t4["val/thickness/acc"] == pytest.approx(0.7) and t4["val/thickness/mae"] == pytest.approx(0.2)
    assert t4["train.lr"] == 0.005 and t4["heads.thickness.ordinal.alpha"] == 0.2
    assert rows["t1"]["heads.thickness.ordinal.alpha"] is None  # t1 chose ce for thickness
    assert {t: rows[t]["state"] for t in ("t1", "t2", "t3")} == {"t1": "FINISHED", "t2": "STOPPED", "t3": "FAILED"}
    assert (rows["t2"]["epochs"], rows["t2"]["val/acc_mean"]) == (1, pytest.approx(0.3))
    # Constant settings and bookkeeping are no parameter columns.
    assert "heads.digit.weight" not in report.trials.columns and "train.threads" not in report.trials.columns

    # The CSV holds the same values.
    with (out / "trials.csv").open() as f:
        csv_rows = {r["trial"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["t4"]["val/acc_mean"]) == pytest.approx(0.8)
    # and each trial's MLflow run, which `search train --run` trains again
    assert {r["run_id"] for r in csv_rows.values()} == {t.run_id for t in report.search.trials}
    assert all(len(r["run_id"]) == 32 for r in csv_rows.values())
    assert csv_rows["t1"]["heads.thickness.ordinal.alpha"] == ""
    markdown = (out / "report.md").read_text()
    assert "| 1 | t4 | FINISHED | 3 | 2 | 0.8 | ce | ordinal |" in markdown


def test_loss_type_comparison_per_head(toy_report):
    report = toy_report
    table = {(row[0], row[1]): dict(zip(report.loss_types.columns, row)) for row in report.loss_types.rows}
    assert [row[:2] for row in report.loss_types.rows] == [
        ("digit", "ce"), ("digit", "focal"), ("thickness", "ordinal"), ("thickness", "ce")
    ]
    # digit/ce: t0 0.7, t2 0.3, t4 0.8 (objective at the best epoch); digit acc = objective + 0.1.
    ce = table[("digit", "ce")]
    assert (ce["trials"], ce["scored"]) == (3, 3)
    assert ce["best val/acc_mean"] == pytest.approx(0.8) and ce["median val/acc_mean"] == pytest.approx(0.7)
    assert ce["best acc"] == pytest.approx(0.9) and ce["median acc"] == pytest.approx(0.8)
    assert ce["best mae"] is None and ce["median mae"] is None  # a categorical head reports no mae
    focal = table[("digit", "focal")]  # t1 0.55; t3 0.2 failed after one epoch: counted, not scored
    assert (focal["trials"], focal["scored"]) == (2, 1)
    assert focal["best val/acc_mean"] == pytest.approx(0.55) and focal["median val/acc_mean"] == pytest.approx(0.55)
    thickness_ce = table[("thickness", "ce")]  # t1 0.55, t2 0.3; thickness mae = 1 - objective
    assert thickness_ce["median val/acc_mean"] == pytest.approx(0.425)
    assert thickness_ce["best mae"] == pytest.approx(0.45)


def test_figures_are_valid_pngs_and_importance_sums_to_one(toy_report):
    report = toy_report
    for name in FIGURES:
        _assert_png(report.out_dir / name)
    assert not (report.out_dir / PARETO_FIGURE).exists()  # one objective
    (importance,) = report.importances
    assert isinstance(importance, dict)
    # Loss parameters exist only in the trials that chose the loss: the loss switch is scored.
    assert set(importance) == {"train.lr", "heads.digit.loss", "heads.thickness.loss"}
    assert math.fsum(importance.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in importance.values())


def test_the_logged_dimensions_give_importance_its_scales(toy_store: Path):
    search = _load(toy_store, "toy")
    assert search.dimensions["train.lr"] == LogUniform(0.001, 0.03)
    assert search.dimensions["heads.digit.loss"] == Choice(("ce", "focal"))


def test_cli_writes_the_report_and_logs_it_to_the_parent_run(toy_store: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main(["report", "toy", "--tracking-uri", _uri(toy_store), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Trials of search 'toy'" in text and "Loss types per head" in text and "parameter importance" in text
    expected = {"report.md", "report.txt", "trials.csv", "loss_types.csv", "importance.csv", *FIGURES}
    assert {p.name for p in out.iterdir()} == {*expected, MARKER}  # the marker names the search; not uploaded
    client = MlflowClient(_uri(toy_store))
    parent = client.search_runs(
        [client.get_experiment_by_name("toy").experiment_id], filter_string="tags.`losstune.role` = 'search'"
    )[0]
    logged = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == expected


def test_multi_objective_report_has_the_pareto_front(toy_store: Path, tmp_path: Path, toy_search_factory):
    toy_search_factory(toy_store, name="multi", objectives=(("val/acc_mean", "max"), ("val/energy", "min")))
    report = write_report(_load(toy_store, "multi"), tmp_path)
    # Energy at the best epoch: t0 0.6, t1 0.15, t4 0.8 (finished); t2 (stopped, 0.1) is not a
    # candidate: an early stop looks cheap in energy.
    assert sorted(t.trial_id for t in report.pareto) == ["t0", "t1", "t4"]
    assert report.trials.column("val/energy")[:3] == [pytest.approx(0.8), pytest.approx(0.6), pytest.approx(0.15)]
    _assert_png(tmp_path / PARETO_FIGURE)
    # Every finished or stopped trial with both values (not the failed t3, though it logged one
    # epoch: the plot leaves it out too), the front first by accuracy; the toy trials have no
    # energy weight, so there is no column of it.
    with (tmp_path / PARETO_TABLE).open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial_id"], r["state"], r["pareto"]) for r in rows] == [
        ("t4", "FINISHED", "True"), ("t0", "FINISHED", "True"), ("t1", "FINISHED", "True"),
        ("t2", "STOPPED", "False"),
    ]
    assert "energy_weight" not in rows[0] and float(rows[2]["val/energy"]) == pytest.approx(0.15)
    assert len(report.importances) == 2
    assert "Pareto set" in report.text


def test_running_search_reports_the_trials_so_far(toy_store: Path, tmp_path: Path, toy_parts):
    tracker = toy_parts.start(toy_store, name="live")
    done, running, fresh = toy_parts.trials[0], toy_parts.trials[4], toy_parts.trials[1]
    toy_parts.run(tracker, done)
    toy_parts.run(tracker, running, epochs=1, end=False)
    toy_parts.run(tracker, fresh, epochs=0, end=False)
    search = _load(toy_store, "live")
    assert search.status == "RUNNING"
    report = write_report(search, tmp_path)
    rows = _rows(report.trials)
    assert [row[1] for row in report.trials.rows] == ["t0", "t4", "t1"]  # no value yet: last
    assert (rows["t4"]["state"], rows["t4"]["epochs"], rows["t4"]["val/acc_mean"]) == ("RUNNING", 1, pytest.approx(0.6))
    assert (rows["t1"]["state"], rows["t1"]["epochs"], rows["t1"]["val/acc_mean"], rows["t1"]["rank"]) == (
        "RUNNING", 0, None, None
    )
    for name in FIGURES:
        _assert_png(tmp_path / name)


def test_resumed_search_reads_one_run_per_trial_with_all_epochs(toy_store: Path, tmp_path: Path, toy_parts):
    first = toy_parts.start(toy_store, name="resumed")
    crashed, done = toy_parts.trials[4], toy_parts.trials[1]
    toy_parts.run(first, done)
    toy_parts.run(first, crashed, epochs=2, end=False)
    # The driver died; the resumed search reopens the same runs and the trial continues from
    # its epoch-1 checkpoint, so epoch 2 comes again (not logged twice).
    second = toy_parts.start(toy_store, name="resumed")
    assert second.parent_id == first.parent_id
    toy_parts.run(second, crashed)
    toy_parts.run(second, toy_parts.trials[0])
    second.end_search(end="finished")

    search = _load(toy_store, "resumed")
    assert search.status == "FINISHED"
    rows = _rows(write_report(search, tmp_path).trials)
    assert sorted(rows) == ["t0", "t1", "t4"]
    assert (rows["t4"]["state"], rows["t4"]["epochs"], rows["t4"]["best_epoch"]) == ("FINISHED", 3, 2)
    (trial,) = [t for t in search.trials if t.trial_id == "t4"]
    assert [e for e, _ in trial.curve] == [1, 2, 3]


def test_default_is_the_newest_search_and_out_defaults_to_the_run_directory(
    toy_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_search_factory, capsys
):
    toy_search_factory(toy_store, name="newest", trials=[])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(toy_store))
    assert main(["report", "--no-upload"]) == 0
    assert "search: newest (newest-0123456789)" in capsys.readouterr().out
    assert (tmp_path / "runs" / "newest" / "report" / "report.md").is_file()
    for name in FIGURES:  # written, saying there is nothing to show yet
        _assert_png(tmp_path / "runs" / "newest" / "report" / name)


def test_a_space_file_selects_its_search_and_store(toy_store: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = tmp_path / "toy.yaml"
    space.write_text(f"name: toy\nmlflow: {{tracking_uri: '{_uri(toy_store)}'}}\n")
    assert main(["report", str(space), "--out", str(tmp_path / "out"), "--no-upload"]) == 0
    assert "search: toy (toy-0123456789)" in capsys.readouterr().out


def test_a_space_file_whose_tracking_uri_is_no_string_exits_2_naming_it(tmp_path: Path, capsys):
    space = tmp_path / "toy.yaml"
    space.write_text("name: toy\nmlflow: {tracking_uri: 5}\n")  # a traceback before
    assert main(["report", str(space), "--out", str(tmp_path / "out"), "--no-upload"]) == 2
    err = capsys.readouterr().err
    assert f"error: {space}: mlflow.tracking_uri: a URI string, but got 5" in err and "Traceback" not in err


def test_invalid_selections_exit_2(toy_store: Path, tmp_path: Path, capsys):
    assert main(["report", "nope", "--tracking-uri", _uri(toy_store), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "but got 'nope'" in err and "toy (toy-0123456789, experiment 'toy')" in err
    missing = tmp_path / "missing" / "mlflow.db"
    assert main(["report", "--tracking-uri", f"sqlite:///{missing}", "--out", str(tmp_path / "out")]) == 2
    assert f"no file {missing}" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["report", "--tracking-uri", "sqlite://", "--out", str(tmp_path / "out")]) == 2
    assert "a SQLite store in a file" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert main(["report", "--tracking-uri", f"sqlite:///{junk}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{junk}: an MLflow store this MLflow can open, but got DatabaseError" in err and "Traceback" not in err


def test_a_search_name_finds_the_store_its_run_directory_recorded(toy_store: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "toy"
    run_dir.mkdir(parents=True)
    meta = {"name": "toy", "search_id": "toy-0123456789", "tracking_uri": _uri(toy_store), "experiment": "toy"}
    (run_dir / "losstune.json").write_text(json.dumps(meta))
    assert main(["report", "toy", "--no-upload"]) == 0
    assert "search: toy (toy-0123456789)" in capsys.readouterr().out
    assert (run_dir / "report" / "trials.csv").is_file()


def test_two_searches_of_one_name_keep_their_runs_and_the_report_says_which_it_shows(
    toy_store: Path, tmp_path: Path, toy_search_factory, toy_parts, capsys
):
    toy_search_factory(toy_store, name="twice", search_id="twice-old")
    toy_search_factory(toy_store, name="twice", search_id="twice-new", trials=toy_parts.trials[:2])
    uri = _uri(toy_store)
    assert main(["report", "twice", "--tracking-uri", uri, "--out", str(tmp_path / "new"), "--no-upload"]) == 0
    out = capsys.readouterr().out
    assert "note: reporting search twice-new (started " in out
    assert "2 searches match 'twice'; this is the newest. The others: twice-old (started " in out
    # the store it read: another search of the name has no run directory to find it by
    assert f"note: report one of the others with: {search_command('report', 'SEARCH_ID', '--tracking-uri', uri)}" in out
    assert main(["report", "twice-old", "--tracking-uri", uri, "--out", str(tmp_path / "old"), "--no-upload"]) == 0
    assert "note: reporting search twice-old" in capsys.readouterr().out
    assert sorted(_rows(write_report(_load(toy_store, "twice-old"), tmp_path / "o").trials)) == [
        t.trial_id for t in toy_parts.trials
    ]
    assert sorted(_rows(write_report(_load(toy_store, "twice-new"), tmp_path / "n").trials)) == ["t0", "t1"]


def test_discarded_runs_are_left_out_and_stopped_early_runs_read_as_stopped(
    toy_store: Path, tmp_path: Path, toy_parts
):
    tracker = toy_parts.start(toy_store, name="discarding")
    for trial in toy_parts.trials[:3]:
        toy_parts.run(tracker, trial)
    toy_parts.run(tracker, toy_parts.trials[3], epochs=1, end=False)
    assert tracker.reconcile({t.trial_id for t in toy_parts.trials[:3]}) == ["t3"]
    tracker.end_search(end="finished")
    search = _load(toy_store, "discarding")
    rows = _rows(write_report(search, tmp_path).trials)
    assert sorted(rows) == ["t0", "t1", "t2"]
    assert rows["t2"]["state"] == "STOPPED"
    client = MlflowClient(_uri(toy_store))
    assert client.get_run(search.parent_run_id).info.status == "FINISHED"


def test_an_unreachable_server_fails_at_once(tmp_path: Path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    # exit 2, as `run` and `submit` exit for the same --tracking-uri (before: 1)
    assert main(["report", "--tracking-uri", f"http://127.0.0.1:{port}", "--out", str(tmp_path)]) == 2
    assert time.monotonic() - started < 10
    assert f"an MLflow tracking server answering at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_the_report_imports_neither_torch_nor_ray(toy_store: Path, tmp_path: Path):
    import subprocess
    import sys

    child = (
        "import sys\nfrom search.__main__ import main\n"
        f"code = main(['report', 'toy', '--tracking-uri', {_uri(toy_store)!r}, '--out', {str(tmp_path)!r}, "
        "'--no-upload'])\n"
        "print('heavy:', sorted(m for m in ('torch', 'ray') if m in sys.modules))\nsys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "heavy: []"


def test_a_report_folder_that_cannot_be_made_exits_2_naming_it(toy_store: Path, tmp_path: Path, capsys):
    (tmp_path / "a-file").write_text("")
    args = ["report", "toy", "--tracking-uri", _uri(toy_store), "--no-upload"]
    assert main([*args, "--out", str(tmp_path / "a-file" / "report")]) == 2
    err = capsys.readouterr().err
    assert "error: --out: a folder this user can write the report to, but got" in err and "Traceback" not in err
    # a run directory behind a URI is not where a report is written: --out says where
    assert main([*args, "--storage", "mock:///runs"]) == 2
    assert "error: --out DIR: the report is written to a folder here" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_an_infinite_metric_is_missing_like_nan_and_ranks_nothing_first(toy_store: Path, tmp_path: Path, toy_parts):
    # MLflow's SQL store saves inf as sys.float_info.max: a finite number that outranked every trial.
    tracker = toy_parts.start(toy_store, name="diverged")
    toy_parts.run(tracker, toy_parts.trials[0])
    toy_parts.run(tracker, toy_parts.trials[1])
    toy_parts.run(tracker, dataclasses.replace(toy_parts.trials[4], trial_id="tinf", curve=[0.6, math.inf, 0.7]))
    tracker.end_search(end="finished")
    search = _load(toy_store, "diverged")
    (diverged,) = [t for t in search.trials if t.trial_id == "tinf"]
    assert dict(diverged.curve) == {1: pytest.approx(0.6), 3: pytest.approx(0.7)}  # epoch 2 is missing
    assert (diverged.best_epoch, diverged.values) == (3, (pytest.approx(0.7),))
    report = write_report(search, tmp_path)
    assert "best trial: t0 (val/acc_mean=0.7, finished)" in report.text
    assert isinstance(report.importances[0], dict)  # fANOVA ran on the finite values


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # matplotlib's ticks at 1e308
def test_a_failing_importance_evaluator_leaves_a_reason_and_the_rest_of_the_report(toy_store: Path, tmp_path: Path):
    # A huge but finite value is one Optuna's fANOVA trips on (an AssertionError in its tree).
    search = _load(toy_store, "toy")
    huge = [dataclasses.replace(t, values=(1e308,)) if t.trial_id == "t4" else t for t in search.trials]
    report = write_report(dataclasses.replace(search, trials=huge), tmp_path)
    (reason,) = report.importances
    assert reason.startswith("could not be computed: Optuna's fANOVA evaluator failed (AssertionError")
    assert f"parameter importance for val/acc_mean: {reason}" in report.text
    assert (tmp_path / "report.md").is_file() and (tmp_path / "importance.csv").read_text() == (
        "objective,parameter,importance\n"
    )


def test_a_nan_best_epoch_is_absent_and_the_best_value_names_the_epoch(toy_store: Path, tmp_path: Path, toy_parts):
    tracker = toy_parts.start(toy_store, name="nan-best-epoch")
    trial = toy_parts.trials[4]  # best at epoch 2 of 3
    toy_parts.run(tracker, trial, end=False)
    tracker.flush()
    MlflowClient(_uri(toy_store)).log_metric(tracker.trial_run_id(trial.trial_id), "best_epoch", math.nan, step=3)
    tracker.trial_ended(trial.trial_id, state="finished", reason="completed")
    tracker.end_search(end="finished")
    (loaded,) = _load(toy_store, "nan-best-epoch").trials
    assert (loaded.best_epoch, loaded.values) == (2, (pytest.approx(0.8),))


def _run_dir(storage: Path, name: str, *, search_id: str, uri: str) -> Path:
    """A run directory as `search run` leaves it: losstune.json names its search and store."""
    run_dir = storage / name
    run_dir.mkdir(parents=True)
    meta = {"name": name, "search_id": search_id, "tracking_uri": uri, "experiment": name}
    (run_dir / "losstune.json").write_text(json.dumps(meta))
    return run_dir


def test_a_name_with_a_run_directory_reports_the_search_recorded_there_not_the_newest(
    toy_store: Path, tmp_path: Path, toy_search_factory, toy_parts, monkeypatch, capsys
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    toy_search_factory(toy_store, name="recorded", search_id="recorded-old", trials=toy_parts.trials[:2])
    toy_search_factory(toy_store, name="recorded", search_id="recorded-new", trials=toy_parts.trials[:3])
    storage = tmp_path / "runs"
    run_dir = _run_dir(storage, "recorded", search_id="recorded-old", uri=_uri(toy_store))
    assert main(["report", "recorded", "--storage", str(storage), "--no-upload"]) == 0
    out = capsys.readouterr().out
    assert "search: recorded (recorded-old)" in out and "losstune.json records search recorded-old" in out
    assert json.loads((run_dir / "report" / MARKER).read_text())["search_id"] == "recorded-old"
    assert {row["trial"] for row in csv.DictReader((run_dir / "report" / "trials.csv").open())} == {"t0", "t1"}


def test_a_second_search_of_the_name_is_refused_the_first_ones_report_folder(
    toy_store: Path, tmp_path: Path, toy_search_factory, toy_parts, capsys
):
    toy_search_factory(toy_store, name="clash", search_id="clash-old", trials=toy_parts.trials[:2])
    toy_search_factory(toy_store, name="clash", search_id="clash-new", trials=toy_parts.trials[:3])
    storage, args = tmp_path / "runs", ["--tracking-uri", _uri(toy_store), "--no-upload"]
    assert main(["report", "clash-old", "--storage", str(storage), *args]) == 0
    folder = storage / "clash" / "report"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    assert main(["report", "clash-new", "--storage", str(storage), *args]) == 2
    err = capsys.readouterr().err
    assert f"error: --out: a folder that is empty or holds a report of search clash-new and nothing else, but got {folder}" in err
    assert "which holds the report of search clash-old; name another folder with --out DIR" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["report", "clash-old", "--storage", str(storage), *args]) == 0  # its own search: rewritten


def test_the_default_folder_is_named_by_the_search_id_not_a_renamed_parent_run(
    toy_store: Path, tmp_path: Path, toy_search_factory, toy_parts, capsys
):
    uri = _uri(toy_store)
    client = MlflowClient(uri)
    made_id = "renamed-20260101-120000-0a1b2c"  # the form search.tracking.make_search_id gives
    parent = toy_search_factory(toy_store, name="renamed", search_id=made_id, trials=toy_parts.trials[:2]).parent_id
    client.set_tag(parent, "mlflow.runName", "../../escaped")  # as the MLflow UI's rename does
    storage = tmp_path / "deep" / "runs"
    assert main(["report", made_id, "--storage", str(storage), "--tracking-uri", uri, "--no-upload"]) == 0
    assert (storage / "renamed" / "report" / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]

    # An id of another form and a parent run name that is a path: no safe name, --out is needed.
    parent = toy_search_factory(toy_store, name="odd", search_id="odd id", trials=toy_parts.trials[:2]).parent_id
    client.set_tag(parent, "mlflow.runName", "../../escaped")
    capsys.readouterr()
    assert main(["report", "odd id", "--storage", str(storage), "--tracking-uri", uri, "--no-upload"]) == 2
    err = capsys.readouterr().err
    assert "error: --out DIR: the default folder <storage>/<name>/report needs a search name" in err
    assert "but got neither from search id 'odd id' nor from its parent run's name '../../escaped'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in storage.iterdir()) == ["renamed"]


def test_failed_and_running_trials_values_are_no_best_in_tables_figure_or_importance(
    toy_store: Path, tmp_path: Path, toy_parts, monkeypatch
):
    from search.report import _plots

    t0, t1, _, _, t4 = toy_parts.trials  # t0 0.7 and t4 0.8 finish; both ce/ordinal
    tracker = toy_parts.start(toy_store, name="failhigh")
    toy_parts.run(tracker, t0)
    toy_parts.run(tracker, dataclasses.replace(t1, trial_id="t8", curve=[0.99]), end=False)  # running
    toy_parts.run(tracker, t4)
    toy_parts.run(tracker, dataclasses.replace(t1, trial_id="t9", curve=[0.6, 0.95], state="failed", reason="error"))
    tracker.end_search(end="finished")
    figures = {}
    save = _plots._save
    monkeypatch.setattr(_plots, "_save", lambda figure, path: figures.setdefault(path.name, figure) and save(figure, path))
    report = write_report(_load(toy_store, "failhigh"), tmp_path)
    assert "best trial: t4 (val/acc_mean=0.8, finished)" in report.text
    rows = {(row[0], row[1]): dict(zip(report.loss_types.columns, row)) for row in report.loss_types.rows}
    focal = rows[("digit", "focal")]  # t8 running, t9 failed: counted, not scored
    assert (focal["trials"], focal["scored"], focal["best val/acc_mean"], focal["best acc"]) == (2, 0, None, None)
    assert [row[:2] for row in report.loss_types.rows][:2] == [("digit", "ce"), ("digit", "focal")]
    assert rows[("thickness", "ce")]["best val/acc_mean"] is None
    (best_line,) = [line for line in figures["objective.png"].axes[0].lines if line.get_label().startswith("best so far")]
    assert max(best_line.get_ydata()) == pytest.approx(0.8)
    curves = figures["learning_curves.png"]
    assert [line.get_label().split(" ")[0] for line in curves.axes[0].lines] == ["t4", "t0"]
    assert "learning curves of the 2 best trials" in curves.texts[0].get_text()
    # Only t0 and t4 count, both ce/ordinal: the loss switches (focal only in t8, t9) are no parameter.
    assert set(report.importances[0]) == {"train.lr", "heads.digit.ce.label_smoothing", "heads.thickness.ordinal.alpha"}


def test_an_empty_file_is_no_store_and_stays_empty(tmp_path: Path, capsys):
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["report", "--tracking-uri", f"sqlite:///{empty}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: an existing MLflow store, but got the empty file {empty}" in err and "Traceback" not in err
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_a_database_without_mlflow_s_tables_is_no_store_and_stays_unchanged(tmp_path: Path, capsys):
    # Before, MLflow created its ~70 tables in the user's database, then the report found no search.
    import sqlite3

    other = tmp_path / "notes.db"
    with sqlite3.connect(other) as db:
        db.execute("create table notes (x)")
    before = other.read_bytes()
    assert main(["report", "--tracking-uri", f"sqlite:///{other}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: an existing MLflow store, but got {other}, a database without MLflow's tables" in err
    assert "Traceback" not in err
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_an_out_folder_no_report_may_go_to_is_refused_before_the_search_is_read(toy_store: Path, tmp_path: Path,
                                                                                 capsys, monkeypatch):
    import search.report as report_module

    def not_read(*args, **kwargs):
        raise AssertionError("the search was read before --out was checked")

    monkeypatch.setattr(report_module, "load_search", not_read)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.md").write_text("mine")
    for out, message in ((a_file, f"a folder for the report, but got {a_file}, which is a file"),
                         (theirs, f"a folder that is empty or holds a report and nothing else, but got {theirs}, "
                                  "which holds other files: notes.md")):
        assert main(["report", "toy", "--tracking-uri", _uri(toy_store), "--out", str(out)]) == 2
        assert f"error: --out: {message}" in capsys.readouterr().err
    assert (theirs / "notes.md").read_text() == "mine"


def test_a_store_without_searches_is_named_in_the_error(tmp_path: Path, capsys):
    from search.tracking._buffer import mlflow_client

    uri = f"sqlite:///{tmp_path / 'empty-store.db'}"
    mlflow_client(uri).search_experiments()  # an MLflow store, no search in it
    assert main(["report", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 2
    # before: "... but got none in this store", not saying which (a space's empty tracking_uri
    # or MLFLOW_TRACKING_URI picks another store than the user thinks)
    assert f"a store with at least one losstune search, but got none in {uri}" in capsys.readouterr().err


def test_a_search_in_its_first_moments_is_said_to_be_starting(toy_store: Path, tmp_path: Path, capsys):
    from search.tracking import ROLE_SEARCH, TAG_ROLE, TAG_SEARCH_ID

    client = MlflowClient(_uri(toy_store))
    experiment = client.create_experiment("starting")
    run = client.create_run(experiment, run_name="starting", tags={TAG_ROLE: ROLE_SEARCH, TAG_SEARCH_ID: "starting-0"})
    assert main(["report", "starting", "--tracking-uri", _uri(toy_store), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        "error: a search that has recorded its settings (its objectives), but search starting-0 "
        f"(run {run.info.run_id}) has recorded none yet: it is starting; report it again in a moment"
    ) in err
    assert not (tmp_path / "out").exists()


def test_a_front_of_stopped_trials_only_says_how_many_were_left_out(
    toy_store: Path, tmp_path: Path, toy_parts, toy_search_factory
):
    # Every trial stopped by the search's time budget: each has both objectives, none finished.
    stopped = [dataclasses.replace(t, state="stopped_by_budget", reason="time budget") for t in toy_parts.trials[:3]]
    two = (("val/acc_mean", "max"), ("val/energy", "min"))
    toy_search_factory(toy_store, name="budget", objectives=two, trials=stopped)
    report = write_report(_load(toy_store, "budget"), tmp_path)
    assert report.pareto == ()
    assert (
        "  (no trial finished with every objective; 3 stopped trial(s) with every objective, listed in pareto.csv, "
        "are left out: fewer epochs look cheap in a cost objective)"
    ) in report.text.splitlines()
    assert len(list(csv.DictReader((tmp_path / PARETO_TABLE).open()))) == 3


def test_strings_from_the_store_break_neither_the_markdown_nor_the_terminal(toy_store: Path, tmp_path: Path, toy_parts):
    # a param value or a renamed parent run with a newline started Markdown blocks and raw HTML in
    # report.md (uploaded, rendered by MLflow's UI) and sent escape sequences to the terminal
    evil = "a|b\n| injected | row |\n\n# Heading <script>alert(1)</script>\x1b]0;pwned\x07"
    t0, t1, *_ = toy_parts.trials
    tracker = toy_parts.start(toy_store, name="inject")
    toy_parts.run(tracker, t0)
    toy_parts.run(tracker, dataclasses.replace(t1, losses={"digit": ("ce", {"label_smoothing": evil}),
                                                           "thickness": ("ce", {})}))
    tracker.end_search(end="finished")
    MlflowClient(_uri(toy_store)).set_tag(tracker.parent_id, "mlflow.runName", "inj\n\n<script>x</script>")
    report = write_report(_load(toy_store, "inject"), tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "<script>" not in markdown and "\x1b" not in markdown
    assert not any(line.startswith(("# Heading", "| injected")) for line in markdown.splitlines())
    assert markdown.startswith("# Search report: inj\\n\\n&lt;script&gt;x&lt;/script&gt;\n")
    table = markdown.split("## Trials", 1)[1].split("## Loss types", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 and all(line.endswith("|") for line in rows)  # header, rule, both trials
    assert "\x1b" not in report.text and "a\\|b" not in report.text and "a|b\\n| injected" in report.text


def test_a_search_name_wins_over_a_newer_search_of_the_same_experiment(toy_store: Path, capsys):
    # `--name again` puts a search in the space's experiment: before, the space's own name selected
    # the newest search of that experiment (here `tieragain`), where `report` through the run directory
    # (and the README's "as search report takes") meant the search of that name.
    from search.report import ReportError
    from search.tracking import SearchTracker

    from .conftest import TOY_TRIALS, run_toy_trial, toy_settings

    uri = _uri(toy_store)
    for name, search_id in (("tierspace", "tierspace-1"), ("tieragain", "tieragain-2")):
        settings = dataclasses.replace(toy_settings(uri, name=name, objectives=(("val/acc_mean", "max"),),
                                                    search_id=search_id), experiment="tierspace")
        tracker = SearchTracker(settings)
        tracker.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
        run_toy_trial(tracker, TOY_TRIALS[0])
        tracker.end_search(end="finished")
    assert _load(toy_store, "tierspace").search_id == "tierspace-1"
    assert _load(toy_store, "tieragain").search_id == "tieragain-2"
    with pytest.raises(ReportError, match=f"of {uri}, but got 'nothing'"):
        _load(toy_store, "nothing")


def test_a_search_id_finds_the_store_its_run_directory_recorded(toy_store: Path, tmp_path: Path, toy_search_factory,
                                                               monkeypatch, capsys):
    # before, only a search name looked in <storage>/<name>/losstune.json: the id the report's own
    # note suggests read the default store, where the search is not
    search_id = "byid-20261207-101500-abc123"
    toy_search_factory(toy_store, name="byid", search_id=search_id)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "byid"
    run_dir.mkdir(parents=True)
    meta = {"name": "byid", "search_id": search_id, "tracking_uri": _uri(toy_store), "experiment": "byid"}
    (run_dir / "losstune.json").write_text(json.dumps(meta))
    assert main(["report", search_id, "--no-upload"]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir}/losstune.json records search {search_id}" in out and f"search: byid ({search_id})" in out


def test_an_mlflow_error_is_shown_without_the_store_s_password(tmp_path, capsys, monkeypatch):
    # before: "failed: API request to http://alice:s3cretPW@127.0.0.1:.../api/... failed with exception ..."
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # /health answers
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"OK")

        def do_POST(self):  # an API call: the connection drops without an answer
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        uri = f"http://alice:s3cretPW@127.0.0.1:{server.server_address[1]}"
        code = main(["report", "some-search", "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
                     "--out", str(tmp_path / "out")])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code != 0 and "error" in err and "alice:***@" in err
    assert "s3cretPW" not in err
