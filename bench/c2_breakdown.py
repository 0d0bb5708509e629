"""Where the per-trial overhead of a search at concurrency 2 on 2 cores comes from: the long trials
of ``search_overhead.py`` (VIMH, SimpleCNN, 5 epochs, 13 to 16 s a trial), 8 of them, two at a time,
run six ways, each one subprocess:

- ``loop``: a 2-process pool calling ``train()`` (``OMP_NUM_THREADS=1``, as search_overhead's loop);
- ``ray_tasks``: one Ray task (1 CPU) per trial calling ``train()``, on the local Ray instance
  ``search run`` starts (``search._ray.connect``, whose processes get its malloc settings): what
  Ray's processes alone cost;
- ``ray_actor_handoff``: Ray Tune's way of running a trial, without Tune: an actor runs ``train()``
  in a thread that hands each epoch's result to the driver and waits until the driver asks for the
  next one; the driver waits at most 0.1 s per step, as Tune's controller does (a ready result
  returns at once);
- ``search``: ``python -m search run`` (search_overhead's ``search`` runner). Unlike the others,
  its trials get the data set from the driver through Ray's object store instead of loading it,
  and write a checkpoint each epoch;
- ``search_glibc_defaults``: the same with ``GLIBC_TUNABLES`` set empty, so that its Ray
  processes keep glibc's malloc defaults instead of ``search._ray.MALLOC_TUNABLES``;
- ``loop_malloc``: the loop with ``MALLOC_TUNABLES``: what those settings give a trial run in a
  process's main thread.

Each runner runs ROUNDS times, the runners interleaved within a round (in reverse order every other
round), so each round compares runners under the same machine load. Per round and runner: the median interval between trial
completions per slot (search_overhead's per-trial figure) and the median epoch time
(``epoch_time_s``: training, validation and, in the search, the checkpoint; not the hand-off, which
comes after it), each divided by the loop's of the same round. Figures: the median of the rounds'
ratios. About 27 minutes on 2 idle cores.

    .venv/bin/python bench/c2_breakdown.py   -> table on stdout, bench/results/c2_breakdown.json
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, figure, machine, print_ratios, write  # noqa: E402
from search._ray import MALLOC_TUNABLES  # noqa: E402
from search_overhead import (  # noqa: E402
    KINDS,
    LONG_PER_TRIAL_TARGET,
    LOOP_ENV,
    NUM_CPUS,
    _intervals,
    _run,
    _search,
    ray_task_pool,
    space_file,
)

SCRIPT = Path(__file__).resolve()
CONCURRENCY = 2
TRIALS = 8  # 6 intervals per run
ROUNDS = 4  # even: see round_order
RUNNERS = ("loop", "ray_tasks", "ray_actor_handoff", "search", "search_glibc_defaults", "loop_malloc")
POLL_S = 0.1  # Tune's controller waits at most this long for an event per step (tune_controller.py)


# ---------------------------------------------------------------- children (run in subprocesses)

def _train_timed(config: dict[str, Any]) -> tuple[float, list[float], float]:
    """(time.time() when the trial ended, its epochs' epoch_time_s, its train.lr: which trial)."""
    from trainables.train import train

    epochs: list[float] = []
    train(config, report=lambda metrics: epochs.append(metrics["epoch_time_s"]))
    return time.time(), epochs, config["train.lr"]


def _loop(configs: list[dict[str, Any]]) -> list[tuple[float, list[float], float]]:
    with ProcessPoolExecutor(max_workers=CONCURRENCY, mp_context=get_context("spawn")) as pool:
        return [future.result() for future in as_completed([pool.submit(_train_timed, c) for c in configs])]


def _ray_tasks(configs: list[dict[str, Any]]) -> list[tuple[float, list[float], float]]:
    return ray_task_pool(_train_timed, configs, CONCURRENCY)


class _HandoffRunner:
    """A trial as Tune's function API runs it (ray.train._internal.session): ``train()`` in a thread
    that, after each epoch, passes the result on and waits until the driver asks for the next
    epoch (``next``); the actor's own thread waits for each result in gets of at most Tune's
    timeout."""

    def __init__(self) -> None:
        self.results: queue.Queue = queue.Queue(1)
        self.go_on = threading.Semaphore(0)
        self.handed_over = False  # a result of this trial went out: release its thread before the next

    def start(self, config: dict[str, Any]) -> None:
        from trainables.train import train

        self.handed_over = False

        def report(metrics: dict[str, Any]) -> None:
            self.results.put(metrics["epoch_time_s"])
            self.go_on.acquire()

        def run() -> None:
            try:
                train(config, report=report)
            except BaseException as error:  # next() raises it: else the driver would wait forever
                self.results.put(error)
                return
            self.results.put(None)

        threading.Thread(target=run, daemon=True).start()

    def next(self) -> float | None:
        """The next epoch's time (None: the trial ended)."""
        from ray.air.constants import _RESULT_FETCH_TIMEOUT

        if self.handed_over:
            self.go_on.release()
        self.handed_over = True
        while True:
            try:
                result = self.results.get(timeout=_RESULT_FETCH_TIMEOUT)
            except queue.Empty:
                continue
            if isinstance(result, BaseException):
                raise result
            return result


def _ray_actor_handoff(configs: list[dict[str, Any]]) -> list[tuple[float, list[float], float]]:
    import ray

    actors = [ray.remote(num_cpus=1)(_HandoffRunner).remote() for _ in range(CONCURRENCY)]
    pending = list(configs)
    running: dict[int, tuple[float, list[float]]] = {}  # actor -> (its trial's train.lr, epoch times)
    waiting: dict[Any, int] = {}  # a next() call not answered yet -> its actor
    done = []

    def start(index: int) -> None:
        config = pending.pop(0)
        ray.get(actors[index].start.remote(config))
        running[index] = (config["train.lr"], [])
        waiting[actors[index].next.remote()] = index

    for index in range(CONCURRENCY):
        start(index)
    while waiting:
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_S)
        if not ready:
            continue
        index = waiting.pop(ready[0])
        epoch_time = ray.get(ready[0])
        lr, epochs = running[index]
        if epoch_time is None:
            done.append((time.time(), epochs, lr))
            if pending:
                start(index)
        else:
            epochs.append(epoch_time)
            waiting[actors[index].next.remote()] = index
    return done


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("loop", "loop_malloc", "ray_tasks", "ray_actor_handoff"), required=True)
    parser.add_argument("--configs", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    configs = json.loads(Path(args.configs).read_text())
    if args.child in ("loop", "loop_malloc"):
        done = _loop(configs)
    else:
        from search import _ray

        handle = _ray.connect(num_cpus=NUM_CPUS)
        try:
            done = (_ray_tasks if args.child == "ray_tasks" else _ray_actor_handoff)(configs)
        finally:
            handle.close()
    Path(args.out).write_text(json.dumps(done))
    return 0


# ---------------------------------------------------------------- parent

_CHILD_ENV = {"loop": LOOP_ENV, "loop_malloc": {**LOOP_ENV, "GLIBC_TUNABLES": MALLOC_TUNABLES}}


def _child(runner: str, configs: list[dict[str, Any]], work: Path) -> tuple[list[float], list[float]]:
    """(intervals between trial ends per slot, epoch times) of one run of a child runner."""
    configs_file, out = work / "configs.json", work / f"{runner}.json"
    configs_file.write_text(json.dumps(configs))
    _run([sys.executable, str(SCRIPT), "--child", runner, "--configs", str(configs_file), "--out", str(out)],
         log=work / f"{runner}.log", env=_CHILD_ENV.get(runner))
    done = json.loads(out.read_text())
    if sorted(lr for _, _, lr in done) != sorted(c["train.lr"] for c in configs):
        raise RuntimeError(f"{runner} must run each trial once, but ran {[lr for _, _, lr in done]}")
    return _intervals([end for end, _, _ in done], CONCURRENCY), [e for _, epochs, _ in done for e in epochs]


def _search_run(space: Path, configs: list[dict[str, Any]], work: Path, *,
                env: dict[str, str] | None = None) -> tuple[list[float], list[float]]:
    """(intervals between trial ends per slot, epoch times) of one ``search run``."""
    (work / "mlflow").mkdir()
    tracking_uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).search_experiments()  # the store exists beforehand, as in search_overhead
    summary = _search(space, configs, CONCURRENCY, work, tracking_uri, env=env)
    return summary["intervals_s"], search_epoch_times(work / "runs")


