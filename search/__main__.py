"""``python -m search <command>`` (console script ``losstune``): parse arguments, map errors to exit codes.

Exit codes: 0 ok, 1 failure, 2 invalid input (a message, no traceback), 130 interrupted (Ctrl-C),
141 the reader of the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from search import exit_codes

__all__ = ["cli", "main"]

# losstune's dependencies (pyproject.toml's, a test checks) by the module each installs: a Python
# without one (the system's, run in a checkout or as a Ray job's `python`) is named at once, not
# after a space check that needs one of them (scikit-learn's digits: "install scikit-learn").
DEPENDENCIES = {"torch": "torch", "numpy": "numpy", "ray": "ray", "optuna": "optuna", "mlflow": "mlflow",
                "pyyaml": "yaml", "matplotlib": "matplotlib", "scikit-learn": "sklearn"}

# Modules search/commands/<name>.py; each imports its heavy dependencies inside run(), so
# `--help` and `validate` do not pay for importing Ray.
COMMANDS = ("validate", "train", "run", "report", "submit", "jobs", "logs", "stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m search",
        description="Hyperparameter search over loss designs for multihead models.",
        epilog="Run `python -m search <command> --help` for a command's options and examples.",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        module_name = f"search.commands.{name}"
        # A command whose module does not exist (yet) is simply not offered.
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    command = importlib.import_module(f"search.commands.{args.command}")
    try:
        missing = next((m for m in DEPENDENCIES.values() if not _installed(m)), None)
        if missing is not None:
            return _without_dependency(missing)
        code = int(command.run(args))
        sys.stdout.flush()  # here, so that a closed pipe is noticed inside the try
        return code
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in ("search", "trainables"):
            raise  # one of our own modules: a bug, whose traceback says where
        return _without_dependency(error.name)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`validate ... | head`): stop quietly, as Unix tools do. Python
        # would otherwise complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return exit_codes.BROKEN_PIPE


def _installed(module: str) -> bool:
    if module in sys.modules:  # None there: blocked (as a test does), else imported
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _without_dependency(module: str | None) -> int:
    from search.cluster import JOB_ENV

    # A Ray job runs `python` as the head's PATH finds it, which `ray start` did not change.
    job = (" (a submitted search runs the `python` first on the PATH of the cluster's Ray: start Ray "
           "with losstune's environment activated)") if os.environ.get(JOB_ENV) else ""
    print(f"error: a Python with losstune's dependencies, but got {sys.executable}, which has no module "
          f"{module!r}: run losstune with the Python it is installed in, or install it there "
          f"(`make setup`){job}", file=sys.stderr)
    return exit_codes.INVALID


def cli() -> NoReturn:
    """Run ``main()`` and end the process with its exit status, as Python's own exit does (other
    threads joined, ``atexit`` handlers run, output flushed) but without tearing the interpreter
    down: with torch, Ray's core worker and MLflow loaded that takes ~1.3 s after a search has
    ended and writes nothing (bench/results/search_overhead.json, ``exit_after_last_trial_s``)."""
    code = main()
    threading._shutdown()  # what Python's exit runs first: executors stop, other threads end
    atexit._run_exitfuncs()  # MLflow's queued writes, Ray's shutdown, logging's flush
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader gone; a stream already closed
            pass
    os._exit(code)


if __name__ == "__main__":
    cli()
