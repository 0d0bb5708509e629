"""Run (or resume) one planned search: Tuner set-up, the MLflow parent run, the end-of-search
summary, ``best_config.yaml`` and the run directory's ``losstune.json``."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from search import exit_codes
from search._shell import mlflow_ui_command, search_command
from search._preflight import is_server_uri
from search.console import say
from search.driver._callbacks import MlflowCallback, ProgressPrinter, trial_error
from search.driver._plan import BEST_CONFIG, SUMMARY_FILE, SearchPlan, read_meta, space_digest, write_meta
from search.driver._promotions import PromotingAsha, PromotionState
from search.driver._state import StateSnapshot, clear_state
from search.driver._rungs import grace_period, scheduler_rungs, scheduling_text, space_epochs
from search.space._schema import ASHA_SCHEDULERS
from search.driver._strategy import DefineByRun, build_scheduler, build_searcher, trial_threads
from search.driver._summary import (
    TrialSummary,
    best_config_yaml,
    best_trial,
    format_summary,
    pareto_set,
    summarize,
)
from search.driver._trainable import make_trainable
from search.space import Space
from search.tracking import (
    DIMENSIONS_FILE,
    TAG_RAY_JOB_PREFIX,
    SearchTracker,
    TrackingSettings,
    default_tracking_uri,
    dimensions_json,
    redact_uri,
    same_store,
    use_buffered_requests,
)

if TYPE_CHECKING:
    from trainables.data import MultiheadDataset

__all__ = ["SearchOutcome", "run_search"]

_UNFINISHED_STATES = ("PENDING", "RUNNING", "PAUSED")


@dataclass
class SearchOutcome:
    exit_code: int
    plan: SearchPlan
    trials: list[TrialSummary] = field(default_factory=list)
    best: TrialSummary | None = None
    pareto: list[TrialSummary] = field(default_factory=list)
    interrupted: bool = False


def _settings_params(space: Space, *, num_samples: int, threads: int, epochs: int) -> dict[str, Any]:
    params: dict[str, Any] = {f"search.{k}": v for k, v in asdict(space.search).items()}
    params["search.num_samples"] = num_samples
    # the scheduler's own settings only where it reads them (none: neither; median: no rungs)
    del params["search.grace_period"], params["search.reduction_factor"]
    if space.search.scheduler != "none":
        params["search.grace_period"] = grace_period(space, epochs=epochs)
    if space.search.scheduler in ASHA_SCHEDULERS:
        params["search.reduction_factor"] = space.search.reduction_factor
        params["search.rungs"] = scheduler_rungs(space)
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
            plan.location.uri, trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
        )
    scheduler = build_scheduler(space, epochs=epochs)
    return Tuner(
        trainable,
        tune_config=TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=num_samples,
            reuse_actors=True,
            time_budget_s=space.search.time_budget_s,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=RunConfig(
            name=plan.name,
            storage_path=plan.location.parent,  # a URI goes to Tune as it is
            callbacks=[
                # Tune's result.json and progress.csv (ExperimentAnalysis reads them), without its
                # TensorBoard logger: metrics go to MLflow, and TensorBoard event files cost the
                # driver some of its time per result (see _tune_environment).
                JsonLoggerCallback(),
                CSVLoggerCallback(),
                ProgressPrinter(metric=space.objectives[0].metric, epochs=epochs, num_samples=num_samples),
                MlflowCallback(tracker),
                # A local copy of Tune's state that survives a crash in mid-write (not needed where an
                # object store replaces files whole).
                *([StateSnapshot()] if plan.run_dir is not None else []),
                # the rungs of ASHA with promotions, saved with Tune's state (Tune saves no scheduler's)
                *([PromotionState(scheduler)] if isinstance(scheduler, PromotingAsha) else []),
            ],
            failure_config=FailureConfig(max_failures=space.search.max_failures),
            # One checkpoint per trial; Tune then saves its experiment state with every new
            # checkpoint (StateSnapshot keeps the one it deletes until that state is saved).
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            verbose=plan.options.verbose,
        ),
    )


@contextmanager
def _tune_environment(verbose: int, *, explicit_loggers: bool) -> Iterator[None]:
    """Environment variables Tune reads in ``fit``, set for that call only (a value the environment
    already sets is left alone):

    - ``RAY_AIR_NEW_OUTPUT=0`` at verbose 0: Tune's default ("new") output engine prints an
      experiment banner and a TensorBoard hint even at verbose 0; its legacy engine prints nothing.
    - ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` when the search's JSON and CSV loggers were passed
      explicitly (``_build_tuner``): Tune then adds no TensorBoard logger of its own. A resumed
      search gets its callbacks back from its first start; one started by a losstune that passed
      no loggers still needs Tune's.
    """
    wanted = {**({"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"} if explicit_loggers else {}),
              **({"RAY_AIR_NEW_OUTPUT": "0"} if verbose == 0 else {})}
    added = {name: value for name, value in wanted.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def run_search(plan: SearchPlan, *, data: MultiheadDataset | None = None) -> SearchOutcome:
    """Run the planned search on the Ray instance this process is connected to. ``data``: the
    data set ``prepare_data`` loaded (loaded here when None and the driver loads it), handed to
    every trial through Ray's object store."""
    space, options = plan.space, plan.options
    for note in plan.notes:
        say(f"note: {note}")
    if plan.finished:
        return _shown_again(plan)
    epochs = space_epochs(space)
    threads = trial_threads(space)
    settings = TrackingSettings(
        tracking_uri=plan.tracking_uri,
        experiment=plan.experiment,
        search_id=plan.search_id,
        search_name=plan.name,
        objective_metric=space.objectives[0].metric,
        objective_mode=space.objectives[0].mode,
        other_objectives=tuple(o.metric for o in space.objectives[1:]),
    )
    use_buffered_requests()
    tracker = SearchTracker(settings)
    # Tune saves its experiment state with every trial checkpoint (num_to_keep=1, see
    # _build_tuner) and warns about that when epochs are short; that is intended here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = make_trainable(options.train_fn, metrics=[o.metric for o in space.objectives])
    if space.search.data_loading == "driver":
        if data is None:
            from trainables.data import load_dataset

            data = load_dataset(space.data)
        # One copy in the object store of each node that runs trials; a trial reads it from there.
        trainable = tune.with_parameters(trainable, data=data)
    trainable = tune.with_resources(trainable, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})
    meta = read_meta(plan.location) or {}
    if not plan.resume and plan.run_dir is not None and plan.run_dir.is_dir():
        clear_state(plan.run_dir)  # an earlier attempt that left nothing Tune can resume from
    if plan.resume:
        # The searcher (with its Optuna study) comes back from the experiment directory.
        searcher, num_samples = None, int(meta["num_samples"])
    else:
        warm = plan.warm.trials if plan.warm is not None else ()
        searcher, num_samples = build_searcher(space, DefineByRun(space, threads=threads), warm=warm)
    # A resumed Tuner keeps the run config (and so the verbosity) the search started with.
    verbose = int(meta.get("verbose", options.verbose)) if plan.resume else options.verbose
    explicit_loggers = meta.get("tune_loggers") == "explicit" if plan.resume else True
    # Written before Tune writes anything, so a directory Tune can restore always says whose it is.
    meta.update(
        name=plan.name,
        search_id=plan.search_id,
        tracking_uri=plan.tracking_uri,
        experiment=plan.experiment,
        space=str(space.path),
        # of the text beside it: a run directory that recorded only the digest resumes with the file
        # as it is, and the next resume compares the two (the old digest with the new text refused it)
        space_sha256=space_digest(space),
        # the file itself: a resume after the file changed runs the space the search started with
        # (the plan's space is that one)
        space_text=space.text,
        num_samples=num_samples,
        verbose=verbose,
        status="running",
        **({"tune_loggers": "explicit"} if explicit_loggers else {}),
    )
    write_meta(plan.location, meta)
    params = _settings_params(space, num_samples=num_samples, threads=threads, epochs=epochs)
    if plan.warm is not None:
        params["search.warm_start"] = plan.warm.search_id
    tracker.start_search(
        params=params,
        artifacts={
            "space.yaml": space.text,
            "search_settings.json": json.dumps(params, indent=2) + "\n",
            DIMENSIONS_FILE: dimensions_json(space.searched()),
        },
        tags={f"{TAG_RAY_JOB_PREFIX}{options.ray_job}": "1"} if options.ray_job else None,
    )
    tuner = _build_tuner(plan, tracker, trainable=trainable, searcher=searcher, num_samples=num_samples, epochs=epochs)
    verb = "Resuming unfinished" if plan.resume else "Starting"
    earlier = 0 if plan.resume else tracker.other_searches()
    if earlier:
        say(
            f"note: experiment {plan.experiment!r} already holds {earlier} other search(es) named {plan.name!r}; "
            f"they are left as they are, this one gets its own parent run"
        )
    say(
        f"{verb} search {plan.name!r} ({num_samples} trials, sampler {space.search.sampler}, "
        f"scheduler {scheduling_text(space)}) in {plan.location}\n"
        f"MLflow: {redact_uri(plan.tracking_uri)}, experiment {plan.experiment!r}, search id {plan.search_id}"
    )

    hard_stop = False
    with _stop_signal_seen() as stop_signal:
        try:
            with _tune_environment(verbose, explicit_loggers=explicit_loggers):
                tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: Tune stops without its final save
            hard_stop = True

    try:
        analysis = tune.ExperimentAnalysis(plan.location.uri)
        trials, histories = analysis.trials, analysis.trial_dataframes
        state_read = True
    except (ValueError, FileNotFoundError):  # interrupted before Tune saved any state, or mid-write
        trials, histories, state_read = [], {}, False
    # Tune ends a search early only when asked to (a Ctrl-C, SIGTERM, `search stop`) or when its
    # time budget runs out; a resumed Tune keeps what is left of the budget, however the attempts
    # before ended (the driver's own clock, one attempt's, ended every resume interrupted)
    ended_early = any(t.status in _UNFINISHED_STATES for t in trials) or len(trials) < num_samples
    out_of_time = (space.search.time_budget_s is not None and state_read and ended_early
                   and not (hard_stop or stop_signal()))
    if out_of_time:
        # Tune stopped every trial when the budget ran out, but it saves the new state only of a
        # trial it stopped on a worker: one paused by the scheduler (or pending) still reads so.
        for trial in trials:
            if trial.status in ("PAUSED", "PENDING"):
                trial.status = "TERMINATED"
    interrupted = (
        hard_stop
        or any(t.status in _UNFINISHED_STATES for t in trials)
        or (len(trials) < num_samples and not out_of_time)
    )
    # Only against a state Tune saved whole: after a second Ctrl-C its copy in the run directory
    # may be stale or cut off mid-write (read as no trials, every run of the search was discarded,
    # finished ones too, and the resume made new runs for the same trials)
    if state_read and not hard_stop:
        tracker.reconcile({t.trial_id for t in trials})
    if interrupted:
        return _interrupted(plan, tracker, trials)
    return _finish(plan, tracker, trials, histories=histories, meta=meta, num_samples=num_samples,
                   out_of_time=out_of_time)


@contextmanager
def _stop_signal_seen() -> Iterator[Callable[[], bool]]:
    """Whether Tune was told to stop during the block (a function to ask after it), and the
    SIGINT handler of before the block back after it.

    Tune installs its own SIGINT handler for a run (in the main thread), which on the first signal
    asks the run to stop and puts the handler of before back; after a run nobody stopped it stays
    (a Ctrl-C while the summary is written was taken for a run long over). So the handler left
    after the block tells the two apart. Where Tune installs none (another thread), every early end
    counts as asked for."""
    before = signal.getsignal(signal.SIGINT)
    after: list[Any] = []
    try:
        yield lambda: not after or after[0] is before
    finally:
        after.append(signal.getsignal(signal.SIGINT))
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, before)


def _shown_again(plan: SearchPlan) -> SearchOutcome:
    """A finished search, resumed: its saved summary, and nothing run, logged or written (the
    outcome has no trials: the summary is the saved text). Exits as the search did."""
    summary = plan.location.read_text(SUMMARY_FILE)
    say(f"Search {plan.name!r} ({plan.search_id}) already finished in {plan.location}; nothing runs again.")
    if summary is not None:
        say("\n" + summary.rstrip("\n"))
    if plan.location.read_text(BEST_CONFIG) is not None:
        say(f"\nbest config: {plan.location.shown_file(BEST_CONFIG)}")
    return SearchOutcome(exit_code=exit_codes.FAILED if plan.all_failed else exit_codes.OK, plan=plan)


def _interrupted(plan: SearchPlan, tracker: SearchTracker, trials: list[Any]) -> SearchOutcome:
    for trial in trials:
        if trial.status in _UNFINISHED_STATES:
            tracker.trial_ended(trial.trial_id, state="interrupted", reason="the search was interrupted")
    # A state read stale or not at all (a second Ctrl-C) misses trials whose runs are open: they end
    # interrupted too, not left RUNNING (a resume reopens one Tune still has; reconcile sets the
    # others aside at a later clean end).
    known = {trial.trial_id for trial in trials}
    for trial_id, open_run in tracker.open_trial_runs().items():
        if open_run and trial_id not in known:
            tracker.trial_ended(trial_id, state="interrupted", reason="the search was interrupted")
    tracker.end_search(end="interrupted")
    say(f"\nSearch {plan.name!r} interrupted; its state is saved in {plan.location}.\n"
        f"Resume it with: {resume_command(plan)}")
    return SearchOutcome(exit_code=exit_codes.INTERRUPTED, plan=plan, interrupted=True)


def resume_command(plan: SearchPlan) -> str:
    """The command that resumes ``plan``'s search, for a shell: the options the search's saved state
    does not hold (its storage, name and Ray instance) as the command gave them (the storage
    always: a default of the command, which the driver does not know), secrets of URIs left out."""
    # A submitted search (a Ray Job) is resumed by submitting it again, from where it was submitted.
    command = "submit" if plan.options.ray_job else "run"
    words = [command, plan.space_named, "--resume", "--storage", redact_uri(plan.options.storage)]
    if plan.name != plan.space.name:
        words += ["--name", plan.name]
    words += plan.options.ray_flags
    if plan.options.ray_job:  # the store's password left out, as `search stop`'s command leaves it
        words += ["--address", plan.options.submitted_to or "http://HEAD:8265", "--tracking-uri",
                  redact_uri(plan.tracking_uri)]
    return search_command(*words, here=not plan.options.ray_job)


def _finish(
    plan: SearchPlan,
    tracker: SearchTracker,
    trials: list[Any],
    *,
    histories: Mapping[str, Any],
    meta: dict[str, Any],
    num_samples: int,
    out_of_time: bool,
) -> SearchOutcome:
    space = plan.space
    objectives = space.objectives
    open_runs = tracker.open_trial_runs()
    # A trial the time budget ended before it started has no result and no run: it was never run
    # (before, the summary counted it as stopped, where MLflow and the report have no such trial).
    summaries = [s for s in summarize(trials, objectives, histories=histories)
                 if not (s.state == "STOPPED" and s.epochs == 0 and s.trial_id not in open_runs)]
    # Tune stops the trials still running when the time budget runs out without telling the
    # callbacks, so their runs are still open here.
    cut_short = [s for s in summaries if s.state == "STOPPED" and open_runs.get(s.trial_id, False)]
    budget_ended = out_of_time and (len(summaries) < num_samples or bool(cut_short))
    # Safety net (and the trials the budget stopped): a run the callbacks could not end (e.g. the
    # driver died between Tune's state save and the callback), or that an interrupted attempt left
    # open for a trial still paused when the budget ran out, is ended by the state Tune recorded.
    by_id = {trial.trial_id: trial for trial in trials}
    for s in summaries:
        if open_runs.get(s.trial_id):
            if s.state == "STOPPED":
                state = "stopped_by_budget" if budget_ended else "stopped_early"
            else:
                state = {"FINISHED": "finished", "FAILED": "failed"}.get(s.state, "interrupted")
            reason = "stopped by the time budget" if state == "stopped_by_budget" else s.state.lower()
            # a failure's traceback as error.txt, as the callback would have logged it
            details = trial_error(by_id[s.trial_id])[1] if s.state == "FAILED" else None
            tracker.trial_ended(s.trial_id, state=state, reason=reason, error=s.error, details=details)

    notes = []
    if budget_ended:
        left = len(cut_short) + num_samples - len(summaries)
        notes.append(
            f"ended by its time budget (search.time_budget_s: {space.search.time_budget_s:g} s): "
            f"{left} of {num_samples} trials stopped by it or never run"
        )
    best = best_trial(summaries, objectives)
    pareto = pareto_set(summaries, objectives) if len(objectives) > 1 else []
    def summary(*, here: bool) -> str:
        report = search_command("report", plan.search_id, "--storage", redact_uri(plan.options.storage), here=here)
        return format_summary(summaries, objectives, title=f"Search {plan.name!r} ({plan.search_id})", pareto=pareto,
                              notes=notes, everything=report, searched=space.searched())

    # summary.txt and MLflow's copy are read later and elsewhere: plain `python` there
    table = summary(here=False)
    artifacts = {SUMMARY_FILE: table + "\n"}
    if best is not None:
        text = best_config_yaml(best, search_id=plan.search_id, objectives=objectives)
        plan.location.write_text(BEST_CONFIG, text)
        artifacts[BEST_CONFIG] = text
    if pareto:
        artifacts["pareto.json"] = json.dumps(
            [{"trial_id": s.trial_id, "values": s.values, "config": s.config} for s in pareto], indent=2
        )
    plan.location.write_text(SUMMARY_FILE, table + "\n")

    all_failed = bool(summaries) and all(s.state == "FAILED" for s in summaries)
    end = "all_failed" if all_failed else "time_budget" if budget_ended else "finished"
    tags = {"losstune.num_trials": str(len(summaries))}
    if best is not None:
        tags["losstune.best_trial"] = best.trial_id
        best_run = tracker.trial_run_id(best.trial_id)  # MLflow's id: the UI's search box takes it
        if best_run is not None:
            tags["losstune.best_run_id"] = best_run
    tracker.end_search(end=end, artifacts=artifacts, tags=tags)
    meta.update(status="finished", end=end, num_samples=num_samples)
    write_meta(plan.location, meta)

    here = not plan.options.ray_job  # a submitted search's commands are for where it was submitted from
    say("\n" + summary(here=here))
    if best is not None:
        local = plan.location.local_dir
        config = str(local / BEST_CONFIG) if local is not None and here else "..."
        train = search_command("train", plan.space_named, "--config", config, here=here)
        say(f"\nbest config: {plan.location.shown_file(BEST_CONFIG)}  ({train})")
    if is_server_uri(plan.tracking_uri):  # `mlflow ui` takes a store, not a server: the UI is the server's
        ui = f"MLflow UI: {redact_uri(plan.tracking_uri)}"
    else:
        ui = f"MLflow UI: {mlflow_ui_command(redact_uri(plan.tracking_uri), here=here)}"
    if same_store(plan.tracking_uri, default_tracking_uri()):
        ui += "   (or: make ui)"
    say(ui)
    return SearchOutcome(
        exit_code=exit_codes.FAILED if all_failed else exit_codes.OK, plan=plan, trials=summaries, best=best, pareto=pareto
    )
