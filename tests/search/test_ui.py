"""``mlflow/serve`` and the MLflow UI in a real browser, on a store holding the toy search.

The module's tests share one server (``toy_server``), in this order: it is lean and on loopback
only; headless Chromium (selenium + chromedriver) shows the search's parent run with its trials
nested under it (they appear only when the parent is expanded) and their parameters and metrics,
read from the rendered page, with screenshots in tests/artifacts/; it then stops cleanly.
Chromium missing is a failure, not a skip: ``make test`` installs it (Debian packages chromium,
chromium-driver).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
SERVE = REPO / "mlflow" / "serve"
GIB = 1 << 30
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,800",
)
# Columns the runs table shows (the UI keeps them per experiment in localStorage).
PARAMS = ("heads.digit.loss", "heads.thickness.loss", "train.lr")
METRICS = ("val/acc_mean", "val/thickness/mae")
TIMEOUT = 45.0


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:  # exited meanwhile
        pass
    return 0


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert browser and driver, (
        "the UI test needs Chromium and its driver: apt-get install -y chromium chromium-driver "
        "(make test installs them when run as root)"
    )
    return browser, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="losstune-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def _wait(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``probe`` until it returns something truthy (the React app renders asynchronously)."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except WebDriverException:  # an element replaced while rendering
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show {what} within {timeout:g} s")
        time.sleep(0.25)


def _rows(driver: Any) -> dict[str, dict[str, str]]:
    """run id -> {column id: cell text} of the rendered runs table (ag-grid splits a row into a
    pinned part and a scrolling part with the same row id)."""
    from selenium.webdriver.common.by import By

    rows: dict[str, dict[str, str]] = {}
    for row in driver.find_elements(By.CSS_SELECTOR, ".ag-root [role=row][row-id]"):
        cells = rows.setdefault(row.get_attribute("row-id"), {})
        for cell in row.find_elements(By.CSS_SELECTOR, "[role=gridcell][col-id]"):
            cells[cell.get_attribute("col-id")] = cell.text.strip()
    return rows


def _close_assistant(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    close = "button[data-component-id='mlflow.assistant.chat_panel.close']"
    for button in driver.find_elements(By.CSS_SELECTOR, close):
        button.click()


def _run_name(cells: dict[str, str]) -> str:
    # The name cell also holds the run's colour swatch (its hex code) on a line of its own.
    lines = cells.get("attributes.`Run Name`", "").splitlines()
    return lines[-1] if lines else ""


def _compare_table(driver: Any) -> dict[str, list[str]]:
    """Row header -> the cells of the comparison view's tables (run details, params, tags)."""
    from selenium.webdriver.common.by import By

    table = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "table.mlflow-compare-run-table tr"):
        cells = [c.text.strip() for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        if cells:
            table[cells[0]] = cells[1:]
    return table


def test_serve_is_lean_and_on_loopback_only(toy_server):
    server = toy_server
    with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
        assert response.status == 200
    # It serves the store it was given: the toy search's experiment is there.
    query = f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=toy"
    with urllib.request.urlopen(query, timeout=10) as response:
        assert json.load(response)["experiment"]["name"] == "toy"
    assert _listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1 only
    pids = server.tree()
    rss = sum(_rss_bytes(pid) for pid in pids)
    # The server process and one uvicorn worker; no job runner, no worker pool.
    assert len(pids) <= 3, pids
    assert rss < GIB, f"{rss / GIB:.2f} GiB in {len(pids)} processes"
    assert server.started_s < 60, server.started_s


def test_experiment_page_lists_the_search_and_its_nested_trials(toy_server, toy_store: Path, browser: Any):
    from selenium.webdriver.common.by import By

    server = toy_server
    client = MlflowClient(f"sqlite:///{toy_store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("toy")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags["losstune.role"] == "search")
    trials = {r.info.run_id: r for r in runs if r.data.tags["losstune.role"] == "trial"}
    assert len(trials) == 5

    # Show the columns of interest and keep the assistant panel closed (state the UI keeps in
    # localStorage of its origin), then open the experiment's runs page.
    browser.get(f"{server.url}/")
    state = {"selectedColumns": [f"params.`{p}`" for p in PARAMS] + [f"metrics.`{m}`" for m in METRICS]}
    browser.execute_script(
        "localStorage.setItem(arguments[0], arguments[1]);"
        "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
        "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');",
        f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment.experiment_id}"]-ReactComponentState',
        json.dumps(state),
    )
    browser.get(f"{server.url}/#/experiments/{experiment.experiment_id}/runs")
    rows = _wait("the parent run", lambda: (r := _rows(browser)) and parent.info.run_id in r and r)
    assert _run_name(rows[parent.info.run_id]) == "toy"
    # Collapsed: the trials are nested under the parent, not listed beside it.
    assert not set(trials) & set(rows)

    expander = browser.find_element(
        By.CSS_SELECTOR, f"[role=row][row-id='{parent.info.run_id}'] button[data-component-id*=runnamecellrenderer]"
    )
    expander.click()
    rows = _wait(
        "the nested trials with their metrics",
        lambda: (r := _rows(browser)) and all(r.get(i, {}).get(f"metrics.`{METRICS[0]}`") for i in trials) and r,
    )
    # A trial stopped early by the scheduler is a normal end: it gets the finished trials' status
    # icon, not the failed trial's cross.
    icons = {
        run.data.tags["losstune.trial_id"]: browser.find_element(
            By.CSS_SELECTOR, f"[role=row][row-id='{run_id}'] [col-id=runDateAndNestInfo] svg"
        ).get_attribute("innerHTML")
        for run_id, run in trials.items()
    }
    assert {trials[i].data.tags["losstune.state"] for i in trials} == {"finished", "stopped_early", "failed"}
    assert icons["t2"] == icons["t0"] == icons["t1"] != icons["t3"]
    _close_assistant(browser)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "mlflow-ui-runs.png"))

    for run_id, run in trials.items():
        cells = rows[run_id]
        assert _run_name(cells) == run.data.tags["losstune.trial_id"]
        for param in PARAMS:
            assert cells[f"params.`{param}`"] == run.data.params[param], (run.info.run_name, param)
        for metric in METRICS:
            # The table shows the last value logged, possibly rounded for display.
            shown = float(cells[f"metrics.`{metric}`"].rstrip("…"))
            assert shown == pytest.approx(run.data.metrics[metric], abs=1e-3), (run.info.run_name, metric)

    # The comparison view of the trials: one column per trial, a row per parameter.
    ordered = sorted(trials, key=lambda i: trials[i].data.tags["losstune.trial_id"])
    experiments = quote(json.dumps([experiment.experiment_id]))
    browser.get(f"{server.url}/#/compare-runs?runs={quote(json.dumps(ordered))}&experiments={experiments}")
    table = _wait("the compared parameters", lambda: (t := _compare_table(browser)) and "heads.digit.loss" in t and t)
    assert table["Run Name:"] == [trials[i].data.tags["losstune.trial_id"] for i in ordered]
    for param in PARAMS:
        assert table[param] == [trials[i].data.params[param] for i in ordered]
    assert table["losstune.error"][3] == "TrainingDiverged: nan at epoch 1"
    assert table["losstune.state"] == ["finished", "finished", "stopped_early", "failed", "finished"]
    _close_assistant(browser)
    browser.save_screenshot(str(ARTIFACTS / "mlflow-ui-compare.png"))


