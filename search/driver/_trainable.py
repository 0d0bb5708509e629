"""The Ray Tune function trainable: ``trainables.train`` with Tune's report and checkpoints.

``train`` writes ``checkpoint.pt`` into a working directory each epoch before it reports; every
report hands that directory to Tune as the trial's checkpoint, and a trial restarted by Tune
(a retry after a crash, a resumed search) first copies its last checkpoint back, so ``train``
continues from it. The final metrics ``train`` returns (test/...) become one last result marked
with ``FINAL_KEY``: the driver tells a trial that ended by itself from one the scheduler stopped
by that mark.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from trainables.train import CHECKPOINT_NAME

__all__ = ["FINAL_KEY", "TrainFn", "make_trainable"]

FINAL_KEY = "final"
TrainFn = Callable[..., Mapping[str, float]]


def make_trainable(train_fn: TrainFn | None = None, *, workdir: str | None = None) -> Callable[[dict[str, Any]], dict]:
    """A function trainable running ``train_fn`` (default ``trainables.train.train``).

    ``workdir``: the directory trials run in (Tune switches each trial into its own result
    directory; relative data paths and downloads are meant relative to where the search started).
    """

    def losstune_trial(config: dict[str, Any]) -> dict[str, Any]:
        from ray import tune

        if workdir is not None and os.path.isdir(workdir):
            os.chdir(workdir)
        fn = train_fn
        if fn is None:
            from trainables.train import train as fn
        with tempfile.TemporaryDirectory(prefix="losstune-trial-") as work:
            checkpoint = tune.get_checkpoint()
            if checkpoint is not None:
                with checkpoint.as_directory() as restored:
                    source = os.path.join(restored, CHECKPOINT_NAME)
                    if os.path.exists(source):
                        shutil.copy2(source, os.path.join(work, CHECKPOINT_NAME))

            def report(metrics: Mapping[str, float]) -> None:
                tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(work))

            final = fn(config, report=report, checkpoint_dir=work)
        return {**final, FINAL_KEY: 1}

    return losstune_trial
