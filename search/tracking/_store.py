"""Where a search is tracked and how its runs are named: store URIs, tags, states, search ids."""

from __future__ import annotations

import errno
import glob
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = [
    "DIMENSIONS_FILE",
    "holds_mlflow_tables",
    "ROLE_SEARCH",
    "ROLE_TRIAL",
    "SEARCH_ENDS",
    "TAG_ALARM_PREFIX",
    "TAG_AMP",
    "TAG_DEVICE",
    "TAG_DEVICE_NAME",
    "TAG_END_REASON",
    "TAG_ERROR",
    "TAG_GPU_ID",
    "TAG_NODE",
    "TAG_NODE_IP",
    "TAG_RAY_GPUS",
    "TAG_RAY_JOB_PREFIX",
    "TAG_RETRIES",
    "TAG_ROLE",
    "TAG_SEARCH_ID",
    "TAG_STATE",
    "TAG_TRIAL_ID",
    "TRIAL_STATES",
    "TrackingSettings",
    "all_pages",
    "artifact_location",
    "causes",
    "create_sqlite_store",
    "default_tracking_uri",
    "dimensions_json",
    "is_transient",
    "make_search_id",
    "redact_text",
    "redact_uri",
    "search_name_of",
    "resolve_tracking_uri",
    "same_store",
    "search_all_runs",
    "sqlite_may_pass",
    "sqlite_path",
    "use_buffered_requests",
]

TAG_SEARCH_ID = "losstune.search_id"
TAG_TRIAL_ID = "losstune.trial_id"
TAG_ROLE = "losstune.role"
# On a submitted search's parent run, one tag per Ray Job that ran it: losstune.ray_job.<id> = "1".
TAG_RAY_JOB_PREFIX = "losstune.ray_job."
# + the alarm's name (trainables.energy_alarm): the trial raised it; the value says why.
TAG_ALARM_PREFIX = "losstune.alarm."
# Where a trial ran (the Ray node; a retry on another node updates them).
TAG_NODE = "losstune.node"
TAG_NODE_IP = "losstune.node_ip"
TAG_RAY_GPUS = "losstune.ray_gpu_ids"
TAG_ERROR = "losstune.error"
TAG_END_REASON = "losstune.end_reason"
TAG_STATE = "losstune.state"
TAG_RETRIES = "losstune.retries"
# What a trial trained on, as its first result says (trainables.device.device_report).
TAG_DEVICE = "losstune.device"  # cpu or cuda
TAG_DEVICE_NAME = "losstune.device_name"
TAG_GPU_ID = "losstune.gpu_id"  # the GPU's index on its machine; empty on the CPU
TAG_AMP = "losstune.amp"  # the mixed precision train.amp resolved to there: off, fp16 or bf16
DIMENSIONS_FILE = "dimensions.json"  # parent artifact: the searched keys and their distributions
ROLE_SEARCH = "search"
ROLE_TRIAL = "trial"
# How a trial's run ended (its ``losstune.state`` tag) and the MLflow status it ends with. Stopping
# early is a normal end of a trial in a search, so the UI shows it finished (KILLED draws the same
# red cross as a crash); KILLED is kept for runs a search did not end on purpose.
TRIAL_STATES = {
    "finished": "FINISHED",
    "stopped_early": "FINISHED",  # by the scheduler (ASHA, median)
    "stopped_by_budget": "FINISHED",  # the search's time budget ran out
    "failed": "FAILED",
    "interrupted": "KILLED",  # the search was interrupted; resuming it continues the run
    "discarded": "KILLED",  # Tune never saved the trial before a crash; a resume ran its slot again
}
# How a search ended (the parent run's ``losstune.end_reason``) and the parent's MLflow status.
SEARCH_ENDS = {"finished": "FINISHED", "time_budget": "FINISHED", "all_failed": "FAILED", "interrupted": "KILLED"}
# Errors a server answers with that say "try again later"; any other answer is final.
# The HTTP answers MLflow's own REST client retries (its _TRANSIENT_FAILURE_RESPONSE_CODES).
_RETRY_LATER_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_LATER_CODES = ("TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED")
_PAGE = 1000  # runs per search_runs page (MLflow's maximum for most stores)


