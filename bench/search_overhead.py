"""Search overhead and scaling: ``python -m search run`` vs the same trials in a plain loop of ``train()``,
and vs a default Ray Tune set-up, at concurrency 1 and 2 on this machine.

Trials are fixed: a space with one ``grid`` dimension (``train.lr``, which does not change a trial's
cost), ``scheduler: none`` and patience above the epoch budget, so every trial trains its full
budget and the loop can run exactly the configs the search runs (checked against the trials'
``params.json``). Two trial sizes:

- short: scikit-learn digits, MLP (32 hidden), 3 epochs, well under 1 s a trial: the driver's
  per-trial cost shows at full strength;
- long: VIMH (data/vimh-default, limit 3000), SimpleCNN, 5 epochs, 13 to 20 s a trial on an
  idle core.

Trials per setting: short 10 (tune_default: 4 at c=1, 5 at c=2, as each costs a new worker
process), long 4 at c=1 and 5 at c=2 (N - c >= 3 intervals). The long settings run in
``LONG_ROUNDS`` rounds (each: c=1 loop, Ray tasks and search, then c=2 the same; every other
round in reverse order, so that no runner always follows another), since on this
machine one run's per-trial median moved by up to 10 % between runs of the same code; every long
figure is the median over rounds of that round's ratio. About 20 minutes on 2 idle cores.

Runners, each one subprocess whose wall time is measured from start to exit:

- ``loop``: a plain loop calling ``train()`` (concurrency 2: a 2-process pool), with
  ``OMP_NUM_THREADS=1`` as Ray gives its 1-CPU workers;
- ``search``: ``python -m search run SPACE`` (Ray Tune + Optuna + MLflow SQLite store, checkpoint
  per epoch, actors reused; the MLflow store exists beforehand, as it does after the first search);
- ``ray_tasks`` (long trials only): the same trials as Ray tasks of 1 CPU calling ``train()``,
  ``c`` at a time, on the local Ray instance ``search run`` starts (``search._ray.connect``): what
  Ray alone costs, the floor of any search whose trials run on Ray;
- ``tune_default`` (short trials only): ``Tuner`` with default settings, ``reuse_actors=False``
  (a new worker process per trial), ``train()`` reporting each epoch, no checkpoints, no MLflow;
  dashboard off and Ray bound to loopback, like the search.

Per-trial figures come from the times trials complete (``d_k``, sorted): at concurrency c, a slot
finishes a trial every ``d_k - d_(k-c)`` seconds in steady state; the median of those intervals
(N - c of them) is compared with the loop's. Added seconds per trial = median(runner) -
median(loop): the extra time a trial occupies its slot. The fixed start-up and shutdown (Ray,
MLflow, the first worker) are recorded apart and enter only the total-wall ratio. Trials per hour =
3600 * c / median interval; its c=2 vs c=1 figure compares the two settings of the same round. The start-up figure (seconds the search adds before its first trial
ends) is the median over 3 pairs of runs: short c=1, then the loop and the search on 2 short
trials twice more.

    .venv/bin/python bench/search_overhead.py   -> table on stdout, bench/results/search_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from collections.abc import Callable
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402

PYTHON = sys.executable
SCRIPT = Path(__file__).resolve()
NUM_CPUS = 2  # the Ray instance of every runner: the whole machine
SHORT_ADDED_TARGET_S = 1.0
LONG_PER_TRIAL_TARGET = 1.05
LONG_WALL_TARGET = 1.10
SCALING_TARGET = 1.9  # trials per hour, concurrency 2 vs 1, on 2 cores
STARTUP_TARGET_S = 5.0  # seconds the search adds before its first trial ends
STARTUP_PAIRS = 3  # (loop, search) pairs whose median gives the start-up figure (see the docstring)
LONG_ROUNDS = 4  # even: half of them run their runners in reverse order

SPACE = """\
name: {name}
data: {data}
model: {model}
train: {{epochs: {epochs}, batch_size: 64, lr: {{grid: {lrs}}}, grad_clip: 1.0, patience: {patience}, seed: 0}}
heads:
{heads}
energy_weight: 0.0
objective: {objective}
search: {{num_samples: {trials}, sampler: grid, scheduler: none, max_concurrent: {concurrency}, seed: 0}}
resources: {{cpu: 1, gpu: 0}}
"""

KINDS: dict[str, dict[str, Any]] = {
    "short": {
        "data": "{kind: digits, val_fraction: 0.15, limit: null, labels: measured}",
        "model": "{kind: mlp, hidden: 32, dropout: 0.0}",
        "epochs": 3,
        "heads": "  digit: {loss: ce}\n  thickness: {loss: ordinal}\n  smoothness: {loss: ce}",
        "objective": "{metric: val/acc_mean, mode: max}",
        "trials": {1: 10, 2: 10},
        # a new worker per trial costs seconds: fewer trials (still >= 3 intervals) keep the run short
        "tune_default_trials": {1: 4, 2: 5},
    },
    "long": {
        "data": f"{{kind: vimh, path: {ROOT / 'data' / 'vimh-default'}, val_fraction: 0.1, limit: 3000}}",
        "model": "{kind: simple_cnn, hidden: 64, dropout: 0.1}",
        "epochs": 5,
        "heads": "  note_number: {loss: ordinal}\n  note_velocity: {loss: ce}\n  filter_cutoff: {loss: ordinal}",
        "objective": "{metric: val/mae_norm_mean, mode: min}",
        "trials": {1: 4, 2: 5},  # N - c >= 3 intervals
        "tune_default_trials": None,
    },
}

# The loop's processes get what Ray gives a 1-CPU trial worker: one OpenMP thread. Without it, two
# loop processes on 2 cores ran a long trial ~25 % slower in a trial run of this benchmark.
LOOP_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
_DONE = re.compile(r"^\[([0-9a-f]+)\] done after")


# ---------------------------------------------------------------- children (run in subprocesses)

def _train_one(config: dict[str, Any]) -> float:
    from trainables.train import train

    train(config, report=lambda metrics: None)
    return time.time()


def _loop_child(configs: list[dict[str, Any]], concurrency: int) -> list[float]:
    """Completion times (time.time()) of the trials, run back to back (concurrency 2: two processes)."""
    if concurrency == 1:
        return [_train_one(config) for config in configs]
    with ProcessPoolExecutor(max_workers=concurrency, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_train_one, config) for config in configs]
        return [time.time() for _ in as_completed(futures)]


def ray_task_pool(fn: Callable[[dict[str, Any]], Any], configs: list[dict[str, Any]], concurrency: int) -> list[Any]:
    """``fn(config)`` of every config as a Ray task of 1 CPU, ``concurrency`` at a time; the results
    in the order the tasks ended."""
    import ray

    remote = ray.remote(num_cpus=1)(fn)
    pending = list(configs)
    running = [remote.remote(pending.pop(0)) for _ in range(min(concurrency, len(pending)))]
    done = []
    while running:
        ready, running = ray.wait(running, num_returns=1)
        done.append(ray.get(ready[0]))
        if pending:
            running.append(remote.remote(pending.pop(0)))
    return done


def _ray_tasks_child(configs: list[dict[str, Any]], concurrency: int) -> list[float]:
    from search import _ray

    handle = _ray.connect(num_cpus=NUM_CPUS)
    try:
        return ray_task_pool(_train_one, configs, concurrency)
    finally:
        handle.close()


def _tune_child(configs: list[dict[str, Any]], concurrency: int, workdir: str) -> list[float]:
    """The same trials through a default Ray Tune set-up, one new worker process per trial."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback, as the search does
    ray.init(num_cpus=NUM_CPUS, include_dashboard=False)
    done = Path(workdir) / "done"
    done.mkdir()

    def trainable(params: dict[str, Any]) -> None:
        from trainables.train import train

        index = params["index"]
        train(configs[index], report=lambda metrics: tune.report(dict(metrics)))
        (done / str(index)).write_text(repr(time.time()))

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"index": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=False),
        run_config=tune.RunConfig(storage_path=str(Path(workdir) / "tune"), name="tune-default", verbose=0),
    )
    results = tuner.fit()
    ray.shutdown()
    ended = [float(path.read_text()) for path in done.iterdir()]
    if results.errors or len(ended) != len(configs):  # fewer trials would shrink its figures silently
        raise RuntimeError(f"every Tune trial must end, but got {len(ended)} of {len(configs)}: {results.errors}")
    return ended


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("loop", "ray_tasks", "tune"), required=True)
    parser.add_argument("--configs", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    configs = json.loads(Path(args.configs).read_text())
    if args.child == "loop":
        times = _loop_child(configs, args.concurrency)
    elif args.child == "ray_tasks":
        times = _ray_tasks_child(configs, args.concurrency)
    else:
        times = _tune_child(configs, args.concurrency, str(Path(args.out).parent))
    Path(args.out).write_text(json.dumps(times))
    return 0


# ---------------------------------------------------------------- parent

def space_file(directory: Path, kind: str, concurrency: int, *,
               trials: int | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The space of (kind, concurrency) and the complete trial configs its grid runs (``trials``:
    how many; default the setting's)."""
    from search.space import load_space

    spec = KINDS[kind]
    trials = trials or spec["trials"][concurrency]
    lrs = [round(1e-3 * (1 + i), 6) for i in range(trials)]
    path = directory / f"{kind}-c{concurrency}.yaml"
    path.write_text(SPACE.format(name=f"overhead-{kind}-c{concurrency}", data=spec["data"], model=spec["model"],
                                 epochs=spec["epochs"], lrs=lrs, patience=spec["epochs"] + 1, heads=spec["heads"],
                                 objective=spec["objective"], trials=trials, concurrency=concurrency))
    space = load_space(path)
    # the driver gives every trial train.threads = its CPU share (1)
    base = {**space.sample(seed=0), "train.threads": 1}
    return path, [{**base, "train.lr": lr} for lr in lrs]


def _run(command: list[str], *, log: Path, on_line: Any = None, env: dict[str, str] | None = None) -> float:
    """Run ``command`` to completion; its wall seconds. Output goes to ``log``."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env)
        for line in process.stdout:
            if on_line is not None:
                on_line(line)
            out.write(line)
        code = process.wait()
    wall = time.perf_counter() - start
    if code != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... must exit 0, but got {code}:\n{tail}")
    return wall


def _intervals(done: list[float], concurrency: int) -> list[float]:
    done = sorted(done)
    return [done[k] - done[k - concurrency] for k in range(concurrency, len(done))]


def _summary(started: float, wall: float, done: list[float], concurrency: int) -> dict[str, Any]:
    done = sorted(done)
    intervals = _intervals(done, concurrency)
    return {"wall_s": wall, "trials": len(done), "first_trial_done_s": done[0] - started,
            "exit_after_last_trial_s": started + wall - done[-1], "intervals_s": intervals,
            "median_interval_s": statistics.median(intervals),
            "trials_per_hour": 3600.0 * concurrency / statistics.median(intervals)}


def _loop(configs: list[dict[str, Any]], concurrency: int, work: Path, child: str) -> dict[str, Any]:
    configs_file = work / f"{child}-configs.json"
    configs_file.write_text(json.dumps(configs))
    out = work / f"{child}-done.json"
    started = time.time()
    wall = _run([PYTHON, str(SCRIPT), "--child", child, "--configs", str(configs_file),
                 "--concurrency", str(concurrency), "--out", str(out)], log=work / f"{child}.log",
                env=LOOP_ENV if child == "loop" else None)
    return _summary(started, wall, json.loads(out.read_text()), concurrency)


def _search(space_file: Path, configs: list[dict[str, Any]], concurrency: int, work: Path, tracking_uri: str, *,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    done: list[float] = []

    def on_line(line: str) -> None:
        if _DONE.match(line):
            done.append(time.time())

    storage = work / "runs"
    started = time.time()
    wall = _run([PYTHON, "-m", "search", "run", str(space_file), "--storage", str(storage),
                 "--tracking-uri", tracking_uri, "--num-cpus", str(NUM_CPUS)], log=work / "search.log", on_line=on_line,
                env=env)
    ran = [json.loads(p.read_text()) for p in storage.glob("*/trial_*/params.json")]
    key = lambda c: c["train.lr"]  # noqa: E731
    if sorted(ran, key=key) != sorted(configs, key=key):
        raise RuntimeError("the search must run exactly the loop's trial configs, but its params.json differ")
    if len(done) != len(configs):
        raise RuntimeError(f"the search must print one 'done' line per trial ({len(configs)}), but got {len(done)}")
    return _summary(started, wall, done, concurrency)


def _setting(kind: str, concurrency: int, tmp: Path, tracking_uri: str, *, label: str,
             reverse: bool = False) -> dict[str, Any]:
    """Each runner of the setting once, in their listed order, or the reverse (``reverse``)."""
    work = tmp / label
    work.mkdir()
    space_path, configs = space_file(work, kind, concurrency)
    runners = {"loop": lambda: _loop(configs, concurrency, work, "loop")}
    if kind == "long":
        runners["ray_tasks"] = lambda: _loop(configs, concurrency, work, "ray_tasks")
    runners["search"] = lambda: _search(space_path, configs, concurrency, work, tracking_uri)
    tune_trials = KINDS[kind]["tune_default_trials"]
    if tune_trials is not None:
        runners["tune_default"] = lambda: _loop(configs[:tune_trials[concurrency]], concurrency, work, "tune")
    result: dict[str, Any] = {"concurrency": concurrency, "loadavg_start": list(os.getloadavg())}
    for name, runner in (reversed(runners.items()) if reverse else runners.items()):
        print(f"  {label}: {name} ...", flush=True)
        result[name] = runner()
    result["loadavg_end"] = list(os.getloadavg())
    loop = result["loop"]
    for name in runners:
        if name != "loop":
            r = result[name]
            r["added_s_per_trial"] = r["median_interval_s"] - loop["median_interval_s"]
            r["per_trial_ratio"] = r["median_interval_s"] / loop["median_interval_s"]
            r["total_wall_ratio"] = r["wall_s"] / loop["wall_s"]
    return result


def _startup_pair(work: Path, tracking_uri: str) -> dict[str, Any]:
    """The loop, then the search, on 2 short trials at c=1: only their first trial times are used."""
    work.mkdir()
    space_path, configs = space_file(work, "short", 1, trials=2)
    print("  start-up: loop, search ...", flush=True)
    return {"loop": _loop(configs, 1, work, "loop"), "search": _search(space_path, configs, 1, work, tracking_uri)}


def _startup_added(setting: dict[str, Any]) -> float:
    return setting["search"]["first_trial_done_s"] - setting["loop"]["first_trial_done_s"]


def run() -> dict[str, Any]:
    from mlflow import MlflowClient

    result: dict[str, Any] = {"machine": machine(ray_num_cpus=NUM_CPUS, trial_threads=1), "raw": {}, "ratios": {}}
    with tempfile.TemporaryDirectory(prefix="losstune-bench-") as name:
        tmp = Path(name)
        tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
        MlflowClient(tracking_uri).search_experiments()  # creates the store, as an earlier search would have
        for concurrency in (1, 2):
            label = f"short_c{concurrency}"
            result["raw"][label] = _setting("short", concurrency, tmp, tracking_uri, label=label)
        for round_ in range(1, LONG_ROUNDS + 1):
            for concurrency in (1, 2):
                label = f"long_c{concurrency}_round{round_}"
                # every other round in reverse: the loop ran first in every round before
                result["raw"][label] = _setting("long", concurrency, tmp, tracking_uri, label=label,
                                                reverse=round_ % 2 == 0)
        result["raw"]["startup_added_s"] = [_startup_added(result["raw"]["short_c1"])] + [
            _startup_added(_startup_pair(tmp / f"startup-{i}", tracking_uri)) for i in range(STARTUP_PAIRS - 1)]
    raw, ratios = result["raw"], result["ratios"]
    rounds = [{c: raw[f"long_c{c}_round{r}"] for c in (1, 2)} for r in range(1, LONG_ROUNDS + 1)]
    for c in (1, 2):
        short = raw[f"short_c{c}"]
        ratios[f"short_c{c}_search_added_s_per_trial"] = figure(
            short["search"]["added_s_per_trial"], SHORT_ADDED_TARGET_S, "lower")
        ratios[f"short_c{c}_tune_default_added_s_per_trial"] = figure(
            short["tune_default"]["added_s_per_trial"], SHORT_ADDED_TARGET_S, "lower")
        ratios[f"long_c{c}_search_per_trial_time_ratio"] = figure(
            statistics.median(long[c]["search"]["per_trial_ratio"] for long in rounds), LONG_PER_TRIAL_TARGET, "lower")
        ratios[f"long_c{c}_search_total_wall_ratio"] = figure(
            statistics.median(long[c]["search"]["total_wall_ratio"] for long in rounds), LONG_WALL_TARGET, "lower")
        # the same target for Ray alone: how much of it any search on Ray leaves to Tune and to us
        ratios[f"long_c{c}_ray_tasks_total_wall_ratio"] = figure(
            statistics.median(long[c]["ray_tasks"]["total_wall_ratio"] for long in rounds), LONG_WALL_TARGET, "lower")
    # what a user waits for before a search's first result, beyond what the loop needs (both start
    # Python and load the data set; the search also starts Ray, the MLflow store and a worker)
    ratios["search_startup_added_s"] = figure(
        statistics.median(raw["startup_added_s"]), STARTUP_TARGET_S, "lower")
    for runner in ("search", "loop"):
        ratios[f"long_trials_per_hour_c2_vs_c1_{runner}"] = figure(
            statistics.median(long[2][runner]["trials_per_hour"] / long[1][runner]["trials_per_hour"]
                              for long in rounds),
            SCALING_TARGET, "higher")
    return result


def main() -> int:
    result = run()
    print(f"{'setting':<17}{'runner':<14}{'trials':>7}{'wall s':>9}{'median s/trial':>16}{'added s':>9}"
          f"{'first done s':>14}{'exit s':>8}{'trials/h':>10}")
    for setting, raw in result["raw"].items():
        for runner in ("loop", "ray_tasks", "search", "tune_default"):
            if runner in raw:
                r = raw[runner]
                print(f"{setting:<17}{runner:<14}{r['trials']:>7}{r['wall_s']:>9.1f}{r['median_interval_s']:>16.2f}"
                      f"{r.get('added_s_per_trial', 0.0):>9.2f}{r['first_trial_done_s']:>14.1f}"
                      f"{r['exit_after_last_trial_s']:>8.1f}{r['trials_per_hour']:>10.0f}")
    print_ratios(result)
    write(result, "search_overhead")
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        raise SystemExit(_child_main(sys.argv[1:]))
    raise SystemExit(main())
