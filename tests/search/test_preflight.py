"""Where a search may log: remote-URI rules for cluster searches, and a server that answers."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from search._preflight import TrackingUriError, check_reachable, check_store_uri, check_tracking_uri


@pytest.mark.parametrize(
    "uri",
    ["sqlite:///mlflow/mlflow.db", "sqlite:////abs/mlflow.db", "file:///tmp/mlruns", "mlruns", "/abs/mlruns"],
)
def test_a_cluster_search_refuses_local_stores(uri: str):
    check_tracking_uri(uri, cluster=False)  # fine on this machine
    with pytest.raises(TrackingUriError) as error:
        check_tracking_uri(uri, cluster=True)
    message = str(error.value)
    assert message.startswith("a search on a Ray cluster logs to an MLflow server")
    assert message.endswith(f"but got {uri!r}")


@pytest.mark.parametrize(
    "uri",
    ["http://10.0.0.5:5000", "https://mlflow.example.org", "postgresql://u:p@db/mlflow", "mysql+pymysql://db/mlflow",
     "mssql+pyodbc://db/mlflow", "databricks"],
)
def test_a_cluster_search_accepts_servers_and_databases(uri: str):
    check_tracking_uri(uri, cluster=True)


@pytest.fixture
def http_server() -> Iterator[str]:
    """A stand-in server answering every GET with 401 (a server that wants credentials)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answering_server_passes_even_when_it_wants_credentials(http_server: str):
    check_reachable(http_server)
    check_reachable(http_server + "/")


def test_an_unreachable_server_is_an_error_naming_the_uri():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingUriError) as error:
        check_reachable(uri, timeout_s=2)
    assert f"an MLflow tracking server answering at {uri}" in str(error.value)
    assert "but got" in str(error.value) and "refused" in str(error.value).lower()
    check_reachable("sqlite:///nowhere/mlflow.db")  # not a server: nothing to reach


SPACE = """\
name: preflight
data: {kind: digits, val_fraction: 0.2, limit: 300, labels: measured}
model: {kind: mlp, hidden: 16, dropout: 0.0}
train: {epochs: 2, batch_size: 64, lr: 0.01, patience: 5, seed: 0}
heads:
  digit: {loss: ce}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: 2, sampler: random, scheduler: none, max_concurrent: 2, seed: 0}
resources: {cpu: 1}
"""


@pytest.fixture
def cli(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """run(*args) -> (exit code, stderr) of `search run` on a small space; Ray must not start."""
    import search._ray
    from search.__main__ import main

    def refuse(**kwargs: object) -> None:
        raise AssertionError("Ray must not be started for invalid input")

    monkeypatch.setattr(search._ray, "connect", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)

    def run(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
        code = main(["run", str(space), "--storage", str(tmp_path / "runs"), *args])
        return code, capsys.readouterr().err

    return run


def test_a_cluster_search_with_a_local_store_exits_2_before_ray_starts(cli, tmp_path, monkeypatch, capsys):
    code, err = cli("--address", "10.0.0.5:6379", "--tracking-uri", "sqlite:///mlflow/mlflow.db", capsys=capsys)
    assert code == 2
    assert "error: a search on a Ray cluster logs to an MLflow server" in err and "sqlite:///mlflow/mlflow.db" in err
    # RAY_ADDRESS counts too, and the default store is a local file.
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    code, err = cli(capsys=capsys)
    assert code == 2 and "but got 'sqlite:///" in err
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_tracking_server_exits_2_before_ray_starts(cli, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = cli("--tracking-uri", f"http://127.0.0.1:{port}", capsys=capsys)
    assert code == 2
    assert f"error: an MLflow tracking server answering at http://127.0.0.1:{port}" in err


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("foo://bar", "an MLflow tracking URI: an MLflow server"),
        ("mlruns", "an MLflow tracking URI: an MLflow server"),  # MLflow's file store, retired in MLflow 3
        ("file:///tmp/mlruns", "an MLflow tracking URI: an MLflow server"),
        ("sqlite://", "a SQLite store in a file"),  # in memory: the search's runs would end with it
        ("sqlite:///", "a SQLite store in a file"),
        ("sqlite:///:memory:", "a SQLite store in a file"),
        ("sqlite:foo.db", "a SQLite store in a file"),
        ("postgresql+nosuchdriver://db/mlflow", "a database URI whose driver is installed here"),
    ],
)
def test_a_store_no_search_can_log_to_is_refused_naming_the_rule(uri: str, rule: str):
    with pytest.raises(TrackingUriError) as error:
        check_store_uri(uri, writing=False)
    assert str(error.value).startswith(rule) and repr(uri) in str(error.value)


def test_a_sqlite_store_must_be_writable_to_log_to_but_not_to_read(tmp_path, monkeypatch):
    import search._writable

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")
    check_store_uri(f"sqlite:///{db}", writing=True)
    # what os.access says of another user's read-only file (the tests may run as root, who may write anything)
    monkeypatch.setattr(search._writable.os, "access", lambda path, mode: Path(path) != db)
    with pytest.raises(TrackingUriError) as error:
        check_store_uri(f"sqlite:///{db}", writing=True)
    assert str(error.value).endswith(f"{db} is not writable by this user")
    check_store_uri(f"sqlite:///{db}", writing=False)  # a report only reads
    with pytest.raises(TrackingUriError, match="a SQLite store in a file, but got .*, a folder"):
        check_store_uri(f"sqlite:///{tmp_path}", writing=False)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(TrackingUriError, match="the file .*a-file is in the way"):
        check_store_uri(f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}", writing=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tracking-uri", "foo://bar"], "error: an MLflow tracking URI: an MLflow server"),
        (["--tracking-uri", "sqlite://"], "error: a SQLite store in a file"),
        (["--storage", "foo://bar/runs"], "error: --storage: a file system URI pyarrow opens"),
        (["--address", "http://10.0.0.5:1"], "error: --address: a Ray cluster's HOST:PORT"),
        (["--address", "10.0.0.5:99999"], "error: --address: a Ray cluster's HOST:PORT"),
    ],
)
def test_a_store_storage_or_address_that_cannot_work_exits_2_before_ray_starts_writing_nothing(
    cli, tmp_path, args, message, capsys
):
    code, err = cli(*args, capsys=capsys)
    assert code == 2 and err.startswith(message) and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_storage_under_a_file_or_a_run_directory_that_is_a_file_exits_2(cli, tmp_path, capsys):
    (tmp_path / "runs").write_text("a file")
    code, err = cli("--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", capsys=capsys)
    assert code == 2 and "error: --storage: a directory this user can write, but got: the file" in err, err
    (tmp_path / "runs").unlink()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "preflight").write_text("a file where the run directory goes")
    code, err = cli("--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", capsys=capsys)
    assert code == 2 and "error: --storage: a directory, but got the file" in err, err


@pytest.mark.parametrize("text", ["[]", "{}", '{"search_id": 1}'])
def test_a_run_directory_whose_losstune_json_is_not_a_searchs_exits_2(cli, tmp_path, text: str, capsys):
    run_dir = tmp_path / "runs" / "preflight"
    run_dir.mkdir(parents=True)
    (run_dir / "tuner.pkl").write_bytes(b"")  # where Tune began a search
    (run_dir / "losstune.json").write_text(text)
    code, err = cli("--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", capsys=capsys)
    assert code == 2 and "a run directory of a losstune search (with losstune.json)" in err, err
    assert "Traceback" not in err and (run_dir / "losstune.json").read_text() == text
