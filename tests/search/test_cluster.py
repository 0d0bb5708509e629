"""The pieces of cluster submission that need no cluster: the token lookup, what a job ships,
the job's command, the exit status a finished job maps to, and where a trial fits."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from search import exit_codes
from search._preflight import TrackingUriError, check_reachable, check_tracking_uri
from search.tracking import redact_uri
from search.cluster import TokenError, find_token, stage
from search.cluster._jobs import exit_code
from search.commands.run import _node_local_storage
from search.commands.submit import DEFAULT_STORAGE, _check_storage, _entrypoint
from search.driver import RunDirectoryHold, SearchInputError
from search.driver._storage import RunLocation, is_uri

REPO = Path(__file__).resolve().parents[2]


def test_the_token_comes_from_the_first_of_ray_s_three_places(tmp_path: Path):
    home_token = tmp_path / "home" / ".ray" / "auth_token"
    home_token.parent.mkdir(parents=True)
    home_token.write_text("from-home\n")
    named = tmp_path / "named"
    named.write_text("from-path")
    env = {"HOME": str(tmp_path / "home")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", env["HOME"])
        assert find_token({}).value == "from-home"
        assert find_token({"RAY_AUTH_TOKEN_PATH": str(named)}).value == "from-path"
        assert find_token({"RAY_AUTH_TOKEN": " direct ", "RAY_AUTH_TOKEN_PATH": str(named)}).value == "direct"
        assert find_token({"RAY_AUTH_TOKEN": "x"}).headers() == {"Authorization": "Bearer x"}
        home_token.unlink()
        assert find_token({}) is None


@pytest.mark.parametrize("content", [None, ""])
def test_a_token_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path, content):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenError) as caught:
        find_token({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert caught.value.path == str(path) and "a readable file holding the cluster's token" in str(caught.value)


def test_a_token_that_is_no_text_or_holds_a_line_break_is_an_error_naming_its_source(tmp_path: Path):
    binary = tmp_path / "token"
    binary.write_bytes(b"\xff\xfe")  # a traceback (UnicodeDecodeError) before
    with pytest.raises(TokenError) as caught:
        find_token({"RAY_AUTH_TOKEN_PATH": str(binary)})
    assert (caught.value.path, caught.value.reason) == (str(binary), "not UTF-8 text")
    # before: sent as a header, and the error blamed the cluster's address
    two_lines = tmp_path / "two"
    two_lines.write_text("abc\ndef\n")
    for env, source in (({"RAY_AUTH_TOKEN": "a\nb"}, "RAY_AUTH_TOKEN"), ({"RAY_AUTH_TOKEN_PATH": str(two_lines)}, str(two_lines))):
        with pytest.raises(TokenError) as caught:
            find_token(env)
        assert caught.value.path == source and "a cluster token an HTTP header can carry" in str(caught.value)


def test_a_job_ships_the_two_packages_and_the_space_and_nothing_else(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(REPO)
    staged = tmp_path / "staged"
    staged.mkdir()
    assert stage(REPO / "spaces" / "digits.yaml", into=staged) == "spaces/digits.yaml"
    assert sorted(p.name for p in staged.iterdir()) == ["search", "spaces", "trainables"]
    assert (staged / "search" / "__main__.py").is_file() and (staged / "trainables" / "train.py").is_file()
    assert not list(staged.rglob("__pycache__")) and not list(staged.rglob("*.pyc"))
    outside = tmp_path / "mine.yaml"
    outside.write_text((REPO / "spaces" / "digits.yaml").read_text())
    again = tmp_path / "again"
    again.mkdir()
    assert stage(outside, into=again) == "spaces/mine.yaml"  # a space from elsewhere
    assert (again / "spaces" / "mine.yaml").read_text() == outside.read_text()


def test_the_job_runs_search_run_with_the_options_given():
    args = argparse.Namespace(storage="/shared/runs", name="n1", resume="n1-20261204-1", verbose=1,
                              warm_start="n0-20261203-1")
    assert _entrypoint(args, "spaces/a b.yaml", "http://mlflow:5000") == (
        "python -m search run 'spaces/a b.yaml' --storage /shared/runs --tracking-uri http://mlflow:5000 "
        "--name n1 --resume n1-20261204-1 --warm-start n0-20261203-1 --verbose 1"
    )


def test_storage_a_submitted_search_can_use():
    assert _check_storage(DEFAULT_STORAGE) is None and _check_storage("/shared/runs") is None
    assert _check_storage("s3://bucket/runs") is None
    assert "'runs'" in _check_storage("runs")


@pytest.mark.parametrize(
    ("status", "driver_exit", "expected"),
    [
        ("SUCCEEDED", 0, exit_codes.OK),
        ("FAILED", 1, exit_codes.FAILED),
        ("FAILED", 2, exit_codes.INVALID),
        ("FAILED", 130, exit_codes.INTERRUPTED),
        ("STOPPED", None, exit_codes.INTERRUPTED),
        ("FAILED", None, exit_codes.FAILED),  # the runtime env failed: the driver never ran
        ("FAILED", -9, exit_codes.FAILED),
    ],
)
def test_a_finished_job_exits_with_the_search_s_own_status(status, driver_exit, expected):
    job = SimpleNamespace(status=SimpleNamespace(value=status), driver_exit_code=driver_exit)
    assert exit_code(job) == expected


def test_run_locations_keep_a_uri_s_query_at_its_end(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = RunLocation("runs", "s")
    assert not local.remote and local.local_dir == tmp_path / "runs" / "s" and local.parent == str(tmp_path / "runs")
    remote = RunLocation("s3://b/runs/?endpoint_override=127.0.0.1:9000&scheme=http", "s")
    assert remote.local_dir is None and remote.uri == "s3://b/runs/s?endpoint_override=127.0.0.1:9000&scheme=http"
    assert remote.shown_file("summary.txt") == "s3://b/runs/s/summary.txt?endpoint_override=127.0.0.1:9000&scheme=http"
    secret = RunLocation("s3://AK:SK@b/runs?secret_key=SK2", "s")  # as messages show them: no secrets
    assert str(secret) == "s3://AK:***@b/runs/s?secret_key=***" and secret.uri == "s3://AK:SK@b/runs/s?secret_key=SK2"
    assert secret.shown_file("losstune.json") == "s3://AK:***@b/runs/s/losstune.json?secret_key=***"
    assert local.shown_file("summary.txt") == f"{tmp_path}/runs/s/summary.txt"
    assert is_uri("gs://b/x") and is_uri("file:///tmp/x") and not is_uri("/tmp/x") and not is_uri("~/runs")
    local.write_text("f.txt", "one")
    local.write_text("f.txt", "two")
    assert local.read_text("f.txt") == "two" and local.read_text("missing") is None


def test_a_file_uri_names_a_local_run_directory_that_one_search_at_a_time_holds(tmp_path: Path):
    location = RunLocation((tmp_path / "my runs").as_uri(), "s")
    assert not location.remote and location.local_dir == tmp_path / "my runs" / "s"
    assert location.parent == str(tmp_path / "my runs") and location.uri == str(tmp_path / "my runs" / "s")
    assert RunLocation(f"file://localhost{tmp_path}", "s").local_dir == tmp_path / "s"
    assert RunLocation("file://nas/runs", "s").remote  # another host's path
    hold = RunDirectoryHold(location)
    hold.take(make=True)
    try:  # the same directory as a plain path: the lock is the same file
        with pytest.raises(SearchInputError, match="one `search run` at a time per search"):
            RunDirectoryHold(RunLocation(str(tmp_path / "my runs"), "s")).take(make=False)
    finally:
        hold.release()
    location.write_text("f.txt", "one")
    assert (tmp_path / "my runs" / "s" / "f.txt").read_text() == "one"


def test_storage_the_nodes_must_share_is_checked_behind_a_file_uri_too(tmp_path: Path):
    shared = tmp_path / "my runs"
    assert _node_local_storage(RunLocation(str(shared), "s")) == shared
    # a file:// URI names a path on each node's own file system, as a plain path does
    assert _node_local_storage(RunLocation(shared.as_uri(), "s")) == shared
    assert _node_local_storage(RunLocation(f"{shared.as_uri()}/", "s")) == shared
    assert _node_local_storage(RunLocation("s3://bucket/runs", "s")) is None  # every node's by nature


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://me:s3cret@db:5432/mlflow", "postgresql://me:***@db:5432/mlflow"),
        ("postgresql+psycopg2://me:p%40ss@db/mlflow?sslmode=require", "postgresql+psycopg2://me:***@db/mlflow?sslmode=require"),
        ("https://me:s3cret@mlflow.example.org/", "https://me:***@mlflow.example.org/"),
        # a password in the query, as libpq and SQLAlchemy take it: it went into report.md, uploaded
        ("postgresql://mlflow@db/mlflow?password=s3cret", "postgresql://mlflow@db/mlflow?password=***"),
        ("postgresql://db/m?sslmode=require&sslpassword=s3cret&application_name=x",
         "postgresql://db/m?sslmode=require&sslpassword=***&application_name=x"),
        ("https://mlflow.example.org/?access_token=s3cret&monkey=1", "https://mlflow.example.org/?access_token=***&monkey=1"),
        ("https://token@mlflow.example.org", "https://token@mlflow.example.org"),  # no password to leave out
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
        ("postgresql://me:s3cret@[::1/mlflow", "postgresql://me:***@[::1/mlflow"),  # unparsable, redacted all the same
    ],
)
def test_a_tracking_uri_is_shown_without_its_password(uri, shown):
    assert redact_uri(uri) == shown


def test_refusals_of_a_tracking_uri_leave_its_password_out():
    with pytest.raises(TrackingUriError) as caught:
        check_tracking_uri("ftp://me:s3cret@host/x", cluster=True)
    assert "me:***@host" in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(TrackingUriError) as caught:
        check_reachable("http://me:s3cret@127.0.0.1:1", timeout_s=2)
    assert "http://me:***@127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("argv", "message"), [
    (["report", "--tracking-uri", "http://h:abc"], "but got nonnumeric port: 'abc'"),
    (["report", "--tracking-uri", "postgresql://me:s3cret@[::1"], "a tracking URI that parses, but got "
                                                                    "'postgresql://me:***@[::1': Invalid IPv6 URL"),
    (["report", "--tracking-uri", "sqlite:////tmp/" + "a" * 300 + ".db"], "File name too long"),
    (["jobs", "--address", "http://[::1"], "a Ray dashboard address (http://HEAD:8265), but got 'http://[::1'"),
])
def test_an_address_or_uri_that_does_not_parse_exits_2_without_a_traceback(argv, message, capsys):
    # before: http.client.InvalidURL, ValueError or OSError tracebacks with exit 1
    from search.__main__ import main

    assert main(argv) == exit_codes.INVALID
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "s3cret" not in err


def test_a_tracking_server_reached_with_a_user_and_password_is_reachable(tmp_path: Path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:  # it answers 501 to every request: any status will do
        check_reachable(f"http://me:s3cret@127.0.0.1:{server.server_address[1]}", timeout_s=5)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("given", "address"), [("10.0.0.5:8265", "http://10.0.0.5:8265"), ("head:8265/", "http://head:8265"),
                                                ("https://head:8265", "https://head:8265")])
def test_a_dashboard_address_is_http(given, address):
    from search.cluster._client import dashboard_address

    assert dashboard_address(given) == address


@pytest.mark.parametrize("given", ["ray://head:10001", "ftp://x:1"])
def test_a_dashboard_address_of_another_scheme_is_refused_naming_it(given):
    # before: http://ray://head:10001, whose connection error blamed the cluster
    from search.cluster import ClusterError
    from search.cluster._client import dashboard_address

    with pytest.raises(ClusterError) as caught:
        dashboard_address(given)
    assert str(caught.value) == f"a Ray dashboard address (http://HEAD:8265, https://..., or HEAD:8265), but got {given!r}"
