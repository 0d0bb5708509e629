"""deploy/mlflow-postgres.sh for real: a PostgreSQL server of the test's own (initdb in a temporary
directory, a free loopback port, password authentication), the script creating the database and
role and starting MLflow on it, then two searches logging to it at the same time, each with its
own local Ray. PostgreSQL missing is a failure, not a skip: `make postgres` installs it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from search.tracking import (
    ROLE_SEARCH,
    ROLE_TRIAL,
    TAG_ROLE,
    TAG_SEARCH_ID,
    TAG_TRIAL_ID,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "mlflow-postgres.sh"
ADMIN_PASSWORD = "admin-secret-for-the-test"
TRIALS = 3


def _postgres_bin() -> Path:
    """The directory of initdb and postgres (Debian keeps them off PATH, in /usr/lib/postgresql/N/bin)."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise AssertionError(
        "the PostgreSQL test needs initdb and postgres (Debian package postgresql): run `make postgres` "
        "(make test installs it when run as root)"
    )


@dataclass(frozen=True)
class Postgres:
    port: int
    env: dict[str, str]  # libpq variables of the admin role


@pytest.fixture
def postgres(spawn, kit) -> Iterator[Postgres]:
    bin_dir = _postgres_bin()
    assert shutil.which("psql"), (
        "the PostgreSQL test needs psql (Debian package postgresql-client): run `make postgres`"
    )
    # PostgreSQL refuses to run as root: as root it runs as the `postgres` user, in a directory of
    # /tmp it owns (pytest's tmp_path is root's, mode 700, out of its reach).
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise AssertionError(
                "running as root, the PostgreSQL test needs the user `postgres`: run `make postgres`"
            ) from None
    root = Path(tempfile.mkdtemp(prefix="losstune-pg-"))
    (root / "pw").write_text(ADMIN_PASSWORD + "\n")
    if user:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(root / "pw", user.pw_uid, user.pw_gid)
    as_user = (
        {"user": user.pw_uid, "group": user.pw_gid, "env": {"PATH": os.environ["PATH"], "HOME": str(root)}}
        if user
        else {}
    )
    subprocess.run(
        [
            bin_dir / "initdb",
            "-D",
            root / "data",
            "-U",
            "postgres",
            f"--pwfile={root / 'pw'}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        **as_user,
    )
    port = kit.free_port()
    process = spawn(
        [
            bin_dir / "postgres",
            "-D",
            root / "data",
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={root}",
            "-c",
            "fsync=off",
        ],
        log=root / "postgres.log",
        what=f"postgres on port {port}",
        stop_signal=signal.SIGINT,
        **as_user,
    )
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "postgres", "PGPASSWORD": ADMIN_PASSWORD}
    ready = lambda: (
        subprocess.run(
            ["psql", "-X", "-d", "postgres", "-c", "SELECT 1"], env={**os.environ, **env}, capture_output=True
        ).returncode
        == 0
    )
    kit.wait_for(ready, timeout=60, what="PostgreSQL accepting connections", alive=process, log=root / "postgres.log")
    yield Postgres(port, env)
    spawn.stop(process, signal.SIGINT)  # before its directory goes
    shutil.rmtree(root, ignore_errors=True)


def _server_env(postgres: Postgres, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **postgres.env, "MLFLOW_DB_PASSWORD_FILE": str(tmp_path / "mlflow-db-password")}


