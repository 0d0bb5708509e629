"""``search submit``, ``jobs``, ``logs`` and ``stop`` against a fake Ray Jobs API (an aiohttp server
in a thread of this process) that misbehaves as a real cluster can: a port that never answers, an
answer that is not Ray's, a job agent that is not ready (503), a log stream that breaks, and jobs
whose metadata names any tracking URI. Each is one clear message and exit status 2 (or a note),
never a traceback or a hang."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray.job_submission  # noqa: F401 - here, not under capsys: Ray's log handler keeps the stderr it finds
from aiohttp import web

import search.cluster._client
import search.commands.jobs
from search import exit_codes
from search._shell import python_path, search_command
from search.__main__ import main
from search.cluster import (META_NAME, META_SPACE, META_SPACE_HERE, META_STORAGE, META_TRACKING_URI,
                            SUBMITTED_ADDRESS_ENV)

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "tests" / "cluster" / "spaces" / "spread.yaml"
VERSION = {"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"}


def job_record(job_id: str, *, status: str = "RUNNING", tracking_uri: str = "http://127.0.0.1:1",
               space_here: str | None = "/home/me/spaces/x.yaml", driver_exit_code: int | None = None) -> dict:
    """A job as Ray's Jobs API lists it, submitted by ``search submit``."""
    metadata = {META_SPACE: "spaces/x.yaml", META_NAME: "x", META_STORAGE: "/shared/runs",
                META_TRACKING_URI: tracking_uri}
    if space_here is not None:
        metadata[META_SPACE_HERE] = space_here
    return {
        "type": "SUBMISSION", "job_id": "02000000", "submission_id": job_id, "driver_info": None, "status": status,
        "entrypoint": shlex.join(["python", "-m", "search", "run", "spaces/x.yaml", "--storage", "/shared/runs",
                                  "--tracking-uri", tracking_uri]),
        "message": "", "error_type": None, "start_time": 1765000000000, "end_time": None, "metadata": metadata,
        "runtime_env": {}, "driver_agent_http_address": None, "driver_node_id": None,
        "driver_exit_code": driver_exit_code,
    }  # fmt: skip


class FakeJobsApi:
    """Ray's Jobs API as far as losstune uses it, also answering MLflow's /health (so its address
    passes for a tracking server). ``failing``: the status of every job request (503: no job
    agent); ``drop_tail``: the log stream breaks after one line."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.version: dict[str, str] = dict(VERSION)
        self.failing: int | None = None
        self.drop_tail = False
        self.requests: list[str] = []
        self.submitted: list[dict] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.add_routes([
            web.get("/api/version", lambda r: web.json_response(self.version)),
            web.get("/health", lambda r: web.Response(text="OK")),
            web.get("/api/v0/nodes", self._nodes),
            web.get("/api/jobs/", self._list),
            web.post("/api/jobs/", self._submit),
            web.get("/api/jobs/{id}/logs", self._logs),
            web.get("/api/jobs/{id}/logs/tail", self._tail),
            web.post("/api/jobs/{id}/stop", self._stop),
            web.get("/api/packages/{protocol}/{file}", lambda r: web.Response(status=404)),
            web.put("/api/packages/{protocol}/{file}", lambda r: web.json_response({})),
        ])  # fmt: skip
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.failing is not None and request.path.startswith("/api/jobs/"):
            return web.Response(status=self.failing, text="Failed to get job agent: no agent ready")
        return await handler(request)

    async def _nodes(self, request: web.Request) -> web.Response:
        row = {"node_id": "ab" * 28, "node_ip": "127.0.0.1", "is_head_node": True, "state": "ALIVE",
               "resources_total": {"CPU": 4.0}}
        return web.json_response({"result": True, "msg": "", "data": {"result": {"total": 1, "result": [row]}}})

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.jobs.values()))

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.submitted.append(body)
        job = job_record(body["submission_id"])
        job.update(entrypoint=body["entrypoint"], metadata=body.get("metadata") or {})
        self.jobs[body["submission_id"]] = job
        return web.json_response({"job_id": "02000000", "submission_id": body["submission_id"]})

    async def _logs(self, request: web.Request) -> web.Response:
        return web.json_response({"logs": "[trial] epoch 1/3\n"})

    async def _tail(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("[trial] epoch 1/3\n")
        if self.drop_tail:
            await asyncio.sleep(0.2)
            request.transport.abort()  # the connection drops (a network outage, a dashboard restart)
            return ws
        await ws.close()
        return ws

    async def _stop(self, request: web.Request) -> web.Response:
        job = self.jobs[request.match_info["id"]]
        job["status"] = "STOPPED"
        return web.json_response({"stopped": True})


@pytest.fixture
def jobs_api() -> Iterator[FakeJobsApi]:
    fake = FakeJobsApi()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """``cli(*args)``: ``python -m search ARGS`` in this process, with no token anywhere and MLflow's
    client settings as they were afterwards."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "RAY_API_SERVER_ADDRESS", "RAY_ADDRESS",
                 "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    # Unset, as `search jobs` must set them itself; removed again after the test
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    def run(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def _refused(done: subprocess.CompletedProcess, *texts: str, code: int = exit_codes.INVALID) -> None:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: "), done.stderr
    assert ", but got " in done.stderr
    for text in texts:
        assert text in done.stderr, done.stderr


# 1. `search jobs` and the tracking URIs jobs name


def test_jobs_never_creates_the_sqlite_store_a_job_names(jobs_api, cli, tmp_path):
    db = tmp_path / "planted" / "by-cluster.db"
    db.parent.mkdir()
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", tracking_uri=f"sqlite:///{db}")
    done = cli("jobs", "--address", jobs_api.url)
    assert done.returncode == exit_codes.OK, done.stderr
    assert not db.exists() and not list(db.parent.iterdir())
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("losstune-x-abc")]
    assert row.split()[-1] == "-"  # no search id
    assert f"note: no search ids from MLflow at sqlite:///{db}: a search on a Ray cluster logs to" in done.stderr