def search_epoch_times(storage: Path) -> list[float]:
    """The ``epoch_time_s`` of every epoch result in Tune's ``result.json`` files of the search
    run in ``storage`` (the final result, with the test metrics, has none)."""
    rows = (json.loads(line) for path in storage.glob("*/trial_*/result.json")
            for line in path.read_text().splitlines() if line.strip())
    return [row["epoch_time_s"] for row in rows if "epoch_time_s" in row]


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(ray_num_cpus=NUM_CPUS, trial_threads=1), "raw": {}, "ratios": {}}
    rounds: list[dict[str, dict[str, Any]]] = []
    epochs_per_run = TRIALS * KINDS["long"]["epochs"]
    with tempfile.TemporaryDirectory(prefix="losstune-c2-") as name:
        tmp = Path(name)
        space, configs = space_file(tmp, "long", CONCURRENCY, trials=TRIALS)
        for round_ in range(ROUNDS):
            measured: dict[str, dict[str, Any]] = {}
            for runner in round_order(round_):
                work = tmp / f"{runner}-{round_}"
                work.mkdir()
                if runner == "search":
                    intervals, epochs = _search_run(space, configs, work)
                elif runner == "search_glibc_defaults":
                    intervals, epochs = _search_run(space, configs, work, env={**os.environ, "GLIBC_TUNABLES": ""})
                else:
                    intervals, epochs = _child(runner, configs, work)
                if len(epochs) != epochs_per_run:
                    raise RuntimeError(f"{runner} must report {epochs_per_run} epochs, but got {len(epochs)}")
                measured[runner] = {"intervals_s": intervals, "epochs_s": epochs,
                                    "median_interval_s": statistics.median(intervals),
                                    "median_epoch_s": statistics.median(epochs)}
                print(f"round {round_} {runner:<18} median interval {measured[runner]['median_interval_s']:6.2f} s, "
                      f"epoch {measured[runner]['median_epoch_s']:5.3f} s", flush=True)
            loop = measured["loop"]
            for runner in RUNNERS:
                measured[runner]["per_trial_vs_loop"] = measured[runner]["median_interval_s"] / loop["median_interval_s"]
                measured[runner]["epoch_vs_loop"] = measured[runner]["median_epoch_s"] / loop["median_epoch_s"]
            rounds.append(measured)
    result["raw"]["rounds"] = rounds
    return figures(result)


