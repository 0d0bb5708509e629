"""Plan a search before Ray starts: a new search or the resume of an unfinished one, where it is
tracked, and whether its data and resources are there.

A search lives in ``<storage>/<name>``: Tune's experiment state, the trials' checkpoints, and
``losstune.json`` (the search id, the MLflow store and experiment, and whether it finished).
The same command after a crash finds that directory unfinished and resumes it; a resume keeps
the MLflow store and experiment the search started with, so its runs continue.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Tuner

from search.driver._state import usable_state
from search.driver._trainable import TrainFn
from search.space import SEARCH_NAME_RULE, Space, is_search_name
from search.tracking import make_search_id, resolve_tracking_uri

__all__ = [
    "BEST_CONFIG",
    "META_FILE",
    "SUMMARY_FILE",
    "SearchInputError",
    "SearchOptions",
    "SearchPlan",
    "check_resources",
    "plan_search",
    "prepare_data",
    "read_meta",
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



def space_digest(space: Space) -> str:
    return hashlib.sha256(space.text.encode()).hexdigest()


def read_meta(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
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
    meta = read_meta(run_dir)
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
        if resume and meta.get("space_sha256") != space_digest(space):
            notes.append("the space file changed since the search started; the search resumes with its original space")
    else:
        tracking_uri = wanted
        experiment = space.mlflow.experiment or space.name
        search_id = make_search_id(name)
    return SearchPlan(space, options, name, run_dir, resume, search_id, tracking_uri, experiment, tuple(notes))


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


