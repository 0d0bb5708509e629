"""Plan a search before Ray starts: a new search or the resume of an unfinished one, where it is
tracked, and whether its data and resources are there.

A search lives in ``<storage>/<name>``: Tune's experiment state, the trials' checkpoints, and
``losstune.json`` (the search id, the MLflow store and experiment, and whether it finished).
The same command after a crash finds that directory unfinished and resumes it; a resume keeps
the MLflow store and experiment the search started with, so its runs continue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search._preflight import TrackingUriError, check_store_uri
from search.driver._storage import RunLocation
from search.driver._trainable import TrainFn
from search.space import SEARCH_NAME_RULE, Space, is_search_name
from search.tracking import make_search_id, redact_text, redact_uri, resolve_tracking_uri, same_store

if TYPE_CHECKING:
    from search.driver._warm import WarmStart
    from trainables.data import MultiheadDataset

__all__ = [
    "BEST_CONFIG",
    "fit_concurrency",
    "META_FILE",
    "SUMMARY_FILE",
    "SearchInputError",
    "SearchOptions",
    "SearchPlan",
    "check_resources",
    "plan_search",
    "prepare_data",
    "read_meta",
    "search_location",
    "space_digest",
    "write_meta",
]

META_FILE = "losstune.json"
BEST_CONFIG = "best_config.yaml"
SUMMARY_FILE = "summary.txt"


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
    ray_job: str | None = None  # the Ray Job running this search (search submit), tagged on its parent run
    # the space file as the commands the search prints name it: a submitted job's, where it was
    # submitted from (None: the space's own path)
    space_shown: str | None = None
    submitted_to: str | None = None  # a submitted job's: the dashboard it was submitted to (http://HEAD:8265)
    warm_start: str | None = None  # --warm-start SEARCH: an earlier search (id or name) the sampler starts from
    # the command's options for its Ray instance (--address HOST:PORT, --num-cpus N, --dashboard),
    # which the printed resume command repeats: they are not part of the search's saved state
    ray_flags: tuple[str, ...] = ()
    # Runs each trial; default trainables.train.train. Tests wrap it to inject faults.
    train_fn: TrainFn | None = None


@dataclass(frozen=True)
class SearchPlan:
    """Everything decided before Ray starts."""

    space: Space
    options: SearchOptions
    name: str
    location: RunLocation  # <storage>/<name>: a local directory or a file system URI
    resume: bool
    search_id: str
    tracking_uri: str
    experiment: str
    notes: tuple[str, ...] = ()
    warm: WarmStart | None = None  # the earlier trials a new search's sampler starts from
    # --resume of a search that already finished: its summary is shown again and nothing runs (Tune
    # would restart the trials a time budget left paused or pending)
    finished: bool = False
    all_failed: bool = False  # a finished search whose trials all failed: it exits as it did then

    @property
    def space_named(self) -> str:
        """The space file as the commands the search prints name it (``SearchOptions.space_shown``)."""
        return self.options.space_shown or str(self.space.path)

    @property
    def run_dir(self) -> Path | None:
        """The run directory on this machine; None when the storage is a URI (s3://, gs://, ...)."""
        return self.location.local_dir



def space_digest(space: Space) -> str:
    return hashlib.sha256(space.text.encode()).hexdigest()


# what every losstune.json holds
_META_KEYS = ("search_id", "tracking_uri", "experiment")


def read_meta(location: RunLocation) -> dict[str, Any] | None:
    """``losstune.json`` of ``location``; None when there is none or it is not a search's
    (not JSON, not an object, or without a string for each of ``_META_KEYS``)."""
    text = location.read_text(META_FILE)
    try:
        meta = json.loads(text) if text is not None else None
    except ValueError:
        return None
    if not isinstance(meta, dict) or not all(isinstance(meta.get(key), str) for key in _META_KEYS):
        return None
    return meta


def write_meta(location: RunLocation, meta: dict[str, Any]) -> None:
    # private: it holds the tracking URI whole, password included, which a resume needs
    location.write_text(META_FILE, json.dumps(meta, indent=2) + "\n", private=True)


def _tune_began_in(location: RunLocation) -> bool:
    """Whether Tune wrote ``tuner.pkl`` in ``location``: a search began there. A new local run
    directory is told apart without importing Ray Tune, which ``search run`` then imports while
    Ray starts (``import_run_in_background``)."""
    if location.local_dir is not None and not location.local_dir.exists():
        return False
    from ray.tune import Tuner

    try:
        return Tuner.can_restore(location.uri)
    except OSError as exc:  # an object store that cannot be reached or read (pyarrow's errors)
        reason = redact_text(next(iter(str(exc).splitlines()), type(exc).__name__), location.uri)
        raise SearchInputError(f"--storage: a place the run directory can be read, but got {redact_uri(location.uri)}: "
                               f"{reason}") from None


def search_location(space: Space, options: SearchOptions) -> RunLocation:
    """The run directory of the search ``options`` ask for: SearchInputError for a name that is
    not a search name and a place no run directory can be made (``RunLocation.unusable``)."""
    name = space.name if options.name is None else options.name  # --name '' is refused, not ignored
    if not is_search_name(name):
        raise SearchInputError(f"--name: {SEARCH_NAME_RULE}, but got {name!r}")
    location = RunLocation(options.storage, name)
    if (problem := location.unusable()) is not None:
        raise SearchInputError(f"--storage: {problem}")
    return location


def plan_search(space: Space, options: SearchOptions) -> SearchPlan:
    """Decide between a new search and a resume, and where it is tracked. Raises SearchInputError.

    A search is found again only through its own run directory (``losstune.json`` there holds its
    search id); a new search always gets a new id, so it never touches an earlier search's runs.
    Before a resume, Tune's saved state is checked and, when the crash cut it off, put back
    from the copy ``StateSnapshot`` keeps (the only change made to the run directory here)."""
    location = search_location(space, options)
    name = location.name
    started = _tune_began_in(location)
    meta = read_meta(location)
    if options.resume and not started:
        raise SearchInputError(f"--resume needs an unfinished search in {location}, but got no Tune experiment there")
    if options.resume_id is not None and (meta or {}).get("search_id") != options.resume_id:
        there = f"search {meta['search_id']}" if meta else "no losstune search"
        raise SearchInputError(f"--resume {options.resume_id} must name the search in {location}, but got {there} there")
    if started and meta is None:
        raise SearchInputError(
            f"a run directory of a losstune search (with {META_FILE}), but got another Tune experiment in {location}"
        )
    local = location.local_dir
    if meta is None and local is not None and local.is_dir() and (held := sorted(p.name for p in local.iterdir())):
        # a folder of the user's own: a new search clears an earlier attempt's Tune files from its
        # run directory (*-*.json, *-*.pkl), which deleted files of theirs of such names
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise SearchInputError(
            f"a run directory of a losstune search (with {META_FILE}), or an empty or absent one, but got {local}, "
            f"which holds {shown}; pass --name NEW or --storage DIR"
        )
    if started and meta.get("status") == "finished" and not options.resume:
        raise SearchInputError(
            f"a new search name or storage, but got search {name!r} already finished in {location} "
            f"(its best config: {location.shown_file(BEST_CONFIG)}); pass --name NEW or --storage DIR to run again, "
            f"or --resume to print its summary again"
        )
    notes: list[str] = []
    resume = False
    finished = started and meta.get("status") == "finished"
    if started and (location.local_dir is None or finished):
        # an object store replaces a file whole: no state cut off by a crash to repair; a finished
        # search's state is only read
        resume = True
    elif started:
        from search.driver._state import usable_state  # Ray Tune: see _tune_began_in

        resume, repaired = usable_state(location.local_dir)
        if resume and repaired:
            notes.append(f"the crash cut off Tune's saved state in {location}; it was put back from losstune's copy")
        if not resume:
            notes.append(
                "the previous attempt left no state Tune can resume from; the search starts again in the "
                "same MLflow parent run (runs of its lost trials end KILLED, tagged losstune.state=discarded)"
            )
    wanted = resolve_tracking_uri(cli=options.tracking_uri, space=space.mlflow.tracking_uri)
    if meta is not None:
        # Same store, experiment and search id as before: the search's runs continue.
        tracking_uri, experiment, search_id = meta["tracking_uri"], meta["experiment"], meta["search_id"]
        if same_store(wanted, tracking_uri):
            tracking_uri = wanted  # its credentials as given now: a password changed since, or mistyped then
        elif not finished:
            notes.append(f"the search continues in the MLflow store it started with: {redact_uri(tracking_uri)} "
                         f"(not {redact_uri(wanted)})")
        if resume and not finished and meta.get("space_sha256") != space_digest(space):
            space, note = _original_space(space, meta, location)
            notes.append(note)
    else:
        tracking_uri = wanted
        experiment = space.mlflow.experiment or space.name
        search_id = make_search_id(name)
        repeats = space.repeats_note()
        if repeats is not None:
            notes.append(repeats)
    try:
        if not finished:  # a finished search's summary is printed without MLflow
            check_store_uri(tracking_uri, writing=True)
    except TrackingUriError as exc:
        recorded = f" (recorded in {location.shown_file(META_FILE)})" if meta is not None else ""
        raise SearchInputError(f"{exc}{recorded}") from None
    warm = None
    if options.warm_start is not None and finished:
        notes.append("--warm-start is left out: the search has finished")
    elif options.warm_start is not None and resume:
        notes.append("--warm-start is left out: the search resumes with the sampler state it saved")
    elif options.warm_start is not None:
        from search.driver._warm import read_warm_start

        warm = read_warm_start(space, tracking_uri=tracking_uri, selector=options.warm_start, exclude=search_id)
        notes.append(warm.note())
    return SearchPlan(space, options, name, location, resume, search_id, tracking_uri, experiment, tuple(notes), warm,
                      finished, all_failed=finished and meta.get("end") == "all_failed")


def _original_space(space: Space, meta: dict[str, Any], location: RunLocation) -> tuple[Space, str]:
    """(the space a resumed search runs, a note): the one it started with, from its run directory's
    record, so that its trials' data set, objectives and budget are that space's whatever the file
    says now. A run directory of a version that recorded only the file's digest resumes with the
    file as it is (a space such a version ran may need an edit to pass today's checks)."""
    text = meta.get("space_text")
    if not isinstance(text, str):
        return space, (f"the space file changed since the search started; the search resumes with its original "
                       f"sampler and scheduler, but takes its data set, objectives and budget from the file as it "
                       f"is now ({location.shown_file(META_FILE)} was written by a version that did not record the file)")
    from search.space import SpaceError, load_space

    try:
        original = load_space(space.path, text=text)
    except SpaceError as exc:  # a rule added since, or a plugin it needs gone: the edited file may mend it
        return space, (f"the space file changed since the search started, and the space it started with "
                       f"({location.shown_file(META_FILE)}) is no longer valid ({' '.join(str(exc).split())}); the search "
                       f"resumes with its original sampler and scheduler, but takes its data set, objectives and "
                       f"budget from the file as it is now")
    if space_digest(original) != meta.get("space_sha256"):
        raise SearchInputError(f"{location.shown_file(META_FILE)}: a space_text whose sha256 is its space_sha256, but got "
                               f"another")
    return original, (f"the space file changed since the search started; the search resumes with its original "
                      f"space, recorded in {location.shown_file(META_FILE)}")


def fit_concurrency(plan: SearchPlan) -> tuple[SearchPlan, str | None]:
    """``plan`` with ``search.max_concurrent`` at most the trials this local Ray instance runs at
    once, and a note when that lowered it: a trial Tune holds pending for want of resources has
    its configuration drawn already, before any result of the others, so above that TPE proposes
    as random search does (8 at once on 2 CPUs: 6 blind draws). A cluster may grow: its plan is
    left as it is."""
    import ray

    search, need = plan.space.search, plan.space.resources
    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0.0) / need.cpu + 1e-9) if need.cpu > 0 else search.max_concurrent
    if need.gpu > 0:
        fits = min(fits, int(total.get("GPU", 0.0) / need.gpu + 1e-9))
    if fits < 1 or search.max_concurrent <= fits:
        return plan, None
    space = dataclasses.replace(plan.space, search=dataclasses.replace(search, max_concurrent=fits))
    note = (f"search.max_concurrent is {search.max_concurrent}, but {fits} trial(s) fit at once on this machine's Ray "
            f"({total.get('CPU', 0.0):g} CPU, {total.get('GPU', 0.0):g} GPU; resources per trial {need.cpu:g} CPU, "
            f"{need.gpu:g} GPU): the search runs {fits} at a time, so that the sampler proposes each with the results "
            f"so far (the others would be drawn at once, as by random search)")
    return dataclasses.replace(plan, space=space), note


