"""``search report [SEARCH]``: compare a search's trials from what MLflow recorded."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from search import exit_codes
from search.commands._common import add_command

__all__ = ["add_parser", "run"]

HELP = "compare the trials of a search (tables, loss types, figures) from MLflow"
DESCRIPTION = (
    "Read a search's runs back from MLflow and write a comparison: a table of the "
    "trials (loss per head, varied parameters, objective and per-head metrics at the best epoch, "
    "epochs, state), a per-head comparison of the loss types, and figures (objective per trial, "
    "loss types, parameter importance by fANOVA, learning curves of the best trials, the Pareto "
    "front of a multi-objective search)."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m search report                          # the newest search in the default store
      python -m search report vimh-loss-search         # by search name, experiment name or search id
      python -m search report spaces/digits.yaml       # the search of a space file (its name, its store)
      python -m search report --tracking-uri http://127.0.0.1:5000 --out /tmp/report

    Works on finished, running and resumed searches (a running search: the trials so far).
    Writes report.md/.txt, trials.csv, loss_types.csv, importance.csv and the figures
    objective.png, loss_types.png, importance.png, learning_curves.png (pareto.png with several
    objectives) to --out, and logs them as artifacts (report/) of the search's parent run.
    MLflow: --tracking-uri > MLFLOW_TRACKING_URI > the space's mlflow.tracking_uri > the store
    the search recorded in <storage>/<name>/losstune.json > mlflow/mlflow.db.
    Exit status: 0 written, 1 MLflow failed (unreachable, upload refused), 2 no such store or search.
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "report", HELP, DESCRIPTION, EXAMPLES, space=False)
    parser.add_argument(
        "search",
        nargs="?",
        metavar="SEARCH_OR_EXPERIMENT",
        help="search id, search name, experiment name or space file (default: the newest search)",
    )
    parser.add_argument("--out", metavar="DIR", help="output directory (default: <storage>/<name>/report)")
    parser.add_argument("--storage", default="runs", metavar="DIR", help="results directory of run (default: runs)")
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI")
    parser.add_argument("--no-upload", action="store_true", help="do not log the report as artifacts of the parent run")
    return parser


def _space_fields(path: Path) -> tuple[str | None, str | None]:
    """(name, mlflow.tracking_uri) of a space file; read as YAML only (with the space reader's
    limits), since a report needs no validation (nor the data set the validator would describe)."""
    from search.space import SpaceError, read_space_file

    try:
        _, parsed = read_space_file(path)
    except SpaceError as error:
        raise ValueError(str(error)) from None
    doc = parsed.value
    if not isinstance(doc, dict):
        raise ValueError(f"a space file (a YAML mapping), but got {type(doc).__name__} in {path}")
    mlflow = doc.get("mlflow") if isinstance(doc.get("mlflow"), dict) else {}
    name = doc.get("name")
    return (str(name) if name else path.stem), mlflow.get("tracking_uri")


def _recorded_uri(storage: str, name: str | None) -> str | None:
    """The store a search of this name recorded in its run directory (``losstune.json``)."""
    from search.driver import RunLocation, read_meta
    from search.space import is_search_name

    if not name or not is_search_name(name):
        return None
    try:
        meta = read_meta(RunLocation(storage, name))
    except (OSError, ValueError, NotImplementedError):  # a URI no file system opens, a store not reached
        return None
    return meta["tracking_uri"] if meta is not None else None


def run(args: argparse.Namespace) -> int:
    from search.report import ReportError, load_search, log_report, open_store, write_report
    from search.tracking import resolve_tracking_uri

    selector, space_uri = args.search, None
    if selector and selector.endswith((".yaml", ".yml")):
        try:
            selector, space_uri = _space_fields(Path(selector))
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exit_codes.INVALID
    uri = resolve_tracking_uri(cli=args.tracking_uri, space=space_uri or _recorded_uri(args.storage, selector))

    from mlflow.exceptions import MlflowException

    from search._preflight import TrackingUriError, check_reachable, check_store_uri

    try:
        check_store_uri(uri, writing=False)
    except TrackingUriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    try:
        # A server that is down fails here at once, not after MLflow's minutes of retries.
        check_reachable(uri)
    except TrackingUriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    try:
        client = open_store(uri)
        search, notes = load_search(client, tracking_uri=uri, selector=selector)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    except MlflowException as exc:
        print(f"error: reading the search from MLflow ({uri}) failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    for note in notes:
        print(f"note: {note}")
    from search.driver import is_uri

    if args.out:
        out_dir = Path(args.out)
    elif is_uri(args.storage):
        print(f"error: --out DIR: the report is written to a folder here, and --storage is a URI ({args.storage})",
              file=sys.stderr)
        return exit_codes.INVALID
    else:
        out_dir = Path(args.storage) / search.name / "report"
    try:
        report = write_report(search, out_dir)
    except OSError as exc:
        print(f"error: --out: a folder this user can write the report to, but got {exc}", file=sys.stderr)
        return exit_codes.INVALID
    print(report.text)
    print(f"\nwritten to {out_dir}: " + ", ".join(p.name for p in report.files))
    if args.no_upload:
        return exit_codes.OK
    try:
        where = log_report(client, report)
    except Exception as exc:  # noqa: BLE001 - any artifact-store failure; the files are written
        print(f"error: logging the report to run {search.parent_run_id} failed: {exc}", file=sys.stderr)
        return exit_codes.FAILED
    print(f"logged as artifacts of the search's parent run: {where}")
    return exit_codes.OK
