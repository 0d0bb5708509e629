"""MLflow writes that survive an unreachable store: an ordered buffer, retried every few seconds.

Writes are buffered while the store is unreachable (a tracking server restarting, a network
outage): they stay queued in order and are retried every ``retry_interval_s``, so the search
neither dies nor stalls, and nothing is lost; ``flush`` (called at the end of a search) waits up to
``flush_timeout_s`` for the rest. Reads happen only when a tracker first needs the store's state
and wait for it the same way. Buffered writes live in the driver process: a driver killed during
an outage loses the writes still queued (the resumed search logs the epochs it re-runs).
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from search.console import warn
from search.tracking._store import (
    TrackingSettings, causes, create_sqlite_store, is_refusal, is_transient, redact_text, redact_uri, sqlite_may_pass, sqlite_path,
)

__all__ = ["BufferedStore", "StoreError", "StoreOpening", "is_number", "mlflow_client", "open_store_in_background", "opened_client", "param_text", "param_value", "run_id_of", "RunNotCreated"]

_T = TypeVar("_T")


class HasRunId(Protocol):
    run_id: str | None  # None until its buffered creation reached the store


_REFUSALS_SHOWN = 3  # refused writes explained one by one; the rest are counted


@dataclass
class _Write:
    what: str  # for the messages
    send: Callable[[], None]
    # The same write as one write per item, to send in its place when the store refused it whole:
    # MLflow refuses a whole batch for one item it rejects (a key, a changed param value). Returns
    # none where every item would be refused as well (a run deleted meanwhile).
    parts: Callable[[], tuple[_Write, ...]] | None = None


def mlflow_client(tracking_uri: str) -> Any:
    """An MlflowClient of ``tracking_uri`` (a new SQLite store is created first, whole or not at all:
    ``create_sqlite_store``)."""
    from mlflow import MlflowClient

    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        create_sqlite_store(db)
    return MlflowClient(tracking_uri=tracking_uri)


class StoreError(Exception):
    """A SQLite store (``path``) that MLflow cannot open: not a database, a schema from an older
    MLflow (MLflow's message says how to upgrade it), a store whose creation an MLflow left half
    done. ``reason``: what MLflow said."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: an MLflow store this MLflow can open, but got {reason}")
        self.path = path
        self.reason = reason