def test_jobs_gives_up_on_an_mlflow_server_that_does_not_answer_in_seconds(jobs_api, cli, silent_port, monkeypatch):
    monkeypatch.setattr(search.commands.jobs, "_MLFLOW_WAIT_S", 1.0)
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", tracking_uri="http://127.0.0.1:1")
    jobs_api.jobs["losstune-y-abc"] = job_record("losstune-y-abc", tracking_uri=f"http://127.0.0.1:{silent_port}")
    # a database that accepts the connection and never answers: the driver's connect has no timeout
    jobs_api.jobs["losstune-z-abc"] = job_record(
        "losstune-z-abc", tracking_uri=f"postgresql+psycopg2://me:secret@127.0.0.1:{silent_port}/db")
    started = time.monotonic()
    done = cli("jobs", "--address", jobs_api.url)
    assert time.monotonic() - started < 15  # MLflow's own retries took 4 minutes
    assert done.returncode == exit_codes.OK, done.stderr
    assert len([line for line in done.stdout.splitlines() if line.startswith("losstune-")]) == 3
    assert "note: no search ids from MLflow at http://127.0.0.1:1: " in done.stderr
    assert f"note: no search ids from MLflow at http://127.0.0.1:{silent_port}: " in done.stderr
    assert (f"note: no search ids from MLflow at postgresql+psycopg2://me:***@127.0.0.1:{silent_port}/db: "
            "TimeoutError: no answer within 1 s") in done.stderr
    assert "secret" not in done.stdout + done.stderr


def test_the_dashboard_is_found_in_ray_address_as_ray_s_job_commands_find_it(jobs_api, cli, monkeypatch):
    # before: RAY_ADDRESS=http://HEAD:8265 (what `ray job submit` reads) was ignored: "got none"
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", tracking_uri="http://127.0.0.1:1")
    monkeypatch.setenv("RAY_ADDRESS", jobs_api.url)
    done = cli("jobs")
    assert done.returncode == exit_codes.OK, done.stderr
    assert any(line.startswith("losstune-x-abc") for line in done.stdout.splitlines())
    # a GCS address there is what `search run` joins: no dashboard address, and the error says so
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    _refused(cli("jobs"), "or RAY_ADDRESS as an http:// URL), but got none (RAY_ADDRESS='10.0.0.5:6379' names no "
                          "dashboard: its default is http://HEAD:8265)")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:1")  # Ray's order: this one first
    monkeypatch.setenv("RAY_ADDRESS", jobs_api.url)
    _refused(cli("jobs"), "http://127.0.0.1:1")