def test_two_searches_log_to_mlflow_on_postgres_at_the_same_time(postgres: Postgres, spawn, kit, tmp_path: Path,
                                                                 process_tree):
    import psycopg2

    from mlflow import MlflowClient

    port = kit.free_port()
    env = _server_env(postgres, tmp_path)
    server = spawn(
        [SCRIPT, "--port", str(port), "--artifacts", tmp_path / "artifacts"],
        env=env,
        log=tmp_path / "server.log",
        what=f"deploy/mlflow-postgres.sh on port {port}",
    )
    url = f"http://127.0.0.1:{port}"
    kit.wait_for(
        lambda: kit.http_ok(f"{url}/health"),
        timeout=120,
        what="MLflow on PostgreSQL answering /health",
        alive=server,
        log=tmp_path / "server.log",
    )
    assert kit.listening_addresses(port) == {"0100007F"}, "the server listens on 127.0.0.1 only unless asked"
    password = (tmp_path / "mlflow-db-password").read_text()
    assert len(password) >= 32 and (tmp_path / "mlflow-db-password").stat().st_mode & 0o077 == 0
    for pid in process_tree(server.pid):  # the password reaches the server through its environment only
        assert password not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")

    space = kit.tiny_space(tmp_path / "space.yaml", num_samples=TRIALS)
    searches = {}
    for name in ("team-a", "team-b"):  # started together, each with a local Ray of one CPU
        argv = [
            sys.executable,
            "-m",
            "search",
            "run",
            space,
            "--storage",
            tmp_path / "runs",
            "--name",
            name,
            "--tracking-uri",
            url,
            "--num-cpus",
            "1",
        ]
        searches[name] = spawn(
            argv,
            cwd=REPO,
            log=tmp_path / f"{name}.log",
            what=f"search {name}",
            env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        )
    for name, process in searches.items():
        try:
            code = process.wait(timeout=420)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"search {name} exited with {code}:\n{(tmp_path / f'{name}.log').read_text()[-4000:]}"

    # Both searches run the same space, so they share its experiment (created once, by whichever
    # came first) and are told apart by their search ids.
    client = MlflowClient(tracking_uri=url)
    experiments = client.search_experiments(filter_string="name = 'tiny-deploy'")
    assert len(experiments) == 1, experiments
    runs = client.search_runs([experiments[0].experiment_id], max_results=1000)
    assert len(runs) == 2 * (1 + TRIALS), [r.data.tags for r in runs]
    for name in searches:
        search_id = json.loads((tmp_path / "runs" / name / "losstune.json").read_text())["search_id"]
        mine = [r for r in runs if r.data.tags.get(TAG_SEARCH_ID) == search_id]
        parents = [r for r in mine if r.data.tags.get(TAG_ROLE) == ROLE_SEARCH]
        children = [r for r in mine if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL]
        assert len(parents) == 1 and len(children) == TRIALS and len(mine) == 1 + TRIALS, [r.data.tags for r in mine]
        assert parents[0].info.status == "FINISHED"
        assert len({r.data.tags[TAG_TRIAL_ID] for r in children}) == TRIALS, "one run per trial, no duplicates"
        for child in children:
            assert child.info.status == "FINISHED", (child.info.run_id, child.data.tags)
            assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            history = client.get_metric_history(child.info.run_id, "val/acc_mean")
            assert sorted(m.step for m in history) == list(range(1, kit.TINY_EPOCHS + 1)), history
            assert any(key.startswith("test/") for key in child.data.metrics), child.data.metrics

    # The runs are in PostgreSQL, in the database and under the role the script created.
    with (
        closing(
            psycopg2.connect(host="127.0.0.1", port=postgres.port, user="mlflow", password=password, dbname="mlflow")
        ) as db,
        db.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == len(runs)


def test_a_second_start_reuses_the_database_and_its_password(postgres: Postgres, tmp_path: Path):
    """Creating is idempotent; a role that exists with another password is reported, not changed."""
    env = {**_server_env(postgres, tmp_path), "MLFLOW_BIN": "/bin/echo"}  # the server command, not a server
    first = subprocess.run(
        [SCRIPT, "--port", "5999"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    second = subprocess.run(
        [SCRIPT, "--port", "5999"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert "--backend-store-uri postgresql+psycopg2://mlflow@127.0.0.1:" in second.stdout
    assert "--host 127.0.0.1 --port 5999" in second.stdout
    wrong = subprocess.run(
        [SCRIPT],
        env={**env, "MLFLOW_DB_PASSWORD": "not-the-password"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "set MLFLOW_DB_PASSWORD to its password" in wrong.stderr


def test_the_role_password_never_goes_on_a_command_line(postgres: Postgres, tmp_path: Path):
    # every psql the script runs is logged with its arguments, as `ps` would show them
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "psql-calls"
    real = shutil.which("psql")
    wrapper = bin_dir / "psql"
    wrapper.write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    password = "it's a \"pw\" with \\x and $HOME"  # quotes, a backslash and a dollar kept as they are
    env = {**_server_env(postgres, tmp_path), "MLFLOW_BIN": "/bin/echo", "MLFLOW_DB_PASSWORD": password,
           "MLFLOW_DB_USER": "quoted_role", "MLFLOW_DB": "quoted_db"}
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    done = subprocess.run([SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    logged = calls.read_text()
    assert logged.count("\n") >= 2 and "pw" not in logged and "it's" not in logged
    # the role got the password as given: the script's own login with it (PGPASSWORD) succeeded, and so does ours
    import psycopg2

    with closing(psycopg2.connect(dbname="quoted_db", user="quoted_role", password=password,
                                  host=postgres.env["PGHOST"], port=postgres.env["PGPORT"])):
        pass
