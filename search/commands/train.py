"""``search train SPACE``: one trial without Ray, with a per-epoch table on the terminal."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import textwrap
from pathlib import Path
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from search import exit_codes
from search._writable import why_unwritable
from search.commands._common import add_command, ctrl_c_works, given_text, plugins_and_space, sigterm_as_ctrl_c
from trainables.settings import show_literal

__all__ = ["add_parser", "apply_overrides", "run"]

HELP = "train one trial of a space without Ray"
DESCRIPTION = (
    "Train one trial config of a space in this process (no Ray) and print a table "
    "per epoch and the final test metrics. Without --config or --run the config is drawn from the "
    "space with seed search.seed."
)
EXAMPLES = textwrap.dedent(
    """\
    examples:
      # one config drawn from the space with search.seed
      python -m search train spaces/digits.yaml --epochs 2
      # reproduce a trial of a search (same seed on CPU: identical metrics)
      python -m search train spaces/vimh.yaml --config runs/<search>/best_config.yaml
      # any trial of a search, by the id of its MLflow run (its params are its config)
      python -m search train spaces/vimh.yaml --run 4f1c0e...  [--tracking-uri URI]
      # change single values (YAML syntax); changing a head's loss drops the old loss's parameters
      python -m search train spaces/vimh.yaml --set train.lr=3e-4 \\
          --set heads.note_number.loss=ordinal --set heads.note_number.ordinal.alpha=0.2
      # resumable: an interrupted run continues from DIR/checkpoint.pt
      python -m search train spaces/digits.yaml --checkpoint-dir /tmp/digits-trial

    Exit status: 0 done, 1 training diverged or the store failed to read --run, 2 invalid
    space/config/values, 130 interrupted.
    """
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "train", HELP, DESCRIPTION, EXAMPLES)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        type=given_text,
        metavar="TRIAL.yaml",
        help="flat trial config (a mapping of flat keys, e.g. a search's best_config.yaml) used instead of a draw",
    )
    source.add_argument("--run", type=given_text, metavar="RUN_ID",
                        help="the MLflow run of a search's trial whose config (its params) is used instead of a draw")
    parser.add_argument("--tracking-uri", type=given_text, metavar="URI",
                        help="MLflow tracking URI --run is read from (default: MLFLOW_TRACKING_URI, the space's "
                             "mlflow.tracking_uri, the store in mlflow/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one flat key (VALUE is read as YAML: 3e-4, true, null, [1, 2]); repeatable",
    )
    parser.add_argument("--epochs", type=int, metavar="N", help="shorthand for --set train.epochs=N")
    parser.add_argument("--checkpoint-dir", type=given_text, metavar="DIR", help="write DIR/checkpoint.pt each epoch; resume from it")
    return parser


class _InvalidInput(Exception):
    """A problem with the command line or the files it names (exit 2)."""


class _ReadFailed(Exception):
    """The MLflow store answered a read of ``--run`` with an error of its own (exit 1, as the same
    failure in ``search report``)."""


def apply_overrides(config: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (values parsed as YAML). A head whose loss is overridden loses
    the parameters of its previous loss, unless they are overridden too (then the config check
    reports them)."""
    from search.space import SpaceError, safe_load_value
    from trainables.config import is_switch_key
    from trainables.flat_keys import FlatKey
    from trainables.settings import shown

    result = dict(config)
    given: set[str] = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _InvalidInput(f"--set takes KEY=VALUE, but got {item!r}")
        try:
            result[key] = safe_load_value(text, source=f"--set {key}")
        except SpaceError as error:  # too big (a line number means nothing in a --set value)
            raise _InvalidInput(str(dataclasses.replace(error.errors[0], line=None))) from None
        except Exception as error:  # yaml.YAMLError: report, whatever the construct
            reason = next(iter(str(error).strip().splitlines()), type(error).__name__)
            raise _InvalidInput(f"--set {key}: the value must be YAML, but got {shown(text)} ({reason})") from None
        given.add(key)
    # A switch set by an override (heads.<head>.loss, model.kind) drops the parameters of the
    # option it replaced, unless they are overridden too (then the config check reports them).
    chosen = {FlatKey.parse(k).section: result[k] for k in given if is_switch_key(k)}
    for key in [k for k in result if k not in given]:
        parsed = FlatKey.parse(key)
        if parsed.option is not None and parsed.section in chosen and parsed.option != chosen[parsed.section]:
            del result[key]
    return result


