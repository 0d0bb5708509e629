"""Tune callbacks on the driver: a line per trial result on the terminal, and the MLflow runs.

Both are pickled into the experiment directory by Tune and unpickled on a resume, so they hold
plain settings only; the MLflow state is read back from the store (see ``search.tracking``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from search.driver._trainable import (
    ERROR_FILE,
    ERROR_KEY,
    FAILED_KEY,
    FINAL_KEY,
    NODE_GPUS_KEY,
    NODE_ID_KEY,
    NODE_IP_KEY,
    TRACEBACK_KEY,
    WARNINGS_KEY,
)
from search.console import say
from search.tracking import (
    TAG_ALARM_PREFIX,
    TAG_AMP,
    TAG_DEVICE,
    TAG_DEVICE_NAME,
    TAG_GPU_ID,
    TAG_NODE,
    TAG_NODE_IP,
    TAG_RAY_GPUS,
    SearchTracker,
)
from search.tracking._buffer import is_number
from trainables.energy_alarm import ALARM_PREFIX
from trainables.flat_keys import head_losses
from trainables.metric_names import LAST_EPOCH_KEY

__all__ = ["MlflowCallback", "ProgressPrinter", "error_file", "trial_error"]

# Keys Tune adds to every result; everything else in a result was reported by the trial.
# not metrics of the trial: Tune's own, and the flags for the driver and the schedulers
_TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | {"done", "trial_id", "should_checkpoint", "experiment_tag", FINAL_KEY,
                                           LAST_EPOCH_KEY}
# A trial's first result says what it trains on in string values ``device/...``: tags of its run.
_DEVICE_PREFIX = "device/"
_DEVICE_TAGS = {"device/type": TAG_DEVICE, "device/name": TAG_DEVICE_NAME, "device/gpu_id": TAG_GPU_ID,
                "device/amp": TAG_AMP, NODE_ID_KEY: TAG_NODE, NODE_IP_KEY: TAG_NODE_IP, NODE_GPUS_KEY: TAG_RAY_GPUS}


def _last_line(text: str) -> str | None:
    """The line a person reads first in Tune's error text: its last one (Ray prints the trial's
    traceback inside its wrapper's, so the innermost exception comes last). Only for display:
    Tune keeps a crash's error as text (and a pickle the driver never loads); a failure the
    trainable could see comes as data instead (``FAILED_KEY``)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def trial_error(trial: Any) -> tuple[str | None, str | None]:
    """(short description, full text) of the last error of a Tune trial: a failure a retry would
    repeat, as the trainable's failed final result carries it, else the error Tune recorded.

    Tune's error is read from its text error file, never by unpickling its pickled exception. Tune
    writes the file on the driver first and copies it to the storage path later, so the local file
    is read when it exists (during the search), the stored one otherwise."""
    last = trial.last_result or {}
    if last.get(FAILED_KEY):
        return last.get(ERROR_KEY), last.get(TRACEBACK_KEY)
    text_file = trial.error_file
    if text_file and os.path.exists(text_file):
        with open(text_file) as f:
            full = f.read()
    else:
        full = trial.get_error()
    if not full:
        return None, None
    return _last_line(full), full


def _storage_fs(trial: Any) -> Any:
    """The trial's storage file system (pyarrow), or None for a local directory."""
    import pyarrow.fs

    fs = trial.storage.storage_filesystem
    return None if isinstance(fs, pyarrow.fs.LocalFileSystem) else fs


def error_file(trial: Any) -> str:
    """Where the trial's full traceback is: ``error.txt`` in its directory of the run directory
    (Tune copies its own error file there; the driver writes a failed final result's); behind a
    URI storage, its ``scheme://`` address."""
    path = os.path.join(trial.path, ERROR_FILE)
    fs = _storage_fs(trial)
    return path if fs is None else f"{fs.type_name}://{path}"


