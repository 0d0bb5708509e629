"""``search report`` on SQLite stores holding searches with known values (see conftest.py)."""

from __future__ import annotations

import csv
import json
import math
import socket
import time
from pathlib import Path

import matplotlib.image
import pytest
from mlflow import MlflowClient

from search.__main__ import main
from search.report import FIGURES, PARETO_FIGURE, PARETO_TABLE, load_search, open_store, write_report
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
    assert t4["val/digit/acc"] == pytest.approx(0.9) and t4["val/digit/mae"] == pytest.approx(0.4)
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
    assert ce["best mae"] == pytest.approx(0.4) and ce["median mae"] == pytest.approx(0.6)
    focal = table[("digit", "focal")]  # t1 0.55, t3 0.2 (failed after one epoch)
    assert focal["best val/acc_mean"] == pytest.approx(0.55) and focal["median val/acc_mean"] == pytest.approx(0.375)
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
    assert {p.name for p in out.iterdir()} == expected
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


def test_invalid_selections_exit_2(toy_store: Path, tmp_path: Path, capsys):
    assert main(["report", "nope", "--tracking-uri", _uri(toy_store), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "but got 'nope'" in err and "toy (toy-0123456789, experiment 'toy')" in err
    missing = tmp_path / "missing" / "mlflow.db"
    assert main(["report", "--tracking-uri", f"sqlite:///{missing}", "--out", str(tmp_path)]) == 2
    assert f"no file {missing}" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["report", "--tracking-uri", "sqlite://", "--out", str(tmp_path)]) == 2
    assert "a SQLite store in a file" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert main(["report", "--tracking-uri", f"sqlite:///{junk}", "--out", str(tmp_path)]) == 2
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
    assert "python -m search report SEARCH_ID" in out
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
    assert main(["report", "--tracking-uri", f"http://127.0.0.1:{port}", "--out", str(tmp_path)]) == 1
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
    assert main([*args, "--storage", f"file://{tmp_path / 'runs'}"]) == 2
    assert "error: --out DIR: the report is written to a folder here" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
