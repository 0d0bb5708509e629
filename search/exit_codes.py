"""The exit status of every ``python -m search`` command, defined once."""

from __future__ import annotations

import signal

__all__ = ["BROKEN_PIPE", "FAILED", "INTERRUPTED", "INVALID", "LOST", "OK"]

OK = 0
FAILED = 1  # the work failed: every trial failed, a single trial diverged, MLflow was unreachable
INVALID = 2  # invalid input: the message names the file, the YAML path, the rule and the value
# A followed job is followed no more, the connection to the cluster broken or Ctrl-C detached from
# it: its outcome is unknown (it may still run); the message says how to follow it again.
LOST = 3
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); a search stays resumable
BROKEN_PIPE = 128 + signal.SIGPIPE  # the reader of the output went away (`| head`), as a shell reports it