# 2. A cluster that misbehaves


def test_a_dashboard_port_that_never_answers_is_an_error_not_a_hang(cli, silent_port, monkeypatch):
    monkeypatch.setattr(search.cluster._client, "_TIMEOUT_S", 0.5)
    started = time.monotonic()
    done = cli("jobs", "--address", f"127.0.0.1:{silent_port}")
    assert time.monotonic() - started < 10
    _refused(done, "a Ray cluster whose dashboard answers at --address", "ReadTimeout")


def test_an_answer_without_ray_s_version_is_an_error(jobs_api, cli):
    del jobs_api.version["ray_version"]
    _refused(cli("jobs", "--address", jobs_api.url), "answers /api/version without Ray's version")


@pytest.mark.parametrize("command", [["jobs"], ["logs", "losstune-x-abc"], ["stop", "losstune-x-abc"]])
def test_a_jobs_api_without_its_job_agent_is_an_error_saying_so(jobs_api, cli, command):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc")
    jobs_api.failing = 503
    _refused(cli(*command, "--address", jobs_api.url), f"the Jobs API of the cluster at {jobs_api.url}",
             "its job agent ready", "status 503: Failed to get job agent")


@pytest.mark.parametrize("command", ["logs", "stop"])
def test_a_jobs_api_failing_after_the_job_was_found_is_an_error(jobs_api, cli, monkeypatch, command):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc")
    from search.cluster import _jobs

    real = _jobs.find_job

    def find_then_fail(cluster: Any, job_id: str) -> Any:
        job = real(cluster, job_id)
        jobs_api.failing = 503  # the agent goes away between two requests
        return job

    monkeypatch.setattr(_jobs, "find_job", find_then_fail)
    monkeypatch.setattr(search.cluster, "find_job", find_then_fail)
    done = cli(command, "losstune-x-abc", "--address", jobs_api.url)
    _refused(done, "its job agent ready", "status 503")


def test_a_connection_lost_while_following_says_the_job_may_go_on_and_how_to_follow_it(jobs_api, cli):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc")
    jobs_api.drop_tail = True
    done = cli("logs", "losstune-x-abc", "--address", jobs_api.url, "--follow")
    assert "[trial] epoch 1/3" in done.stdout
    # exit 3, not 2 (refused input), which a script could take for a job never run
    _refused(done, "the connection lost", "the job may still be running",
             f"follow it again with {search_command()} logs losstune-x-abc --address {jobs_api.url} --follow",
             code=exit_codes.LOST)


def test_following_a_job_to_its_end_says_how_it_ended(jobs_api, cli):
    # before: `logs --follow` ended with the log's last line and no word of the job's state
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", status="SUCCEEDED", driver_exit_code=0)
    done = cli("logs", "losstune-x-abc", "--address", jobs_api.url, "--follow")
    assert done.returncode == exit_codes.OK, done.stderr
    assert done.stdout == "[trial] epoch 1/3\n" and done.stderr == "job losstune-x-abc: SUCCEEDED (exit status 0)\n"


def test_a_log_stream_that_ends_before_its_job_is_a_lost_connection(jobs_api, cli):
    # a head shutting down closes the stream as a job's end does: before, exit 1 and not a word
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", status="RUNNING")
    done = cli("logs", "losstune-x-abc", "--address", jobs_api.url, "--follow")
    _refused(done, "the connection lost (its log ended while it was RUNNING)", "the job may still be running",
             code=exit_codes.LOST)


# 2, 4, 5, 6. Submitting


def _submit(cli, jobs_api, *more: str, space: Path = SPACE, tracking_uri: str | None = None):
    return cli("submit", str(space), "--address", jobs_api.url, "--tracking-uri", tracking_uri or jobs_api.url,
               "--storage", "/shared/runs", *more)


def test_submit_wait_with_its_connection_lost_says_how_to_follow_the_job_again(jobs_api, cli):
    jobs_api.drop_tail = True
    done = _submit(cli, jobs_api, "--wait")
    (job_id,) = jobs_api.jobs
    assert f"as Ray Job {job_id}" in done.stdout
    # exit 3: submitted, its outcome unknown (2 said the submission was refused, and a script resubmitted)
    _refused(done, "the job may still be running", f"{search_command()} logs {job_id} --address {jobs_api.url} --follow",
             code=exit_codes.LOST)