def prepare_data(space: Space, *, progress: Callable[[int, int], None] | None = None) -> MultiheadDataset | None:
    """Load the data set once in the driver: a missing or broken data set is invalid input found
    before any trial starts, and a data set generated on first use is generated once, not by
    several trials at the same time (reporting ``progress(done, total)`` while it is).

    Returns the data set the trials get through Ray's object store, or None when each trial loads
    it itself (``search.data_loading: per_node``; the space made ``data.path`` absolute)."""
    from trainables.data import DataError, load_dataset

    try:
        data = load_dataset(space.data, progress=progress)
    except DataError as exc:
        raise SearchInputError(str(exc)) from None
    return None if space.search.data_loading == "per_node" else data


def check_resources(space: Space, *, joined: bool) -> str | None:
    """A trial must fit on one node of the cluster, alive or one its autoscaler may start (see
    ``search.cluster.check_trial_fits``; a local instance, not ``joined``, never grows); returns a
    note when only the autoscaler can give it one."""
    import ray

    from search.cluster import check_trial_fits, read_node_types, wait_adds_nodes

    def autoscales() -> bool | None:
        import json

        # Where Ray's v1 autoscaler keeps its status (the dashboard's /api/cluster_status reads it too).
        from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental.internal_kv import _internal_kv_get

        try:
            if is_autoscaler_v2(fetch_from_server=True):  # KubeRay's: it keeps no such status
                return None
        except Exception:  # noqa: BLE001 - under Ray Client (ray://) Ray has no GCS client to ask with
            return None
        return wait_adds_nodes(lambda: json.loads(_internal_kv_get(DEBUG_AUTOSCALING_STATUS) or "null"))

    alive = [(float(n["Resources"].get("CPU", 0.0)), float(n["Resources"].get("GPU", 0.0)))
             for n in ray.nodes() if n.get("Alive")]  # fmt: skip
    return check_trial_fits(alive=alive, cpu=space.resources.cpu, gpu=space.resources.gpu, where="the Ray cluster",
                            node_types=read_node_types if joined else lambda: None,
                            autoscales=autoscales if joined else lambda: False, source=str(space.path))