def _write_error_file(trial: Any, text: str) -> None:
    """Add ``text`` to the trial's error file in Tune's staging directory, which Tune copies over
    the run directory at every sync (written to the run directory alone, the next sync took it
    back out where Tune had an error file of its own: a retried failure's), and put the whole file
    in the run directory now."""
    staging = os.path.join(trial.local_path, ERROR_FILE)
    os.makedirs(trial.local_path, exist_ok=True)
    fs = _storage_fs(trial)
    if not os.path.exists(staging):  # a resumed search's staging holds no error text of its earlier attempts
        with open(staging, "wb") as f:
            f.write(_stored_error_text(trial, fs))
    with open(staging, "a") as f:
        f.write(text)
    with open(staging, "rb") as f:
        whole = f.read()
    if fs is None:
        if os.path.realpath(trial.local_path) != os.path.realpath(trial.path):
            os.makedirs(trial.path, exist_ok=True)
            with open(error_file(trial), "wb") as f:
                f.write(whole)
        return
    with fs.open_output_stream(os.path.join(trial.path, ERROR_FILE)) as stream:
        stream.write(whole)


def _stored_error_text(trial: Any, fs: Any) -> bytes:
    """The error file in the trial's run directory (b"" where there is none)."""
    path = os.path.join(trial.path, ERROR_FILE)
    try:
        if fs is None:
            with open(path, "rb") as f:
                return f.read()
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, FileNotFoundError):
        return b""