def _project_root() -> Path:
    """The repository holding the ``search`` package, where ``mlflow/`` (store + server script) lives."""
    return Path(__file__).resolve().parents[2]


def default_tracking_uri() -> str:
    """``sqlite:///<repo>/mlflow/mlflow.db`` when the package sits in the repository (it has an
    ``mlflow/`` folder), else ``sqlite:///<cwd>/mlflow/mlflow.db``."""
    root = _project_root()
    base = root if (root / "mlflow").is_dir() else Path.cwd()
    # quoted: a '?' or '%' in the repository's path would start a query or an escape
    return f"sqlite:///{quote(str((base / 'mlflow' / 'mlflow.db').resolve()))}"


def resolve_tracking_uri(*, cli: str | None, space: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Precedence: ``--tracking-uri`` (even an empty one, which the checks then refuse) >
    ``MLFLOW_TRACKING_URI`` (unless empty) > the space's ``mlflow.tracking_uri`` > default."""
    if cli is not None:
        return cli
    return environ.get("MLFLOW_TRACKING_URI") or space or default_tracking_uri()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a SQLite store's URI; None for another store and for SQLite's in-memory one."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    # Read as SQLAlchemy's make_url reads it for MLflow (sqlite:///relative/path.db,
    # sqlite:////absolute/path.db; a '#' is part of the path, '?' starts its query, %XX escapes are
    # decoded): a URL parser took '#...' for a fragment. Not make_url itself: importing SQLAlchemy
    # here would put 0.2 s on `search run`'s path to ray.init, which the store's thread imports beside.
    path = unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0])
    return Path(path) if path not in ("", ":memory:") else None


def same_store(first: str, second: str) -> bool:
    """Whether two tracking URIs name one store: equal but for their credentials (a user, a
    password, a secret query value), or the same SQLite file written two ways (the default URI is
    quoted since a version that wrote it unquoted into run directories)."""
    if _address(first) == _address(second):
        return True
    paths = sqlite_path(first), sqlite_path(second)
    return None not in paths and paths[0].resolve() == paths[1].resolve()