def test_submit_records_a_storage_uri_without_its_secret(jobs_api, cli):
    # before: the job's metadata, which `search jobs` and `stop` read, held the object store's secret key
    done = _submit(cli, jobs_api, "--storage", "s3://AKID:wJalrSECRET@bucket/runs?region=eu-west-1")
    assert done.returncode == exit_codes.OK, done.stderr
    (submitted,) = jobs_api.submitted
    assert submitted["metadata"][META_STORAGE] == "s3://AKID:***@bucket/runs?region=eu-west-1"
    assert "s3://AKID:wJalrSECRET@bucket/runs?region=eu-west-1" in shlex.split(submitted["entrypoint"])  # the search's
    assert "wJalrSECRET" not in done.stdout + done.stderr


def test_submit_refuses_a_name_that_is_not_a_search_name_before_contacting_the_cluster(jobs_api, cli):
    done = _submit(cli, jobs_api, "--name", "my run/../x y")
    _refused(done, "--name: a search name of 1 to 100 letters", "'my run/../x y'")
    assert not any(request.startswith(("GET /api/", "POST /api/")) for request in jobs_api.requests)
    assert not jobs_api.submitted


def test_submit_records_the_space_as_submitted_and_the_tracking_uri_without_its_password(jobs_api, cli, tmp_path):
    folder = tmp_path / "my spaces"
    folder.mkdir()
    space = folder / "spread.yaml"
    space.write_text(SPACE.read_text())
    secret_uri = jobs_api.url.replace("http://", "http://me:s3cret@")
    done = _submit(cli, jobs_api, space=space, tracking_uri=secret_uri)
    assert done.returncode == exit_codes.OK, done.stderr
    (submitted,) = jobs_api.submitted
    redacted = jobs_api.url.replace("http://", "http://me:***@")
    assert submitted["metadata"][META_SPACE] == "spaces/spread.yaml"  # the job's own copy
    assert submitted["metadata"][META_SPACE_HERE] == str(space)
    # what the search's own resume line names (its store's password left out there)
    assert submitted["runtime_env"]["env_vars"][SUBMITTED_ADDRESS_ENV] == jobs_api.url
    assert submitted["metadata"][META_TRACKING_URI] == redacted
    assert shlex.split(submitted["entrypoint"])[-1] == secret_uri  # the search itself needs the password
    assert f"MLflow:    {redacted}" in done.stdout and "s3cret" not in done.stdout + done.stderr
    job_id = submitted["submission_id"]
    follow = shlex.split(done.stdout.split("follow:", 1)[1].splitlines()[0])
    assert follow == [python_path(), "-m", "search", "logs", job_id, "--address", jobs_api.url, "--follow"]

    # `search jobs` shows the space as submitted; `search stop` resumes it from there, redacted
    listed = cli("jobs", "--address", jobs_api.url)
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(job_id)]
    assert str(space) in row and "s3cret" not in listed.stdout + listed.stderr
    stopped = cli("stop", job_id, "--address", jobs_api.url)
    assert stopped.returncode == exit_codes.OK, stopped.stderr
    resume = shlex.split(stopped.stdout.split("resume it with: ", 1)[1].strip())
    assert resume == [python_path(), "-m", "search", "submit", str(space), "--address", jobs_api.url,
                      "--storage", "/shared/runs", "--name", "spread", "--tracking-uri", redacted]
    assert "s3cret" not in stopped.stdout + stopped.stderr


def test_submit_prints_what_it_submitted_and_not_ray_s_packaging_steps(jobs_api, tmp_path):
    # before: "INFO dashboard_sdk.py:371 -- Uploading package gcs://_ray_pkg_....zip." and
    # "INFO packaging.py:785 -- Creating a file package ..." on stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-m", "search", "submit", str(SPACE), "--address", jobs_api.url, "--tracking-uri",
         jobs_api.url, "--storage", "/shared/runs"],
        cwd=REPO, env={**env, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120)  # fmt: skip
    assert done.returncode == exit_codes.OK, done.stderr
    assert "Submitted search" in done.stdout and done.stderr == "", done.stderr


def test_submit_refuses_an_unreachable_store_without_showing_its_password(jobs_api, cli):
    done = _submit(cli, jobs_api, tracking_uri="http://me:s3cret@127.0.0.1:1")
    _refused(done, "http://me:***@127.0.0.1:1")
    assert "s3cret" not in done.stderr


