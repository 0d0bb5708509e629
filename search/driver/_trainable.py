"""The Ray Tune function trainable: ``trainables.train`` with Tune's report and checkpoints.

``train`` writes ``checkpoint.pt`` into a working directory each epoch before it reports; every
report hands that directory to Tune as the trial's checkpoint, and a trial restarted by Tune
(a retry after a crash, a resumed search) first copies its last checkpoint back, so ``train``
continues from it. The final metrics ``train`` returns (test/...) become one last result marked
with ``FINAL_KEY``: the driver tells a trial that ended by itself from one the scheduler stopped
by that mark.

Tune retries every error of a trial alike (``FailureConfig.max_failures``). A failure that a retry
would only repeat (``trainables.train.repeats_on_retry``: a diverged loss, a refused config) is
therefore not raised: the trial ends with a final result marked ``FAILED_KEY`` that carries the
error as data, and the driver's searcher, schedulers and callbacks treat it as a failed trial.
What Tune still retries are the failures that may pass: a lost worker, an out-of-memory kill.
The driver writes the traceback to ``error.txt`` in the trial's directory, where Tune keeps its own.
"""

from __future__ import annotations

import ctypes
import math
import os
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from search.driver._scratch import trial_scratch

__all__ = [
    "ERROR_KEY",
    "FAILED_KEY",
    "FINAL_KEY",
    "NODE_GPUS_KEY",
    "NODE_ID_KEY",
    "NODE_IP_KEY",
    "TRACEBACK_KEY",
    "WARNINGS_KEY",
    "TrainFn",
    "make_trainable",
    "restore_file",
    "return_freed_memory",
]

FINAL_KEY = "final"
FAILED_KEY = "failed"  # in a final result: the trial failed in a way a retry would repeat
ERROR_KEY = "error"  # "Type: message" of that failure
TRACEBACK_KEY = "traceback"
# Python warnings a trial raised since its previous result (the workers' own output is not echoed
# on the driver's terminal at the default verbosity, so warnings travel as data).
WARNINGS_KEY = "warnings"
NODE_ID_KEY = "node/id"  # in the first result of each attempt of a trial: the Ray node it runs on
NODE_IP_KEY = "node/ip"
NODE_GPUS_KEY = "node/gpu_ids"  # the GPUs Ray gave the trial (several trials may share one)
ERROR_FILE = "error.txt"  # a failed trial's traceback, in its directory (Tune's name for its own errors)
TrainFn = Callable[..., Mapping[str, float]]


def return_freed_memory() -> None:
    """Give the memory a trial freed back to the system once its training returned. Trial workers
    keep freed memory for their next step (``search._ray.MALLOC_TUNABLES``); without this, an
    actor Tune reuses would hold that trial's high-water mark while it waits, or trains a
    smaller trial. The next trial faults its pages in once (7 ms to return 175 MiB after a VIMH
    CNN trial here). A no-op where the C library has no ``malloc_trim`` (not glibc)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # macOS and musl lack it; Windows has no CDLL(None)
        return
    trim(0)


def restore_file(checkpoint: Any, *, name: str, into: str) -> None:
    """Copy the file ``name`` (if there) of a Tune ``checkpoint`` into the directory ``into``,
    straight from the checkpoint's file system. Ray's ``Checkpoint.as_directory`` would download a
    checkpoint on remote storage (``s3://``) into a temporary directory of its own first, which a
    worker killed meanwhile leaves behind for good; ``into``, a trial's scratch directory, is
    removed by the next trial on the host however this one ends (``trial_scratch``)."""
    import pyarrow.fs

    source = f"{checkpoint.path.rstrip('/')}/{name}"
    if checkpoint.filesystem.get_file_info(source).type == pyarrow.fs.FileType.File:
        pyarrow.fs.copy_files(source, os.path.join(into, name), source_filesystem=checkpoint.filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())


def make_trainable(train_fn: TrainFn | None = None, *, metrics: Sequence[str] = ()) -> Callable[..., dict]:
    """A function trainable running ``train_fn`` (default ``trainables.train.train``) on the
    trial's typed config (``TrialConfig``), after loading the plugins in the trial's worker.

    ``train_fn(config, report=, checkpoint_dir=, data=, gpu_fraction=)`` gets the data set the
    driver loaded (``data``, through Ray's object store with ``tune.with_parameters``; None when
    each trial loads it) and the share of a GPU Ray gave the trial (0.0: none; the node's GPUs,
    which Ray leaves visible, are other trials'). A trial never
    changes directory: the one the search started in may exist only on the submitting machine.
    ``metrics``: the objectives; a failed trial's final result holds them as NaN, since Tune
    requires every result to name the searcher's and the scheduler's metrics.
    """

    def losstune_trial(config: dict[str, Any], data: Any = None) -> dict[str, Any]:
        import ray
        from ray import tune

        from trainables.config import TrialConfig
        from trainables.plugins import load_plugins
        from trainables.train import CHECKPOINT_NAME, repeats_on_retry  # torch: in the trial's worker only

        load_plugins()  # this worker knows the options the driver's plugins added

        context = ray.get_runtime_context()
        gpu_fraction = context.get_assigned_resources().get("GPU", 0.0)  # 0: the node's GPUs are other trials'
        # Where the trial ran, in its first result (the driver tags the trial's run with it).
        placed = {
            NODE_ID_KEY: context.get_node_id(),
            NODE_IP_KEY: ray.util.get_node_ip_address(),
            NODE_GPUS_KEY: ",".join(str(i) for i in ray.get_gpu_ids()),
        }
        fn = train_fn
        if fn is None:
            from trainables.train import train as fn
        with trial_scratch() as work:
            checkpoint = tune.get_checkpoint()
            if checkpoint is not None:
                restore_file(checkpoint, name=CHECKPOINT_NAME, into=work)

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                told = 0

                def new_warnings() -> dict[str, list[str]]:
                    nonlocal told
                    fresh, told = caught[told:], len(caught)
                    return {WARNINGS_KEY: [f"{w.category.__name__}: {w.message}" for w in fresh]} if fresh else {}

                def report(metrics: Mapping[str, float]) -> None:
                    nonlocal placed
                    result = {**metrics, **placed, **new_warnings()}
                    placed = {}
                    tune.report(result, checkpoint=tune.Checkpoint.from_directory(work))

                try:
                    final = fn(TrialConfig.from_flat(config), report=report, checkpoint_dir=work, data=data,
                               gpu_fraction=gpu_fraction)
                except Exception as error:
                    if not repeats_on_retry(error):
                        raise
                    final = {
                        **{name: math.nan for name in metrics},
                        FAILED_KEY: 1,
                        ERROR_KEY: f"{type(error).__name__}: {error}",
                        TRACEBACK_KEY: traceback.format_exc(),
                    }
                # Not on a trial the scheduler stopped: Tune parks it in its report (its model
                # and data alive) and ends it with SystemExit when the actor gets its next trial.
                return_freed_memory()
                # An attempt restored after its last epoch reports no epoch: its final result says
                # where it ran, else the trial's run keeps the node of the attempt before.
                return {**final, **placed, **new_warnings(), FINAL_KEY: 1}

    return losstune_trial