def test_serve_stops_cleanly(toy_server):
    server = toy_server
    pids = server.tree()
    assert server.stop(timeout=20) in (0, -15)  # SIGTERM: mlflow exits, taking its worker along
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0


def test_serve_rejects_bad_options(tmp_path: Path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for args, message in (
        # a raw `mkdir: ... Not a directory` and exit 1 before
        (["--store", str(a_file)], f"--store must name a directory, but got '{a_file}', which is not one"),
        (["--port", "http"], "port must be an integer in 1..65535, but got 'http'"),
        (["--port", "70000"], "but got '70000'"),
        # bash read 08 as bad octal, which skipped the check, and 010 as 8 while MLflow got 10
        (["--port", "08"], "but got '08'"),
        (["--port", "010"], "but got '010'"),
        (["--port", "0"], "but got '0'"),
        (["--workers", "4"], "unknown option '--workers'"),
        # an empty host made the server listen on every interface
        (["--host"], "--host must name an address (0.0.0.0 for every interface), but got ''"),
        (["--host", ""], "--host must name an address"),
    ):
        result = subprocess.run([str(SERVE), *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert message in result.stderr


def test_serve_killed_while_it_creates_its_store_leaves_none_and_the_next_start_creates_it(
    tmp_path: Path, serve, process_groups
):
    import os
    import signal

    store = tmp_path / "store"
    first = subprocess.Popen([str(SERVE), "--port", "9", "--store", str(store)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    process_groups.add(first.pid, "mlflow/serve creating its store")
    try:
        deadline = time.monotonic() + 60
        while not list(store.glob(".mlflow.db.new-*")):  # the store being made, under its temporary name
            assert time.monotonic() < deadline and first.poll() is None, "serve made no store aside"
            time.sleep(0.02)
        assert not (store / "mlflow.db").exists()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        process_groups.remove(first.pid)
    assert not (store / "mlflow.db").exists()  # a half-made store is never where MLflow looks

    server = serve(store)
    assert (store / "mlflow.db").is_file()  # made whole this time (what the killed one left goes in 10 min)
    # the Default experiment as `mlflow server` makes it when it serves the artifacts itself
    assert MlflowClient(server.url).get_experiment("0").artifact_location == "mlflow-artifacts:/0"