# 3. Stopping a job that already ended


@pytest.mark.parametrize(
    ("status", "driver_exit", "resumable"),
    [("SUCCEEDED", 0, False), ("FAILED", 1, False), ("FAILED", None, False), ("STOPPED", None, True),
     ("FAILED", exit_codes.INTERRUPTED, True)],
)
def test_stop_of_a_job_that_already_ended_leaves_it_and_offers_a_resume_only_when_there_is_one(
        jobs_api, cli, status, driver_exit, resumable):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", status=status, driver_exit_code=driver_exit)
    done = cli("stop", "losstune-x-abc", "--address", jobs_api.url)
    assert done.returncode == exit_codes.OK, done.stderr
    assert f"job losstune-x-abc had already ended: {status}; nothing to stop" in done.stdout
    assert not any(request.endswith("/stop") for request in jobs_api.requests)
    assert (f"resume it with: {search_command()} submit /home/me/spaces/x.yaml" in done.stdout) == resumable


@pytest.mark.parametrize(
    ("status", "driver_exit", "said", "resumable"),
    [("SUCCEEDED", 0, "ended SUCCEEDED", False), ("RUNNING", None, "goes on in job losstune-x-new (RUNNING)", False),
     ("STOPPED", None, "ended STOPPED", True)],
)
def test_stop_of_an_old_job_of_a_search_submitted_again_goes_by_the_newest_job(jobs_api, cli, status, driver_exit,
                                                                               said, resumable):
    # before: the old job's STOPPED status offered a resume of a search that had finished since,
    # and the command printed failed on the cluster ("search 'x' already finished")
    jobs_api.jobs["losstune-x-old"] = job_record("losstune-x-old", status="STOPPED")
    newer = job_record("losstune-x-new", status=status, driver_exit_code=driver_exit)
    newer["start_time"] += 60_000
    jobs_api.jobs["losstune-x-new"] = newer
    other = job_record("losstune-y-1", status="STOPPED")  # another search's job, later still
    other["start_time"] += 120_000
    other["metadata"][META_NAME] = "y"
    jobs_api.jobs["losstune-y-1"] = other
    done = cli("stop", "losstune-x-old", "--address", jobs_api.url)
    assert done.returncode == exit_codes.OK, done.stderr
    assert "job losstune-x-old had already ended: STOPPED; nothing to stop" in done.stdout
    assert said in done.stdout
    assert not any(request.endswith("/stop") for request in jobs_api.requests)
    assert ("resume it with: " in done.stdout) == resumable


def test_stop_of_a_running_job_stops_it_and_prints_a_resume_command_quoted(jobs_api, cli):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", space_here="/home/me/my spaces/x.yaml")
    done = cli("stop", "losstune-x-abc", "--address", jobs_api.url)
    assert done.returncode == exit_codes.OK, done.stderr
    assert "POST /api/jobs/losstune-x-abc/stop" in jobs_api.requests
    assert "job losstune-x-abc: STOPPED" in done.stdout
    assert f"resume it with: {search_command()} submit '/home/me/my spaces/x.yaml' --address" in done.stdout


def test_stop_of_a_job_submitted_before_the_space_was_recorded_names_its_copy(jobs_api, cli):
    jobs_api.jobs["losstune-x-abc"] = job_record("losstune-x-abc", status="STOPPED", space_here=None)
    done = cli("stop", "losstune-x-abc", "--address", jobs_api.url)
    assert f"resume it with: {search_command()} submit spaces/x.yaml" in done.stdout


def test_jobs_reads_the_tracking_uri_from_the_job_s_command_where_its_password_is():
    from types import SimpleNamespace

    from search.cluster import job_tracking_uri

    job = SimpleNamespace(**json.loads(json.dumps(job_record("j", tracking_uri="postgresql://me:pw@db/mlflow"))))
    job.metadata[META_TRACKING_URI] = "postgresql://me:***@db/mlflow"
    assert job_tracking_uri(job) == "postgresql://me:pw@db/mlflow"
    job.entrypoint = "python -m search run x.yaml"  # not one losstune wrote
    assert job_tracking_uri(job) == "postgresql://me:***@db/mlflow"