def round_order(round_: int) -> tuple[str, ...]:
    """The runners in the order round ``round_`` runs them: reversed every other round, so that
    over an even number of rounds each runner runs as often before as after each other one (in a
    fixed order the first runner of every round ran right after the previous round's last)."""
    return RUNNERS if round_ % 2 == 0 else RUNNERS[::-1]


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with the medians over its rounds per runner and the figures: ``search run`` per
    trial against the loop, and against the loop with the trial workers' malloc settings (which
    speed up a trial by themselves: the like-for-like baseline of the driver's own cost)."""
    rounds = result["raw"]["rounds"]
    for runner in RUNNERS:
        result["raw"][runner] = {key: statistics.median(r[runner][key] for r in rounds)
                                 for key in ("per_trial_vs_loop", "epoch_vs_loop")}
    result["ratios"]["long_c2_per_trial_ratio_search_vs_loop"] = figure(
        result["raw"]["search"]["per_trial_vs_loop"], LONG_PER_TRIAL_TARGET, "lower")
    result["ratios"]["long_c2_per_trial_ratio_search_vs_loop_same_malloc"] = figure(
        statistics.median(r["search"]["median_interval_s"] / r["loop_malloc"]["median_interval_s"] for r in rounds),
        LONG_PER_TRIAL_TARGET, "lower")
    return result


def main() -> int:
    if "--child" in sys.argv:
        return _child_main(sys.argv[1:])
    if "--figures-only" in sys.argv:  # from the rounds of the results file, without running
        result = figures(json.loads((RESULTS_DIR / "c2_breakdown.json").read_text()))
    else:
        result = run()
    print(f"{'runner':<20}{'per trial vs loop':>19}{'epoch vs loop':>15}")
    for runner in RUNNERS:
        raw = result["raw"][runner]
        print(f"{runner:<20}{raw['per_trial_vs_loop']:>18.3f}x{raw['epoch_vs_loop']:>14.3f}x")
    print_ratios(result)
    write(result, "c2_breakdown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
