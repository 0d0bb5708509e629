"""``search report [SEARCH]``: compare a search's trials from what MLflow recorded."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from search import exit_codes
from search.commands._common import STORAGE_DEFAULT, add_command, given_text

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
    losstune-report.json in the folder names the search: a later report of that search replaces
    its files; a folder holding another search's report or other files is refused (exit 2).
    MLflow: --tracking-uri > MLFLOW_TRACKING_URI > the space's mlflow.tracking_uri > the store
    the search recorded in <storage>/<name>/losstune.json > mlflow/mlflow.db.
    Exit status: 0 written, 1 MLflow failed while reading or uploading, 2 no such store or search, or a
    server that does not answer (as for every command's --tracking-uri).
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
    parser.add_argument("--out", type=given_text, metavar="DIR", help="output directory (default: <storage>/<name>/report)")
    parser.add_argument("--storage", type=given_text, default=STORAGE_DEFAULT, metavar="DIR",
                        help=f"results directory of run (default: {STORAGE_DEFAULT})")
    parser.add_argument("--tracking-uri", type=given_text, metavar="URI", help="MLflow tracking URI")
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
    name, uri = doc.get("name"), mlflow.get("tracking_uri")
    if uri is not None and not isinstance(uri, str):
        raise ValueError(f"{path}: mlflow.tracking_uri: a URI string, but got {uri!r}")
    return (str(name) if name else path.stem), uri


def _recorded(storage: str, selector: str | None) -> tuple[Any, dict[str, Any]] | None:
    """The run directory of the search ``selector`` names and its ``losstune.json`` (the search run
    there: its id and store): ``<storage>/<selector>`` for a search name, the directory of the name
    a search id was made from when it records that id; None when there is none."""
    from search.driver import RunLocation, read_meta
    from search.space import is_search_name
    from search.tracking import search_name_of

    if not selector:
        return None
    made_from = search_name_of(selector)  # where selector is a search id
    for name in [selector] if made_from in (None, selector) else [selector, made_from]:
        if not is_search_name(name):
            continue
        location = RunLocation(storage, name)
        try:
            meta = read_meta(location)
        except (OSError, ValueError, NotImplementedError):  # a URI no file system opens, a store not reached
            continue
        if meta is not None and (name == selector or meta.get("search_id") == selector):
            return location, meta
    return None


def _default_out(args: argparse.Namespace, search: Any, run_dir: Any) -> tuple[Path | None, str | None]:
    """(the report's folder when --out is not given, or None and why there is none): in the run
    directory the search was selected by, else in the one its id names."""
    from search.driver import local_path
    from search.report import run_directory_name
    from search.space import SEARCH_NAME_RULE

    storage = local_path(args.storage)
    if storage is None:
        return None, f"--out DIR: the report is written to a folder here, and --storage is a URI ({args.storage})"
    name = run_dir.name if run_dir is not None else run_directory_name(search)
    if name is None:
        return None, (
            f"--out DIR: the default folder <storage>/<name>/report needs {SEARCH_NAME_RULE} from the search, "
            f"but got neither from search id {search.search_id!r} nor from its parent run's name {search.name!r}"
        )
    return storage / name / "report", None


def _selection(args: argparse.Namespace) -> tuple[str | None, str | None, Any]:
    """(selector, tracking URI, the run directory the selection was recorded in or None). A space
    file selects by its name and store. A search name (or id) whose run directory ``<storage>/<name>``
    recorded a search in this store selects that search by id: the store may hold several
    searches of the name, and the report then goes to that run directory."""
    from search.tracking import resolve_tracking_uri

    selector, space_uri = args.search, None
    if selector and selector.endswith((".yaml", ".yml")):
        selector, space_uri = _space_fields(Path(selector))
    recorded = _recorded(args.storage, selector)
    meta = recorded[1] if recorded is not None else {}
    uri = resolve_tracking_uri(cli=args.tracking_uri, space=space_uri or meta.get("tracking_uri"))
    if recorded is None or meta["tracking_uri"] != uri:
        return selector, uri, None
    return meta["search_id"], uri, recorded[0]


def _report_command(args: argparse.Namespace, uri: str) -> str:
    """``search report SEARCH_ID`` with the store and storage this report read, where they are not
    the defaults: another search of a name has no run directory of its own to find them by."""
    from search._shell import report_command

    return report_command("SEARCH_ID", tracking_uri=uri, storage=args.storage if args.storage != STORAGE_DEFAULT else None)


def run(args: argparse.Namespace) -> int:
    from search.report import ReportError, check_out_folder, load_search, log_report, open_store, write_report

    try:
        selector, uri, run_dir = _selection(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID

    from mlflow.exceptions import MlflowException

    from search._preflight import TrackingUriError, check_reachable, check_store_uri
    from search.tracking import redact_text, redact_uri

    try:
        check_store_uri(uri, writing=False)
    except TrackingUriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    if args.out:
        try:  # before the search's runs are read, which takes long for a big one
            check_out_folder(Path(args.out))
        except ReportError as exc:
            print(f"error: --out: {exc}; name another folder with --out DIR", file=sys.stderr)
            return exit_codes.INVALID
    try:
        # A server that is down fails here at once, not after MLflow's minutes of retries.
        check_reachable(uri)
    except TrackingUriError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    if run_dir is not None:
        print(f"note: {run_dir}/losstune.json records search {selector}; reporting it")
    try:
        client = open_store(uri)
        search, notes = load_search(client, tracking_uri=uri, selector=selector)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_codes.INVALID
    except MlflowException as exc:
        print(f"error: reading the search from MLflow ({redact_uri(uri)}) failed: {redact_text(str(exc), uri)}",
              file=sys.stderr)
        return exit_codes.FAILED
    for note in notes:
        print(f"note: {note}")
    if search.matches > 1 and selector is not None:
        print(f"note: report one of the others with: {_report_command(args, uri)}")
    out_dir, why_not = (Path(args.out), None) if args.out else _default_out(args, search, run_dir)
    if out_dir is None:
        print(f"error: {why_not}", file=sys.stderr)
        return exit_codes.INVALID
    try:
        report = write_report(search, out_dir)
    except ReportError as exc:
        print(f"error: --out: {exc}; name another folder with --out DIR", file=sys.stderr)
        return exit_codes.INVALID
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