class StoreOpening(threading.Thread):
    """Opens the store of ``tracking_uri`` in a thread, so that it overlaps Ray's start: importing
    MLflow and opening a SQLite store (SQLAlchemy's engine, the schema check) take seconds of a
    search's start-up, much of which Ray spends waiting for its own processes. MLflow keeps one
    store per URI, which the search's client then finds open; join the thread before using it.
    ``error``: a SQLite store that cannot be opened (``StoreError``), else None.

    Any other store only gets MLflow imported: a server or a database server that went away would
    be retried for minutes here, and then again by the search's own client, which reports it."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(name="losstune-open-mlflow-store", daemon=True)
        self.tracking_uri = tracking_uri
        self.error: StoreError | None = None

    def run(self) -> None:
        try:
            opened_client(self.tracking_uri)
        except StoreError as exc:
            self.error = exc
        except Exception:  # noqa: BLE001 - a server's or a database server's: its client reports it
            pass


def opened_client(tracking_uri: str) -> Any:
    """``mlflow_client(tracking_uri)`` with a SQLite store opened now: ``StoreError`` if MLflow
    cannot open it and no retry would help. A store another process holds locked past SQLite's
    wait, or a file system error, is raised as it is: it may pass."""
    db = sqlite_path(tracking_uri)
    if db is None:
        return mlflow_client(tracking_uri)
    try:
        client = mlflow_client(tracking_uri)
        client.search_experiments(max_results=1)
    except Exception as exc:
        if _may_pass(exc):
            raise
        raise StoreError(db, f"{type(exc).__name__}: {next(iter(str(exc).splitlines()), '')}") from exc
    return client


def _may_pass(exc: BaseException) -> bool:
    """Whether opening a SQLite store failed in a way a later try may not (``sqlite_may_pass``),
    or the system was short of file handles or lost a network file system for a moment."""
    passing = sqlite_may_pass(exc)
    if passing is not None:
        return passing
    return any(isinstance(cause, OSError) and cause.errno in _SYSTEM_MAY_PASS for cause in causes(exc))


_SYSTEM_MAY_PASS = {errno.EMFILE, errno.ENFILE, errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EINTR}


def _root_cause(exc: BaseException) -> str:
    """The error an outage began with (``ConnectionRefusedError: [Errno 111] Connection refused``):
    MLflow's own message nests the transport's errors in one 400-character line."""
    root = exc
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def open_store_in_background(tracking_uri: str) -> StoreOpening:
    """A started ``StoreOpening`` of ``tracking_uri``."""
    opening = StoreOpening(tracking_uri)
    opening.start()
    return opening


class BufferedStore:
    """An MlflowClient behind an ordered write buffer. Safe to pickle (Ray Tune pickles its
    callbacks): only the settings travel; the client and the caches are rebuilt on first use."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._pending: deque[_Write] = deque()
        self._retry_at = 0.0  # monotonic time of the next attempt while the store is unreachable
        self._unreachable = False
        self._refused = 0  # writes the store refused for good

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.settings.tracking_uri)
        return self._client

    @property
    def pending_writes(self) -> int:
        """Writes buffered because the store was unreachable, not sent yet."""
        return len(self._pending)

    def flush(self) -> bool:
        """Send the buffered writes, waiting for an unreachable store up to ``flush_timeout_s``.
        Returns whether everything was sent (if not, says how much was not)."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        sent = self._flush_until(deadline)
        if self._refused > _REFUSALS_SHOWN:
            warn(f"MLflow at {redact_uri(self.settings.tracking_uri)} refused {self._refused} writes in all")
        return sent

    def _flush_until(self, deadline: float) -> bool:
        while not self._send_pending():
            now = time.monotonic()
            if now >= deadline:
                warn(
                    f"error: MLflow at {redact_uri(self.settings.tracking_uri)} still unreachable after waiting "
                    f"{self.settings.flush_timeout_s:g} s; {len(self._pending)} writes were not sent"
                )
                return False
            time.sleep(max(0.0, min(self._retry_at, deadline) - now))
        return True

    def _submit(self, what: str, send: Callable[[], None], *,
                parts: Callable[[], tuple[_Write, ...]] | None = None) -> None:
        self._pending.append(_Write(what, send, parts))
        self._send_pending()

    def _send_pending(self) -> bool:
        """Send buffered writes in order until one fails because the store is unreachable; then
        try again only after ``retry_interval_s`` (a down server costs one quick failure per
        interval, not one per write). Returns whether the buffer is empty."""
        if self._pending and time.monotonic() < self._retry_at:
            return False
        sent = 0
        while self._pending:
            write = self._pending[0]
            try:
                write.send()
            except RunNotCreated:
                self._pending.popleft()  # its run was refused, and said so
                continue
            except Exception as exc:
                if not is_transient(exc):
                    self._pending.popleft()  # it would fail again
                    if not is_refusal(exc):
                        raise
                    parts = self._parts(write)
                    if parts:  # only the items refused alone are lost
                        self._pending.extendleft(reversed(parts))
                        continue
                    self._note_refused(exc, write.what)  # said, and the writes after it go on
                    continue
                self._retry_at = time.monotonic() + self.settings.retry_interval_s
                self._note_unreachable(exc, write.what)
                return False
            self._pending.popleft()
            sent += 1
        if sent:
            self._note_reachable(sent)
        return True

    @staticmethod
    def _parts(write: _Write) -> tuple[_Write, ...]:
        """The parts of a write the store refused, or none when it has none or asking failed (the
        write is then dropped whole, as one refused)."""
        try:
            return write.parts() if write.parts is not None else ()
        except Exception:  # noqa: BLE001 - the refusal is what the buffer says; this was only a second try
            return ()

    def _note_reachable(self, sent: int) -> None:
        if self._unreachable:
            self._unreachable = False
            warn(f"MLflow at {redact_uri(self.settings.tracking_uri)} reachable again; {sent} buffered writes sent")

    def _note_refused(self, exc: BaseException, what: str) -> None:
        """Say why the store refused a write, for the first ``_REFUSALS_SHOWN`` refusals, then how
        many there were (a store that lost the search's runs refuses every write after)."""
        self._refused += 1
        if self._refused <= _REFUSALS_SHOWN:
            text = redact_text(str(exc), self.settings.tracking_uri).strip()
            reason = text.splitlines()[0][:300] if text else ""
            more = "; further refusals are counted, not shown" if self._refused == _REFUSALS_SHOWN else ""
            warn(f"MLflow at {redact_uri(self.settings.tracking_uri)} refused to {what} ({type(exc).__name__}: "
                 f"{reason}); the search goes on without it{more}")
        elif self._refused % 100 == 0:
            warn(f"MLflow at {redact_uri(self.settings.tracking_uri)} refused {self._refused} writes so far")

    def _note_unreachable(self, exc: BaseException, what: str) -> None:
        if not self._unreachable:
            self._unreachable = True
            reason = redact_text(_root_cause(exc), self.settings.tracking_uri)
            warn(
                f"MLflow at {redact_uri(self.settings.tracking_uri)} unreachable ({what}: {reason}); buffering "
                f"its writes and retrying every {self.settings.retry_interval_s:g} s"
            )

    def _read(self, read: Callable[[], _T]) -> _T:
        """A read the tracker cannot go on without: retried while the store is unreachable, up to
        ``flush_timeout_s``. Buffered writes go first, so a read sees them."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        while True:
            try:
                if not self._send_pending():
                    raise ConnectionError("buffered writes not sent yet")
                value = read()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
                self._note_unreachable(exc, "read the search's runs")
                time.sleep(self.settings.retry_interval_s)
                continue
            self._note_reachable(0)
            return value

    def _log_text(self, target: str | HasRunId, text: str, name: str) -> None:
        self._submit(f"log {name}", lambda: self.client.log_text(run_id_of(target), text, name))

    def _log(
        self,
        target: str | HasRunId,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)  # when the values were produced, not when they reach the store
        metric_items = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if is_number(v)]
        param_items = [Param(k, param_text(v)) for k, v in (params or {}).items()]
        tag_items = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        # log_batch takes at most 1000 metrics, 100 params and 100 tags per call.
        while metric_items or param_items or tag_items:
            batch = {"metrics": metric_items[:1000], "params": param_items[:100], "tags": tag_items[:100]}
            self._submit("log metrics, params and tags", lambda b=batch: self.client.log_batch(run_id_of(target), **b),
                         parts=lambda b=batch: self._batch_parts(target, b))
            metric_items, param_items, tag_items = metric_items[1000:], param_items[100:], tag_items[100:]

    def _batch_parts(self, target: str | HasRunId, batch: Mapping[str, list[Any]]) -> tuple[_Write, ...]:
        """One write per item of a ``log_batch`` the store refused; none for a single item, or for a
        run that no longer takes writes (deleted in the UI meanwhile), where every item would be
        refused too, at a request each."""
        items = [(kind, item) for kind, listed in batch.items() for item in listed]
        if len(items) < 2 or self.client.get_run(run_id_of(target)).info.lifecycle_stage != "active":
            return ()
        return tuple(
            _Write(f"log {kind[:-1]} {item.key!r}",
                   lambda kind=kind, item=item: self.client.log_batch(run_id_of(target), **{kind: [item]}))
            for kind, item in items
        )


class RunNotCreated(LookupError):
    """A write to a run whose creation the store refused (and the buffer said so)."""


def run_id_of(target: str | HasRunId) -> str:
    # A trial's run id is known only once its buffered creation was sent, which precedes this.
    run_id = target if isinstance(target, str) else target.run_id
    if run_id is None:
        raise RunNotCreated(target)
    return run_id


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def param_text(value: Any) -> str:
    """How a value is logged as an MLflow param: a string as it is (what the MLflow UI shows best),
    unless JSON would read it back as something else (the pattern "1", "true"); that string and
    anything else as JSON. ``param_value`` reads it back."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def param_value(text: str) -> Any:
    """The value ``param_text`` logged as ``text`` (a list as a tuple)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value
