"""Where the per-trial overhead of a search at concurrency 2 on 2 cores comes from: the long trials
of ``search_overhead.py`` (VIMH, SimpleCNN, 5 epochs, 13 to 16 s a trial), 8 of them, two at a time,
run four ways, each one subprocess:

- ``loop``: a 2-process pool calling ``train()`` (``OMP_NUM_THREADS=1``, as search_overhead's loop);
- ``ray_tasks``: one Ray task (1 CPU) per trial calling ``train()``, on the local Ray instance
  ``search run`` starts (``search._ray.connect``): what Ray's processes alone cost;
- ``ray_actor_handoff``: Ray Tune's way of running a trial, without Tune: an actor runs ``train()``
  in a thread that hands each epoch's result to the driver and waits until the driver asks for the
  next one; the driver polls every 0.1 s, as Tune's controller does;
- ``search``: ``python -m search run`` (search_overhead's ``search`` runner).

Each runner runs ROUNDS times, the runners interleaved within a round. Figures: the median over the
rounds' intervals between trial completions per slot (search_overhead's per-trial figure), and
the median epoch time (``epoch_time_s``: training, validation and, in the search, the checkpoint;
not the hand-off, which comes after it), each against the loop's. About 9 minutes on 2 idle cores.

    .venv/bin/python bench/c2_breakdown.py   -> table on stdout, bench/results/c2_breakdown.json
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
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
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402
from search_overhead import LONG_PER_TRIAL_TARGET, LOOP_ENV, NUM_CPUS, _intervals, _search, space_file  # noqa: E402

SCRIPT = Path(__file__).resolve()
CONCURRENCY = 2
TRIALS = 8  # 6 intervals per run
ROUNDS = 2
RUNNERS = ("loop", "ray_tasks", "ray_actor_handoff", "search")
POLL_S = 0.1  # Tune's controller waits at most this long for an event per step (tune_controller.py)
FETCH_S = 0.2  # a trial's actor waits at most this long for the next result (ray.air.constants)


# ---------------------------------------------------------------- children (run in subprocesses)

def _train_timed(config: dict[str, Any]) -> tuple[float, list[float]]:
    """(time.time() when the trial ended, its epochs' epoch_time_s)."""
    from trainables.train import train

    epochs: list[float] = []
    train(config, report=lambda metrics: epochs.append(metrics["epoch_time_s"]))
    return time.time(), epochs


def _loop(configs: list[dict[str, Any]]) -> list[tuple[float, list[float]]]:
    with ProcessPoolExecutor(max_workers=CONCURRENCY, mp_context=get_context("spawn")) as pool:
        return [future.result() for future in as_completed([pool.submit(_train_timed, c) for c in configs])]


def _ray_tasks(configs: list[dict[str, Any]]) -> list[tuple[float, list[float]]]:
    import ray

    remote = ray.remote(num_cpus=1)(_train_timed)
    pending = list(configs)
    running = [remote.remote(pending.pop(0)) for _ in range(CONCURRENCY)]
    done = []
    while running:
        ready, running = ray.wait(running, num_returns=1)
        done.append(ray.get(ready[0]))
        if pending:
            running.append(remote.remote(pending.pop(0)))
    return done


class _HandoffRunner:
    """A trial as Tune's function API runs it: ``train()`` in a thread that, after each epoch,
    passes the result on and waits until the driver asks for the next epoch (``next``)."""

    def start(self, config: dict[str, Any]) -> None:
        from trainables.train import train

        self.results: queue.Queue = queue.Queue(1)
        self.go_on = threading.Semaphore(0)
        self.asked = False

        def report(metrics: dict[str, Any]) -> None:
            self.results.put(metrics["epoch_time_s"])
            self.go_on.acquire()

        def run() -> None:
            train(config, report=report)
            self.results.put(None)

        threading.Thread(target=run, daemon=True).start()

    def next(self) -> float | None:
        """The next epoch's time (None: the trial ended)."""
        if self.asked:
            self.go_on.release()
        self.asked = True
        while True:
            try:
                return self.results.get(timeout=FETCH_S)
            except queue.Empty:
                pass


def _ray_actor_handoff(configs: list[dict[str, Any]]) -> list[tuple[float, list[float]]]:
    import ray

    actors = [ray.remote(num_cpus=1)(_HandoffRunner).remote() for _ in range(CONCURRENCY)]
    pending = list(configs)
    epochs: dict[int, list[float]] = {}
    asked: dict[Any, int] = {}  # the pending next() call -> its actor
    done = []

    def start(index: int) -> None:
        ray.get(actors[index].start.remote(pending.pop(0)))
        epochs[index] = []
        asked[actors[index].next.remote()] = index

    for index in range(CONCURRENCY):
        start(index)
    while asked:
        ready, _ = ray.wait(list(asked), num_returns=1, timeout=POLL_S)
        if not ready:
            continue
        index = asked.pop(ready[0])
        epoch_time = ray.get(ready[0])
        if epoch_time is None:
            done.append((time.time(), epochs[index]))
            if pending:
                start(index)
        else:
            epochs[index].append(epoch_time)
            asked[actors[index].next.remote()] = index
    return done


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("loop", "ray_tasks", "ray_actor_handoff"), required=True)
    parser.add_argument("--configs", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    configs = json.loads(Path(args.configs).read_text())
    if args.child == "loop":
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

def _child(runner: str, configs: list[dict[str, Any]], work: Path) -> tuple[list[float], list[float]]:
    """(intervals between trial ends per slot, epoch times) of one run of a child runner."""
    configs_file, out = work / "configs.json", work / f"{runner}.json"
    configs_file.write_text(json.dumps(configs))
    with open(work / f"{runner}.log", "w") as log:
        subprocess.run([sys.executable, str(SCRIPT), "--child", runner, "--configs", str(configs_file),
                        "--out", str(out)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=True,
                       env=LOOP_ENV if runner == "loop" else None)
    done = json.loads(out.read_text())
    return _intervals([end for end, _ in done], CONCURRENCY), [e for _, epochs in done for e in epochs]


def _search_run(space: Path, configs: list[dict[str, Any]], work: Path) -> tuple[list[float], list[float]]:
    """(intervals between trial ends per slot, epoch times) of one ``search run``."""
    (work / "mlflow").mkdir()
    tracking_uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri).search_experiments()  # the store exists beforehand, as in search_overhead
    summary = _search(space, configs, CONCURRENCY, work, tracking_uri)
    epochs = [json.loads(line)["epoch_time_s"]
              for path in (work / "runs").glob("*/trial_*/result.json")
              for line in path.read_text().splitlines() if '"epoch_time_s"' in line]
    return summary["intervals_s"], epochs


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(ray_num_cpus=NUM_CPUS, trial_threads=1), "raw": {}, "ratios": {}}
    intervals: dict[str, list[float]] = {r: [] for r in RUNNERS}
    epochs: dict[str, list[float]] = {r: [] for r in RUNNERS}
    with tempfile.TemporaryDirectory(prefix="losstune-c2-") as name:
        tmp = Path(name)
        space, configs = space_file(tmp, "long", CONCURRENCY, trials=TRIALS)
        for round_ in range(ROUNDS):
            for runner in RUNNERS:
                work = tmp / f"{runner}-{round_}"
                work.mkdir()
                if runner == "search":
                    these, run_epochs = _search_run(space, configs, work)
                else:
                    these, run_epochs = _child(runner, configs, work)
                intervals[runner] += these
                epochs[runner] += run_epochs
                print(f"round {round_} {runner:<18} median interval {statistics.median(these):6.2f} s, "
                      f"epoch {statistics.median(run_epochs):5.3f} s", flush=True)
    loop_interval, loop_epoch = statistics.median(intervals["loop"]), statistics.median(epochs["loop"])
    for runner in RUNNERS:
        interval, epoch = statistics.median(intervals[runner]), statistics.median(epochs[runner])
        result["raw"][runner] = {"intervals_s": intervals[runner], "median_interval_s": interval,
                                 "median_epoch_s": epoch, "per_trial_vs_loop": interval / loop_interval,
                                 "epoch_vs_loop": epoch / loop_epoch}
    result["ratios"]["long_c2_per_trial_ratio_search_vs_loop"] = figure(
        result["raw"]["search"]["per_trial_vs_loop"], LONG_PER_TRIAL_TARGET, "lower")
    return result


def main() -> int:
    if "--child" in sys.argv:
        return _child_main(sys.argv[1:])
    result = run()
    print(f"{'runner':<20}{'per trial vs loop':>19}{'epoch vs loop':>15}")
    for runner, raw in result["raw"].items():
        print(f"{runner:<20}{raw['per_trial_vs_loop']:>18.3f}x{raw['epoch_vs_loop']:>14.3f}x")
    print_ratios(result)
    write(result, "c2_breakdown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