def _address(uri: str) -> str:
    """``uri`` without its credentials: its user info and the values of its secret query parameters."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@", r"\1", redact_uri(uri))


def holds_mlflow_tables(database_uri: str) -> bool:
    """Whether the database of a SQLAlchemy URI (sqlite:///, postgresql://, ...) holds MLflow's
    tables: MLflow creates them in any database it is pointed at, which a command that only reads
    must not let it do. Errors of connecting or reading are raised as they are."""
    import sqlalchemy
    from mlflow.store.db.utils import _all_tables_exist  # MLflow's own test for creating its tables

    engine = sqlalchemy.create_engine(database_uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        return _all_tables_exist(engine)
    finally:
        engine.dispose()


def create_sqlite_store(db: Path, *, default_artifact_root: str | None = None) -> None:
    """Create the SQLite store ``db`` unless it exists, so that it appears complete or not at all.

    MLflow creates a store in place: its first tables, then some fifty schema migrations, over
    about a second. A process killed meanwhile (Ctrl-C or SIGKILL in a search's first seconds)
    leaves a file on which every later open fails (a migration's temporary table already exists).
    So the store is made under a temporary name beside ``db`` and hard-linked into place once
    complete: a store another process created first is kept, never replaced. Where the file
    system has no hard links, MLflow creates it in place, as before. ``default_artifact_root``: of
    MLflow's Default experiment (None: where MLflow's client puts it; ``mlflow server`` serving
    artifacts uses ``mlflow-artifacts:/``). The store is made by MLflow's own factory, so that its
    settings (``MLFLOW_ENABLE_WORKSPACES``, a server's artifact root) apply as in its client."""
    # private, but the one place MLflow decides how a SQLAlchemy store is made
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store
    from sqlalchemy.engine import URL

    prefix = f".{db.name}.new-{socket.gethostname()}-"
    _remove_abandoned(db.parent, prefix)
    if db.exists():
        return
    scratch = db.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        uri = URL.create("sqlite", database=str(scratch)).render_as_string()
        _get_sqlalchemy_store(uri, default_artifact_root).engine.dispose()
        try:
            os.link(scratch, db)
        except FileExistsError:  # another process made it first: theirs is kept
            pass
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
    finally:
        for leftover in (scratch, scratch.with_name(f"{scratch.name}-journal")):
            leftover.unlink(missing_ok=True)


# os.link's errors where a file system has no hard links (MLflow then creates the store in place)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
# A creator writes its store for a few seconds; one whose file is older than this and whose
# process has gone died before it finished. The age keeps a live creator in another process
# namespace that shares this host name (a container on the host's network) from being taken.
_ABANDONED_AFTER_S = 600.0


def _remove_abandoned(folder: Path, prefix: str) -> None:
    """Remove the stores (and journals) that creators on this host left half made: their process
    has gone and their file was last written over ``_ABANDONED_AFTER_S`` ago. Never an error: a
    store that is in use must still open where one of them cannot be removed."""
    for leftover in folder.glob(glob.escape(prefix) + "*"):
        owner = re.match(r"(\d+)-", leftover.name[len(prefix):])
        try:
            if owner and not _alive(int(owner[1])) and time.time() - leftover.stat().st_mtime > _ABANDONED_AFTER_S:
                leftover.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (on Windows, where ``os.kill`` would end it: yes)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def artifact_location(tracking_uri: str) -> str | None:
    """The artifact root for a new experiment: ``artifacts/`` next to a SQLite store (so the store and
    its artifacts move together and ``mlflow/serve`` finds them); None lets a server decide."""
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "artifacts").resolve().as_uri()


def use_buffered_requests() -> None:
    """Make MLflow's REST client fail fast, for a process whose writes go through a
    ``SearchTracker`` buffer: by itself the client retries a failed request for minutes (7 retries
    with exponential backoff) and waits 120 s for a hung server, blocking Tune's driver loop; the
    buffer retries instead. MLflow reads these from the environment only; a value the environment
    already sets is kept."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def dimensions_json(searched: Mapping[str, Any]) -> str:
    """The parent run's record of what a search varies: flat key -> distribution in the space
    file's own form, so the report knows a log scale or a choice without the space validator."""
    from search.space import to_json

    return json.dumps({key: to_json(d) for key, d in searched.items()}, indent=2) + "\n"


# Query parameters that carry a secret: libpq's and SQLAlchemy's password= and sslpassword=, a
# server's token=, access_token=, api_key=.
_SECRET_QUERY = re.compile(
    r"((?:^|[&;])(?:[^=&;#]*(?:password|passwd|pwd|secret|token)[^=&;#]*|(?:[^=&;#]*[_-])?key)=)[^&;#]*",
    re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """``uri`` with the password of its user info replaced by ``***`` (``user:***@host``), and the
    value of every query parameter that names a secret (``?password=``, ``sslpassword=``,
    ``access_token=``), as every message and record shows a tracking URI: only the search itself
    needs them."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # unparsable (an unclosed [IPv6 address): whatever stands between :// and @ goes
        uri = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", uri)
    else:
        userinfo, at, hostport = parts.netloc.rpartition("@")
        if at and ":" in userinfo:
            uri = urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}"))
    # on the text, not through urlunsplit, which drops what it does not need (sqlite:////abs)
    head, mark, query = uri.partition("?")
    return head + mark + _SECRET_QUERY.sub(r"\1***", query)


def redact_text(text: str, uri: str) -> str:
    """``text`` (an error's, which MLflow's REST client writes with the whole URL it asked) with the
    secrets of ``uri`` in it replaced by ``***`` as ``redact_uri`` replaces them."""
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    if password:
        text = text.replace(f":{password}@", ":***@")
    query = uri.partition("?")[2]
    for match in _SECRET_QUERY.finditer(query):  # each secret's name=value, as the URI holds it
        value = match.group(0)[len(match.group(1)):]
        if value:
            text = text.replace(f"{match.group(1)}{value}", f"{match.group(1)}***")
    return text


def make_search_id(name: str) -> str:
    """A new id for every search (its start time and random digits), never derived from its name or
    directory: a second search of the same name, after its run directory was removed, must not
    find and change the first one's runs. A resume reads the id from the run directory."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


# the ids make_search_id gives
_SEARCH_ID = re.compile(r"(?P<name>.+)-\d{8}-\d{6}-[0-9a-f]+")


def search_name_of(search_id: str) -> str | None:
    """The name ``make_search_id`` made ``search_id`` from; None for an id of another form."""
    made = _SEARCH_ID.fullmatch(search_id)
    return made["name"] if made is not None else None


def all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paged MLflow search: ``fetch(page_token)`` returns one page (with ``.token``)."""
    items: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def search_all_runs(client: Any, experiment_ids: list[str], *, query: str, order_by: list[str] | None = None) -> list[Any]:
    """Every run matching ``query``, through all of MLflow's result pages."""
    return all_pages(
        lambda token: client.search_runs(
            experiment_ids, filter_string=query, order_by=order_by, max_results=_PAGE, page_token=token
        )
    )


@dataclass(frozen=True)
class TrackingSettings:
    """What identifies a search in MLflow; plain values, so the Tune callback holding it pickles."""

    tracking_uri: str
    experiment: str
    search_id: str
    search_name: str
    objective_metric: str  # the primary objective: the parent logs its best value
    objective_mode: str  # "min" | "max"
    # the search's other objectives: each trial logs best/<metric>, its value at the trial's best epoch
    other_objectives: tuple[str, ...] = ()
    retry_interval_s: float = 5.0  # while the store is unreachable: seconds between attempts
    flush_timeout_s: float = 600.0  # how long flush() (the end of a search) waits for the store


def is_transient(exc: BaseException) -> bool:
    """Whether a failed MLflow call may succeed later: the store was not reached (refused, reset,
    timed out: an OSError, which MLflow's REST client raises its own exception from) or answered
    "not now" (503, 504, 429, also from a proxy in front of a restarting server). An error the
    server answered with otherwise (an invalid value, a missing run) is final."""
    from mlflow.exceptions import MlflowException

    passing = sqlite_may_pass(exc)
    if passing is not None:  # a SQLite store: MLflow calls each of its errors TEMPORARILY_UNAVAILABLE
        return passing
    for cause in causes(exc):
        # requests' HTTPError (an artifact upload's answer) is an OSError too, but the server answered
        status = getattr(getattr(cause, "response", None), "status_code", None)
        if isinstance(cause, OSError) and isinstance(status, int):
            return status in _RETRY_LATER_STATUSES
    if any(isinstance(cause, OSError) for cause in causes(exc)):  # requests' and urllib3's errors, sockets
        return True
    return isinstance(exc, MlflowException) and exc.error_code in _RETRY_LATER_CODES


def is_refusal(exc: BaseException) -> bool:
    """Whether the store answered ``exc`` (MLflow's exception, or an HTTP answer with a status): a
    refusal of that write, which the search may go on without; anything else is a failure of ours."""
    from mlflow.exceptions import MlflowException

    return any(isinstance(cause, MlflowException) or isinstance(getattr(getattr(cause, "response", None),
               "status_code", None), int) for cause in causes(exc))  # fmt: skip


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors behind it, nearest first: what it was raised from or while handling,
    and the driver's error a SQLAlchemy error holds as ``orig``."""
    cause: BaseException | None = exc
    while cause is not None:
        yield cause
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__


def sqlite_may_pass(exc: BaseException) -> bool | None:
    """Whether a SQLite error behind ``exc`` may pass on a later try: another process held the
    store (SQLITE_BUSY, SQLITE_LOCKED), the disk or a network file system failed for a moment
    (SQLITE_IOERR, SQLITE_PROTOCOL, SQLITE_CANTOPEN: also out of file handles), the disk was full
    (SQLITE_FULL). What every try meets is final: a read-only file, a missing table, not a
    database. None when no SQLite error is behind ``exc``."""
    import sqlite3

    passing = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PROTOCOL,
               sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL}
    for cause in causes(exc):
        if isinstance(cause, sqlite3.Error):
            # the low byte: the primary code of an extended one (SQLITE_BUSY_SNAPSHOT)
            return (getattr(cause, "sqlite_errorcode", 0) & 0xFF) in passing
    return None