def _resolved_or_given(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the defaults it leaves out, or as it is where it is invalid (a --set may
    correct it)."""
    from trainables.config import TrialConfig

    try:
        return TrialConfig.from_flat(config).to_flat()
    except ValueError:
        return dict(config)


def _switched_to_defaults(before: Mapping[str, Any], set_keys: set[str],
                          resolved: Mapping[str, Any]) -> list[tuple[str, Any, list[str]]]:
    """(switch key, its new option, that option's parameters at their defaults) for each switch a
    ``--set`` (``set_keys``) moved from the option of ``before`` (the config it overrode, resolved)
    to another, leaving parameters of the new one unset (``apply_overrides`` drops the old one's)."""
    import inspect

    from trainables.config import switch_of
    from trainables.flat_keys import FlatKey

    switched = []
    for key in sorted(set_keys):
        switch, option = switch_of(key), resolved.get(key)
        if switch is None or before.get(key) == option:
            continue
        section = FlatKey.parse(key).section
        defaults = [f"{name}={show_literal(resolved.get(name, p.default))}"
                    for name, p in ((str(FlatKey(section, pname, option=option)), p)
                                    for pname, p in switch.parameters(option).items())
                    if name not in set_keys and p.default is not inspect.Parameter.empty]
        if defaults:
            switched.append((key, option, defaults))
    return switched


def _defaulted_space_values(fixed: Mapping[str, Any], given: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """``key: default (space: value)`` for each value the space fixes (``fixed``) that a given
    config lacks and whose trial-config default differs: a partial config is completed from the
    trial config's defaults, not from the space. Heads are left out: a config trains the heads it
    names, and the space's head weights would add heads."""
    from trainables.flat_keys import HEADS
    from trainables.settings import show_literal

    return [
        f"{key}: {show_literal(resolved.get(key))} (space: {show_literal(value)})"
        for key, value in fixed.items()
        if key not in given and not key.startswith(f"{HEADS}.") and resolved.get(key) != value
    ]


def _load_config(path: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The flat config of a file, and the line of each of its keys."""
    from search.space import SpaceError
    from search.space._parse import read_space_file
    from trainables.settings import shown

    try:
        _, parsed = read_space_file(path, what="trial config file")
    except SpaceError as error:
        raise _InvalidInput("\n".join(str(issue) for issue in error.errors)) from None
    if parsed.issues:
        raise _InvalidInput("\n".join(str(issue) for issue in parsed.issues))
    value = parsed.value
    rule = f"{path}: a trial config must be a mapping of flat keys (train.lr: 0.001, ...), but got"
    if not isinstance(value, dict):
        raise _InvalidInput(f"{rule} {type(value).__name__ if value is not None else 'an empty file'}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise _InvalidInput(f"{rule} the key {shown(key)} ({type(key).__name__})")
        if isinstance(item, dict):  # no setting takes a mapping: a space's nested sections, say
            where = f"{path}:{parsed.lines[key]}" if key in parsed.lines else path
            raise _InvalidInput(f"{where}: a trial config holds one value per flat key (train.lr: 0.001, as a "
                                f"best_config.yaml does; a search space is the SPACE argument), but got a mapping "
                                f"under {shown(key)}")
    return value, parsed.lines


def _run_config(run_id: str, tracking_uri: str) -> dict[str, Any]:
    """The flat config of the trial whose MLflow run is ``run_id``: its params, read back as logged."""
    from mlflow.exceptions import MlflowException

    from search._preflight import TrackingUriError, check_reachable, check_store_uri
    from search.report import ReportError, open_store
    from search.tracking import ROLE_TRIAL, TAG_ROLE, param_value, redact_text, redact_uri

    try:
        check_store_uri(tracking_uri, writing=False)
        check_reachable(tracking_uri)
        run = open_store(tracking_uri).get_run(run_id)
    except (TrackingUriError, ReportError) as error:
        raise _InvalidInput(f"--run: {error}") from None
    except MlflowException as error:
        reason = redact_text(str(error).splitlines()[0], tracking_uri)
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise _InvalidInput(f"--run: the id of a run in {redact_uri(tracking_uri)}, but got {run_id!r} "
                                f"({reason})") from None
        raise _ReadFailed(f"--run: reading run {run_id!r} from {redact_uri(tracking_uri)} failed: {reason}") from None
    role = run.data.tags.get(TAG_ROLE)
    if role != ROLE_TRIAL:
        raise _InvalidInput(f"--run: the run of a trial of a losstune search, but got {run_id!r}, "
                            f"{f'the run of a {role}' if role else 'a run no losstune search made'}")
    return {key: param_value(text) for key, text in run.data.params.items()}


def _where(key: str, *, overridden: set[str], config_file: str | None, lines: Mapping[str, int]) -> str | None:
    """Where the value of ``key`` came from: a --set, or a line of the --config file."""
    if key in overridden:
        return f"--set {key}"
    if config_file is not None and key in lines:
        return f"{config_file}:{lines[key]}"
    return None


class _Table:
    """Prints one row per reported epoch; the columns are fixed by the first report."""

    def __init__(self, objectives: list[str]) -> None:
        self.objectives = objectives
        self.columns: list[str] = []

    def __call__(self, metrics: dict[str, float]) -> None:
        if not self.columns:
            wanted = ["epoch", "train/loss/total", *self.objectives, "val/acc_mean", "val/mae_norm_mean",
                      "val/energy", "epoch_time_s"]
            self.columns = [c for i, c in enumerate(wanted) if c in metrics and c not in wanted[:i]]
            print("  ".join(f"{c:>{_width(c)}}" for c in self.columns), flush=True)
        print("  ".join(_cell(metrics.get(c), _width(c)) for c in self.columns), flush=True)


def _width(column: str) -> int:
    return max(len(column), 9)


def _cell(value: Any, width: int) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return f"{int(value):>{width}d}"
    if isinstance(value, float):
        return f"{value:>{width}.4g}"
    return f"{'-':>{width}}"


def run(args: argparse.Namespace) -> int:
    # SIGTERM (a cluster manager's, `kill`'s) and Ctrl-C, also in a background job, end the trial
    # at once but not half-way through writing a data set
    with ctrl_c_works(), sigterm_as_ctrl_c(), ExitStack() as held:
        return _train(args, held)


def _hold_checkpoint_dir(folder: Path, held: ExitStack) -> str | None:
    """Hold ``folder`` until the command ends (``held``); why not, if it cannot be held. Two
    trainings saving into one folder would resume from each other's checkpoints."""
    from search._hold import FileHold, HeldElsewhere

    hold = FileHold(str(folder / ".search-train.lock"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        hold.take()
    except HeldElsewhere as other:
        return f"one `search train` at a time per folder, but got another training in {folder} ({other.holder})"
    except OSError as exc:
        return f"a folder whose lock file {hold.path} can be locked, but got {exc}"
    held.callback(hold.release)
    return None


def _train(args: argparse.Namespace, held: ExitStack) -> int:
    from trainables.config import TrialConfig
    from trainables.data import describe_dataset, prepare_dataset
    from trainables.data.vimh import progress_bar
    from trainables.device import DeviceOutOfMemory
    from trainables.flat_keys import FlatKeyError
    from trainables.settings import SettingError
    from trainables.train import CheckpointError, TrainingDiverged, train, trained_heads

    loaded = plugins_and_space(args.space)
    if loaded is None:
        return exit_codes.INVALID
    _, space = loaded
    lines: dict[str, int] = {}
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    set_keys = {item.partition("=")[0].strip() for item in overrides}

    def refused(error: Exception) -> str:
        # a refused value named by where it came from: both --config and --set may give one
        where = _where(error.key, overridden=set_keys, config_file=args.config,
                       lines=lines) if isinstance(error, (SettingError, FlatKeyError)) else None
        return f"invalid trial config: {f'{where}: ' if where else ''}{error}"

    try:
        if args.tracking_uri is not None and not args.run:
            from search.tracking import redact_uri

            raise _InvalidInput(f"--tracking-uri is where --run is read from, but got it without --run "
                                f"({redact_uri(args.tracking_uri)!r})")
        if args.config:
            config, lines = _load_config(args.config)
        elif args.run:
            from search.tracking import resolve_tracking_uri

            config = _run_config(args.run, resolve_tracking_uri(cli=args.tracking_uri, space=space.mlflow.tracking_uri))
        else:
            config = space.sample(seed=space.search.seed)
        before = _resolved_or_given(config) if overrides else {}
        config = apply_overrides(config, overrides)
        trial = TrialConfig.from_flat(config)
        resolved = trial.to_flat()
        # before any note or the config is shown, and before the data set is built or read
        trained_heads(trial, describe_dataset(trial.data))
    except _ReadFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_codes.FAILED
    except (_InvalidInput, ValueError) as error:
        print(refused(error), file=sys.stderr)
        return exit_codes.INVALID
    if args.config or args.run:
        defaulted = _defaulted_space_values(space.constants, config, resolved)
        if defaulted:
            print(f"note: {args.config or f'run {args.run}'} lacks values the space fixes; the trial config's "
                  "defaults train instead: "
                  + ", ".join(defaulted))
    for key, option, defaults in _switched_to_defaults(before, set_keys, resolved):
        print(f"note: --set {key}={option} trains {option} with its defaults ({', '.join(defaults)}); "
              f"set them with --set too")

    if args.checkpoint_dir is not None:
        folder = Path(args.checkpoint_dir)
        try:
            problem = f"the file {folder}" if folder.is_file() else why_unwritable(folder)
        except OSError as exc:  # a name longer than the file system takes, ...
            problem = f"{folder}: {exc.strerror or exc}"
        if problem is not None:
            print(f"invalid --checkpoint-dir: a folder this user can write, but got {problem}", file=sys.stderr)
            return exit_codes.INVALID
        problem = _hold_checkpoint_dir(folder, held)
        if problem is not None:
            print(f"invalid --checkpoint-dir: {problem}", file=sys.stderr)
            return exit_codes.INVALID
    source = args.config or (args.run and f"the MLflow run {args.run}") or f"{args.space} (drawn with seed {space.search.seed})"
    print(f"trial config from {source}:")
    for key, value in config.items():
        print(f"  {key} = {show_literal(value)}")
    objective = str(config.get("objective.metric", ""))
    try:
        # the data set the trial trains on: a config or a --set may name another than the space's
        prepare_dataset(trial.data, progress=progress_bar(sys.stderr, label=f"preparing data set {trial.data.kind}"))
        # the space's other objectives too (a trial config holds one): each is a column per epoch
        objectives = [*([objective] if objective else []), *(o.metric for o in space.objectives)]
        table = _Table(list(dict.fromkeys(objectives)))
        final = train(config, report=table, checkpoint_dir=args.checkpoint_dir)
    except TrainingDiverged as error:
        print(f"training diverged: {error}", file=sys.stderr)
        return exit_codes.FAILED
    except DeviceOutOfMemory as error:  # a ValueError, but the config is valid: the device is too small
        print(f"out of GPU memory: {error}", file=sys.stderr)
        return exit_codes.FAILED
    except CheckpointError as error:
        print(f"invalid --checkpoint-dir: {error}", file=sys.stderr)
        return exit_codes.INVALID
    except ValueError as error:  # includes trainables.data.DataError: the config names bad data or values
        print(refused(error), file=sys.stderr)
        return exit_codes.INVALID
    if args.checkpoint_dir is not None and not table.columns:  # no epoch reported: it had ended its training
        print(f"note: the checkpoint in {args.checkpoint_dir} had finished training after epoch "
              f"{final.get('epoch')}: nothing trained, its results again")
    print("final metrics (test: the best epoch on validation):")
    for key in sorted(k for k in final if k.startswith("test/") or k.startswith("best") or k == "epoch"):
        value = final[key]
        shown = f"{value:.6g}" if isinstance(value, float) and not math.isnan(value) else str(value)
        print(f"  {key} = {shown}")
    return exit_codes.OK
