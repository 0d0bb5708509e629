"""Run (or resume) one search: Tuner set-up, the MLflow parent run, the end-of-search summary.

A search lives in ``<storage>/<name>``: Tune's experiment state, the trials' checkpoints, and
``losstune.json`` (the search id, the MLflow store and experiment, and whether it finished).
The same command after a crash finds that directory unfinished and resumes it; a resume keeps
the MLflow store and experiment the search started with, so its runs continue.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

from search.driver._callbacks import MlflowCallback, ProgressPrinter
from search.driver._state import StateSnapshot, clear_state, usable_state
from search.driver._strategy import DefineByRun, build_scheduler, build_searcher, trial_threads
from search.driver._summary import (
    TrialSummary,
    best_config_yaml,
    best_trial,
    format_summary,
    pareto_set,
    summarize,
)
from search.driver._trainable import TrainFn, make_trainable
from search.space import SEARCH_NAME_RULE, Space, is_search_name
from search.tracking import (
    SearchTracker,
    TrackingSettings,
    default_tracking_uri,
    make_search_id,
    resolve_tracking_uri,
)

__all__ = [
    "SearchInputError",
    "SearchOptions",
    "SearchOutcome",
    "SearchPlan",
    "check_resources",
    "plan_search",
    "prepare_data",
    "run_search",
]

EXIT_OK, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 130
META_FILE = "losstune.json"
BEST_CONFIG = "best_config.yaml"
SUMMARY_FILE = "summary.txt"
_UNFINISHED_STATES = ("PENDING", "RUNNING", "PAUSED")


class SearchInputError(ValueError):
    """A search that cannot start as asked (exit 2): e.g. nothing to resume, already finished."""


@dataclass(frozen=True)
class SearchOptions:
    storage: str = "runs"  # results go to <storage>/<name>
    name: str | None = None  # default: the space's name
    resume: bool = False  # require an unfinished search to resume
    resume_id: str | None = None  # --resume SEARCH_ID: and require it to be this search
    tracking_uri: str | None = None  # --tracking-uri (beats MLFLOW_TRACKING_URI and the space)
    verbose: int = 0  # Ray Tune's own output (0-3); the driver prints a line per trial result
    # Runs each trial; default trainables.train.train. Tests wrap it to inject faults.
    train_fn: TrainFn | None = None


@dataclass(frozen=True)
class SearchPlan:
    """Everything decided before Ray starts."""

    space: Space
    options: SearchOptions
    name: str
    run_dir: Path
    resume: bool
    search_id: str
    tracking_uri: str
    experiment: str
    notes: tuple[str, ...] = ()


@dataclass
class SearchOutcome:
    exit_code: int
    plan: SearchPlan
    trials: list[TrialSummary] = field(default_factory=list)
    best: TrialSummary | None = None
    pareto: list[TrialSummary] = field(default_factory=list)
    interrupted: bool = False


def _space_digest(space: Space) -> str:
    return hashlib.sha256(space.text.encode()).hexdigest()


def _read_meta(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, run_dir / META_FILE)


def plan_search(space: Space, options: SearchOptions) -> SearchPlan:
    """Decide between a new search and a resume, and where it is tracked. Raises SearchInputError.

    A search is found again only through its own run directory (``losstune.json`` there holds its
    search id); a new search always gets a new id, so it never touches an earlier search's runs.
    Before a resume, Tune's saved state is checked and, when the crash cut it off, put back
    from the copy ``StateSnapshot`` keeps (the only change made to the run directory here)."""
    name = options.name or space.name
    if not is_search_name(name):
        raise SearchInputError(f"--name: {SEARCH_NAME_RULE}, but got {name!r}")
    run_dir = (Path(options.storage).expanduser() / name).resolve()
    started = Tuner.can_restore(str(run_dir))  # Tune wrote tuner.pkl: a search began here
    meta = _read_meta(run_dir)
    if options.resume and not started:
        raise SearchInputError(f"--resume needs an unfinished search in {run_dir}, but got no Tune experiment there")
    if options.resume_id is not None and (meta or {}).get("search_id") != options.resume_id:
        there = f"search {meta['search_id']}" if meta else "no losstune search"
        raise SearchInputError(f"--resume {options.resume_id} must name the search in {run_dir}, but got {there} there")
    if started and meta is None:
        raise SearchInputError(
            f"a run directory of a losstune search (with {META_FILE}), but got another Tune experiment in {run_dir}"
        )
    if started and meta.get("status") == "finished" and not options.resume:
        raise SearchInputError(
            f"a new search name or storage, but got search {name!r} already finished in {run_dir} "
            f"(its best config: {run_dir / BEST_CONFIG}); pass --name NEW or --storage DIR to run again, "
            f"or --resume to print its summary again"
        )
    notes: list[str] = []
    resume = False
    if started:
        resume, repaired = usable_state(run_dir)
        if resume and repaired:
            notes.append(f"the crash cut off Tune's saved state in {run_dir}; it was put back from losstune's copy")
        if not resume:
            notes.append(
                "the previous attempt left no state Tune can resume from; the search starts again in the "
                "same MLflow parent run (runs of its lost trials end KILLED, tagged losstune.state=discarded)"
            )
    wanted = resolve_tracking_uri(cli=options.tracking_uri, space=space.mlflow.tracking_uri)
    if meta is not None:
        # Same store, experiment and search id as before: the search's runs continue.
        tracking_uri, experiment, search_id = meta["tracking_uri"], meta["experiment"], meta["search_id"]
        if wanted != tracking_uri:
            notes.append(f"the search continues in the MLflow store it started with: {tracking_uri} (not {wanted})")
        if resume and meta.get("space_sha256") != _space_digest(space):
            notes.append("the space file changed since the search started; the search resumes with its original space")
    else:
        tracking_uri = wanted
        experiment = space.mlflow.experiment or space.name
        search_id = make_search_id(name)
    return SearchPlan(
        space=space,
        options=options,
        name=name,
        run_dir=run_dir,
        resume=resume,
        search_id=search_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
        notes=tuple(notes),
    )


def prepare_data(space: Space, *, progress: Callable[[int, int], None] | None = None) -> None:
    """Load the data set once in the driver: a missing or broken data set is invalid input found
    before any trial starts, and a data set generated on first use is generated once, not by
    several trials at the same time (reporting ``progress(done, total)`` while it is)."""
    from trainables.data import DataError, load_dataset

    try:
        load_dataset(space.data, progress=progress)
    except DataError as exc:
        raise SearchInputError(str(exc)) from None


def check_resources(space: Space) -> None:
    """A trial must fit on the cluster, else Tune waits for resources forever."""
    import ray

    available = ray.cluster_resources()
    for key, name in (("CPU", "cpu"), ("GPU", "gpu")):
        wanted = getattr(space.resources, name)
        have = available.get(key, 0.0)
        if wanted > have:
            raise SearchInputError(
                f"resources.{name} of a trial must fit on the Ray cluster ({have:g} {key}), but got {wanted:g}"
            )


def _settings_params(space: Space, *, num_samples: int, threads: int, epochs: int) -> dict[str, Any]:
    params: dict[str, Any] = {f"search.{k}": v for k, v in asdict(space.search).items()}
    params["search.num_samples"] = num_samples
    params["resources.cpu"] = space.resources.cpu
    params["resources.gpu"] = space.resources.gpu
    params["train.threads"] = threads
    params["train.epochs"] = epochs
    params["data.kind"] = space.data.kind
    for i, objective in enumerate(space.objectives):
        params[f"objective.{i}"] = f"{objective.metric} ({objective.mode})"
    return params


def _trial_dirname(trial: Any) -> str:
    # Short and stable: the trial id names the directory, the MLflow run and the terminal lines.
    return f"trial_{trial.trial_id}"


def _build_tuner(
    plan: SearchPlan, tracker: SearchTracker, *, trainable: Any, searcher: Any, num_samples: int, epochs: int
) -> Tuner:
    space = plan.space
    if plan.resume:
        # The searcher, the scheduler and the callbacks come back from the experiment directory.
        return Tuner.restore(
            str(plan.run_dir), trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
    return Tuner(
        trainable,
        tune_config=TuneConfig(
            search_alg=searcher,
            scheduler=build_scheduler(space, epochs=epochs),
            num_samples=num_samples,
            reuse_actors=True,
            time_budget_s=space.search.time_budget_s,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=RunConfig(
            name=plan.run_dir.name,
            storage_path=str(plan.run_dir.parent),
            callbacks=[
                ProgressPrinter(metric=space.objectives[0].metric, epochs=epochs, num_samples=num_samples),
                MlflowCallback(tracker),
                StateSnapshot(str(plan.run_dir)),
            ],
            failure_config=FailureConfig(max_failures=space.search.max_failures),
            # One checkpoint per trial; Tune then saves its experiment state with every new
            # checkpoint, so a restored trial never points at a checkpoint already deleted.
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            verbose=plan.options.verbose,
        ),
    )


@contextmanager
def _tune_output(verbose: int) -> Iterator[None]:
    """Ray Tune's output at ``verbose``. Tune's default ("new") output engine prints an experiment
    banner and a TensorBoard hint even at verbose 0; its legacy engine, chosen with the documented
    ``RAY_AIR_NEW_OUTPUT=0``, prints nothing at 0. Tune reads the variable in ``fit``; it is set for
    that call only (and left alone when the environment sets it)."""
    if verbose != 0 or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def run_search(plan: SearchPlan) -> SearchOutcome:
    """Run the planned search on the Ray instance this process is connected to."""
    space, options = plan.space, plan.options
    for note in plan.notes:
        print(f"note: {note}", flush=True)
    epochs = int(space.sample(seed=space.search.seed)["train.epochs"])
    threads = trial_threads(space)
    settings = TrackingSettings(
        tracking_uri=plan.tracking_uri,
        experiment=plan.experiment,
        search_id=plan.search_id,
        search_name=plan.name,
        objective_metric=space.objectives[0].metric,
        objective_mode=space.objectives[0].mode,
    )
    tracker = SearchTracker(settings)
    # Tune saves its experiment state with every trial checkpoint (num_to_keep=1, see
    # _build_tuner) and warns about that when epochs are short; that is intended here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = tune.with_resources(
        make_trainable(options.train_fn, workdir=os.getcwd(), metrics=[o.metric for o in space.objectives]),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )
    meta = _read_meta(plan.run_dir) or {}
    if not plan.resume and plan.run_dir.is_dir():
        clear_state(plan.run_dir)  # an earlier attempt that left nothing Tune can resume from
    if plan.resume:
        # The searcher (with its Optuna study) comes back from the experiment directory.
        searcher, num_samples = None, int(meta["num_samples"])
    else:
        searcher, num_samples = build_searcher(space, DefineByRun(space, threads=threads))
    # A resumed Tuner keeps the run config (and so the verbosity) the search started with.
    verbose = int(meta.get("verbose", options.verbose)) if plan.resume else options.verbose
    # Written before Tune writes anything, so a directory Tune can restore always says whose it is.
    meta.update(
        name=plan.name,
        search_id=plan.search_id,
        tracking_uri=plan.tracking_uri,
        experiment=plan.experiment,
        space=str(space.path),
        space_sha256=meta["space_sha256"] if plan.resume else _space_digest(space),
        num_samples=num_samples,
        verbose=verbose,
        status="running",
    )
    _write_meta(plan.run_dir, meta)
    params = _settings_params(space, num_samples=num_samples, threads=threads, epochs=epochs)
    tracker.start_search(
        params=params,
        artifacts={"space.yaml": space.text, "search_settings.json": json.dumps(params, indent=2) + "\n"},
    )
    tuner = _build_tuner(plan, tracker, trainable=trainable, searcher=searcher, num_samples=num_samples, epochs=epochs)
    verb = "Resuming unfinished" if plan.resume else "Starting"
    earlier = 0 if plan.resume else tracker.other_searches()
    if earlier:
        print(
            f"note: experiment {plan.experiment!r} already holds {earlier} other search(es) named {plan.name!r}; "
            f"they are left as they are, this one gets its own parent run",
            flush=True,
        )
    print(
        f"{verb} search {plan.name!r} ({num_samples} trials, sampler {space.search.sampler}, "
        f"scheduler {space.search.scheduler}) in {plan.run_dir}\n"
        f"MLflow: {plan.tracking_uri}, experiment {plan.experiment!r}, search id {plan.search_id}",
        flush=True,
    )

    started = time.monotonic()
    interrupted = False
    try:
        with _tune_output(verbose):
            tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: Tune stops without its final save
        interrupted = True
    elapsed = time.monotonic() - started

    try:
        trials = tune.ExperimentAnalysis(str(plan.run_dir)).trials
    except (ValueError, FileNotFoundError):  # interrupted before Tune saved any state
        trials = []
    budget = space.search.time_budget_s
    out_of_time = budget is not None and elapsed >= budget
    interrupted = (
        interrupted
        or any(t.status in _UNFINISHED_STATES for t in trials)
        or (len(trials) < num_samples and not out_of_time)
    )
    tracker.reconcile({t.trial_id for t in trials})
    if interrupted:
        return _interrupted(plan, tracker, trials)
    return _finish(plan, tracker, trials, meta=meta, num_samples=num_samples, out_of_time=out_of_time)


def _interrupted(plan: SearchPlan, tracker: SearchTracker, trials: list[Any]) -> SearchOutcome:
    for trial in trials:
        if trial.status in _UNFINISHED_STATES:
            tracker.trial_ended(trial.trial_id, state="interrupted", reason="the search was interrupted")
    tracker.end_search(end="interrupted")
    print(
        f"\nSearch {plan.name!r} interrupted; its state is saved in {plan.run_dir}.\n"
        f"Resume it with: python -m search run {plan.space.path} --resume"
        + (f" --storage {plan.options.storage}" if plan.options.storage != "runs" else "")
        + (f" --name {plan.name}" if plan.name != plan.space.name else ""),
        flush=True,
    )
    return SearchOutcome(exit_code=EXIT_INTERRUPTED, plan=plan, interrupted=True)


def _finish(
    plan: SearchPlan,
    tracker: SearchTracker,
    trials: list[Any],
    *,
    meta: dict[str, Any],
    num_samples: int,
    out_of_time: bool,
) -> SearchOutcome:
    space = plan.space
    objectives = space.objectives
    summaries = summarize(trials, objectives)
    statuses = tracker.run_statuses()
    # Tune stops the trials still running when the time budget runs out without telling the
    # callbacks, so their runs are still open here; a trial the budget kept from starting has none.
    cut_short = [s for s in summaries if s.state == "STOPPED" and statuses.get(s.trial_id) in (None, "RUNNING")]
    budget_ended = out_of_time and (len(summaries) < num_samples or bool(cut_short))
    # Safety net (and the trials the budget stopped): a run the callbacks could not end (e.g. the
    # driver died between Tune's state save and the callback) is ended by the state Tune recorded.
    for s in summaries:
        if statuses.get(s.trial_id) == "RUNNING":
            if s.state == "STOPPED":
                state = "stopped_by_budget" if budget_ended else "stopped_early"
            else:
                state = {"FINISHED": "finished", "FAILED": "failed"}.get(s.state, "interrupted")
            reason = "stopped by the time budget" if state == "stopped_by_budget" else s.state.lower()
            tracker.trial_ended(s.trial_id, state=state, reason=reason, error=s.error)

    notes = []
    if budget_ended:
        left = len(cut_short) + num_samples - len(summaries)
        notes.append(
            f"ended by its time budget (search.time_budget_s: {space.search.time_budget_s:g} s): "
            f"{left} of {num_samples} trials stopped by it or never run"
        )
    best = best_trial(summaries, objectives)
    pareto = pareto_set(summaries, objectives) if len(objectives) > 1 else []
    table = format_summary(
        summaries,
        objectives,
        title=f"Search {plan.name!r} ({plan.search_id})",
        pareto=pareto,
        notes=notes,
        everything=f"python -m search report {plan.search_id}",
    )
    artifacts = {SUMMARY_FILE: table + "\n"}
    if best is not None:
        text = best_config_yaml(best, search_id=plan.search_id, objectives=objectives)
        (plan.run_dir / BEST_CONFIG).write_text(text)
        artifacts[BEST_CONFIG] = text
    if pareto:
        artifacts["pareto.json"] = json.dumps(
            [{"trial_id": s.trial_id, "values": s.values, "config": s.config} for s in pareto], indent=2
        )
    (plan.run_dir / SUMMARY_FILE).write_text(table + "\n")

    all_failed = bool(summaries) and all(s.state == "FAILED" for s in summaries)
    end = "all_failed" if all_failed else "time_budget" if budget_ended else "finished"
    tags = {"losstune.num_trials": str(len(summaries))}
    if best is not None:
        tags["losstune.best_trial"] = best.trial_id
    tracker.end_search(end=end, artifacts=artifacts, tags=tags)
    meta.update(status="finished", num_samples=num_samples)
    _write_meta(plan.run_dir, meta)

    print("\n" + table, flush=True)
    if best is not None:
        print(f"\nbest config: {plan.run_dir / BEST_CONFIG}  (python -m search train {space.path} --config ...)")
    ui = f"MLflow UI: mlflow ui --backend-store-uri {plan.tracking_uri}"
    if plan.tracking_uri == default_tracking_uri():
        ui += "   (or: make ui)"
    print(ui, flush=True)
    return SearchOutcome(
        exit_code=EXIT_ALL_FAILED if all_failed else EXIT_OK, plan=plan, trials=summaries, best=best, pareto=pareto
    )