def _reported(result: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's numeric results: MLflow metrics are numbers (strings are tags, see _result_tags)."""
    return {k: v for k, v in result.items() if k not in _TUNE_KEYS and is_number(v)}


def _result_tags(result: Mapping[str, Any]) -> dict[str, str]:
    """``device/type`` -> ``losstune.device`` and so on (_DEVICE_TAGS); another ``device/<x>``
    string -> ``losstune.device_<x>``; an alarm ``alarm/<name>`` -> ``losstune.alarm.<name>``."""
    tags = {_DEVICE_TAGS.get(k, f"losstune.device_{k.removeprefix(_DEVICE_PREFIX)}"): v
            for k, v in result.items() if k.startswith(_DEVICE_PREFIX) and isinstance(v, str)}
    # Where the trial runs (search.driver._trainable adds it to the first result of each attempt).
    tags.update({_DEVICE_TAGS[k]: result[k] for k in (NODE_ID_KEY, NODE_IP_KEY, NODE_GPUS_KEY) if k in result})
    tags.update({f"{TAG_ALARM_PREFIX}{k.removeprefix(ALARM_PREFIX)}": v
                 for k, v in result.items() if k.startswith(ALARM_PREFIX) and isinstance(v, str)})
    return tags


def _final_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    # Only what a per-epoch result does not carry, so no epoch gets a second value for a key.
    return {k: v for k, v in result.items() if k.startswith("test/") or k == "best_epoch"}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class ProgressPrinter(Callback):
    """One line per trial event (epoch results, completion, scheduler stops, failures, retries)
    and, every ``status_every_s`` seconds, one line counting the trials by state."""

    def __init__(self, *, metric: str, epochs: int, num_samples: int, status_every_s: float = 60.0) -> None:
        self.metric = metric
        self.epochs = epochs
        self.num_samples = num_samples
        self.status_every_s = status_every_s
        self._finished: set[str] = set()
        self._started = self._last_status = time.monotonic()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled on a resume: the clock starts again.
        self.__dict__.update(state)
        self._started = self._last_status = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_status < self.status_every_s:
            return
        self._last_status = now
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        states = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
        minutes, seconds = divmod(int(now - self._started), 60)
        say(f"status after {minutes}m{seconds:02d}s: {len(trials)}/{self.num_samples} trials ({states})")

    def _say(self, trial: Any, text: str) -> None:
        losses = " ".join(f"{head}={loss}" for head, loss in head_losses(trial.config).items())
        say(f"[{trial.trial_id}] {text}  ({losses})")

    def _print_failure(self, trial: Any, short: str | None, *, retried: bool = False) -> None:
        where = f"full traceback: {error_file(trial)}"
        if retried:
            self._say(trial, f"failed ({short}); retry {trial.num_failures} from its last checkpoint; {where}")
        else:
            self._say(trial, f"FAILED: {short}; {where}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        for warning in result.get(WARNINGS_KEY, ()):
            self._say(trial, f"warning: {warning}")
        if result.get(FAILED_KEY):
            self._finished.add(trial.trial_id)
            _write_error_file(trial, result.get(TRACEBACK_KEY) or "")
            self._print_failure(trial, f"{result.get(ERROR_KEY)} (not retried: it would fail the same way)")
            return
        if result.get(FINAL_KEY):
            self._finished.add(trial.trial_id)
            tests = ", ".join(f"{k}={_fmt(v)}" for k, v in result.items() if k in ("test/acc_mean", "test/mae_norm_mean"))
            self._say(
                trial,
                f"done after {result.get('epoch')} epochs: best epoch {result.get('best_epoch')}, "
                f"{self.metric}={_fmt(value)}" + (f", {tests}" if tests else ""),
            )
            return
        best = result.get(f"best/{self.metric}")
        self._say(
            trial,
            f"epoch {result.get('epoch')}/{self.epochs}  {self.metric}={_fmt(value)}  best={_fmt(best)}",
        )

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Promoted after a pause, retried or resumed: it goes on from the checkpoint Tune holds, which
        # may be older than its last result (Tune registers a result's checkpoint a step after the
        # result; a search interrupted in between restarts that epoch), or none at all.
        restored = trial.latest_checkpoint_result
        epoch = restored.metrics.get("epoch") if restored is not None else None
        if epoch:
            self._say(trial, f"resumes after epoch {epoch}")
        elif (trial.last_result or {}).get("epoch"):
            self._say(trial, "starts again from its first epoch: no checkpoint of it was saved in the search's state")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self._finished:
            epoch = trial.last_result.get("epoch")
            self._say(trial, f"stopped early by the scheduler after epoch {epoch}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print_failure(trial, trial_error(trial)[0])

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print_failure(trial, trial_error(trial)[0], retried=True)


class MlflowCallback(Callback):
    """A child run per trial, opened when the trial starts and ended by how the trial ended."""

    def __init__(self, tracker: SearchTracker) -> None:
        self.tracker = tracker

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tracker.trial_started(trial.trial_id, trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        tracker = self.tracker
        tracker.trial_started(trial.trial_id, trial.config)  # no-op unless the start was missed
        if result.get(FAILED_KEY):
            return  # ended in on_trial_complete
        tracker.tag_trial(trial.trial_id, _result_tags(result))
        epoch = int(result.get("epoch", 0))
        if result.get(FINAL_KEY):
            tracker.log_final(trial.trial_id, _final_metrics(result), epoch=epoch)
        else:
            tracker.log_epoch(trial.trial_id, _reported(result), epoch=epoch)
        tracker.update_best(result.get(tracker.settings.objective_metric))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if (trial.last_result or {}).get(FAILED_KEY):
            self.on_trial_error(iteration, trials, trial)
        elif self.tracker.final_logged(trial.trial_id):
            self.tracker.trial_ended(trial.trial_id, state="finished", reason="completed")
        else:
            self.tracker.trial_ended(trial.trial_id, state="stopped_early", reason="stopped early by the scheduler")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        short, full = trial_error(trial)
        self.tracker.trial_started(trial.trial_id, trial.config)
        self.tracker.trial_ended(trial.trial_id, state="failed", reason="error", error=short, details=full)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        short, _ = trial_error(trial)
        self.tracker.trial_retried(trial.trial_id, failures=trial.num_failures, error=short)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Writes buffered while MLflow was unreachable; after a resume this tracker is Tune's
        # unpickled copy, not the driver's, so the driver's own flush would not send them.
        self.tracker.flush()
