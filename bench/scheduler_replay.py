"""Scheduler replay: the epochs each early-stopping rule needs to reach the target on the same
configurations, replayed from their full learning curves.

``search_efficiency.py`` compares whole searches, where the sampler and the scheduler act together.
This script isolates the scheduler. For each task and sampler seed of ``search_efficiency.py`` it
draws the same TRIALS configurations as Optuna's ``RandomSampler(seed)`` (what ``sampler: random``
draws, and TPE during its random start-up), trains each one once for the full EPOCHS epochs
(``train()`` in this process) and keeps its curve of the objective. It then replays each rule on
those curves, one trial at a time in draw order, and counts epochs until a trial first reaches
the task's target:

- ``random``: every trial trained to the end (``search_efficiency.py``'s random baseline);
- ``ray_asha``: our driver's ``scheduler: asha``, i.e. the scheduler object
  ``search.driver._strategy.build_scheduler`` builds for the task's space (Ray's
  ``AsyncHyperBandScheduler``), fed each epoch's result as Tune feeds it. It stops a trial below
  its rung's cutoff and lets every other trial go on, so with one trial at a time the first trial
  always runs to the end;
- ``oracle``: not a rule but a bound. It knows the curves: it trains each configuration for one
  epoch (the least any rule spends to see a configuration) up to the reaching configuration that
  makes this cheapest, and that one until it reaches the target. No scheduler does better on
  these draws; only a sampler that draws better configurations can;
- ``asha_promotions_rf3`` and ``asha_promotions_rf2``: ASHA as Li et al. (2020, "A System for
  Massively Parallel Hyperparameter Tuning") define it, on the same rungs as Ray's ASHA with that
  reduction factor: our driver's ``scheduler: asha_promotions`` (its default, reduction factor 3).
  A trial pauses at each rung. The worker resumes a paused trial once it ranks in the top 1/rf of
  the trials that reached its rung, or ties with the last of them (the highest rung first); if
  none ranks there, the next configuration starts.

Check: the replays of ``ray_asha`` and ``asha_promotions_rf3`` must give the same epochs as our
driver itself run with ``sampler: random`` and that scheduler, on the first CHECKED_SEEDS seeds of
each task (``--replay --check`` measures only these again, on the stored curves).

Calibration: the same curves (TRIALS random configurations for each of the SEEDS) say how hard
each task's target is: the share of configurations that reach it, against the TARGET_SHARE it is
meant to be, and the target that share gives (``calibration`` in the results file).

Figures: per task, the median over seeds of the per-seed ratio of ``random``'s epochs to each
rule's epochs. The 3x target is the issue's target for a whole search against random search.
``--replay`` recomputes the figures from the curves in the results file, without training
(seconds), to try another rule on the same curves. About 15 minutes on 2 cores.

    .venv/bin/python bench/scheduler_replay.py            -> table, bench/results/scheduler_replay.json
    .venv/bin/python bench/scheduler_replay.py --replay   -> the same figures from the stored curves
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, figure, machine, print_ratios, write  # noqa: E402
from search_efficiency import (  # noqa: E402
    EPOCHS,
    EPOCHS_VS_RANDOM_TARGET,
    SEEDS,
    TARGET_SHARE,
    TASKS,
    TRIALS,
    Task,
    _config,
    _tpe_asha,
    space_yaml,
)

CHECKED_SEEDS = 3
RULES = ("random", "oracle", "ray_asha", "asha_promotions_rf3", "asha_promotions_rf2")
CHECKED_RULES = {"ray_asha": "asha", "asha_promotions_rf3": "asha_promotions"}  # rule: the driver's scheduler
Curves = Sequence[Sequence[float]]


def draw_curves(space: Any, task: Task, *, seed: int) -> list[dict[str, Any]]:
    """TRIALS configurations as ``RandomSampler(seed)`` draws them, each trained EPOCHS epochs:
    ``[{"params", "curve"}]`` in draw order (``curve``: the objective after each epoch)."""
    import optuna

    from search._optuna import quiet_optuna
    from trainables.train import train

    with quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(TRIALS):
        trial = study.ask()
        curve: list[float] = []
        train(_config(space, trial), report=lambda metrics: curve.append(metrics[task.metric]))
        # the value only orders nothing here: RandomSampler ignores it
        study.tell(trial, curve[-1])
        drawn.append({"params": trial.params, "curve": curve})
    return drawn


def no_stopping(curves: Curves, task: Task) -> int:
    """Epochs until a trial reaches the target, every trial trained to the end (or all epochs)."""
    epochs = 0
    for curve in curves:
        for value in curve:
            epochs += 1
            if task.reached(value):
                return epochs
    return epochs


def oracle(curves: Curves, task: Task) -> int:
    """The least epochs any scheduler spends to reach the target on ``curves``, if it must train a
    configuration one epoch to drop it: over the configurations that reach it, one epoch for each
    configuration drawn before, then that one to the epoch it reaches it. If none does, one per
    configuration, as the rules count every epoch they spent then."""
    costs = [index + next(epoch for epoch, value in enumerate(curve, 1) if task.reached(value))
             for index, curve in enumerate(curves) if any(task.reached(value) for value in curve)]
    return min(costs, default=len(curves))


def ray_asha(curves: Curves, task: Task, *, space: Any) -> int:
    """``no_stopping`` under the driver's scheduler for ``space``, fed results as Tune feeds them."""
    from ray.tune.schedulers import TrialScheduler

    from search.driver._strategy import build_scheduler

    scheduler = build_scheduler(space, epochs=EPOCHS)
    epochs = 0
    for index, curve in enumerate(curves):
        trial = SimpleNamespace(trial_id=f"trial_{index}")
        scheduler.on_trial_add(None, trial)
        for epoch, value in enumerate(curve, 1):
            epochs += 1
            if task.reached(value):
                return epochs
            result = {"epoch": epoch, task.metric: value}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                scheduler.on_trial_remove(None, trial)
                break
        else:
            scheduler.on_trial_complete(None, trial, result)
    return epochs


def rungs(space: Any) -> list[int]:
    """The driver's ASHA milestones for ``space`` (ascending), and EPOCHS as the last."""
    from search.driver._strategy import build_scheduler

    (bracket,) = build_scheduler(space, epochs=EPOCHS)._brackets
    return sorted({int(milestone) for milestone, _ in bracket._rungs if milestone < EPOCHS} | {EPOCHS})


def asha_promotions(curves: Curves, task: Task, *, milestones: Sequence[int], reduction_factor: float) -> int:
    """Epochs until a trial reaches the target under ASHA with promotions (Li et al. 2020), one
    worker: the best not yet promoted trial among the top of the highest rung that has one
    (the driver's ``rung_top``) trains on to the next milestone; otherwise the next configuration
    trains to the first."""
    from search.driver._promotions import rung_score, rung_top

    sign = -1.0 if task.mode == "min" else 1.0
    scores: list[dict[int, float]] = [{} for _ in milestones]  # rung -> {trial: score at the rung}
    promoted: list[set[int]] = [set() for _ in milestones]
    trained: dict[int, int] = {}
    epochs, started = 0, 0
    while True:
        job = None
        for rung in reversed(range(len(milestones) - 1)):
            top = [t for t in rung_top(scores[rung], reduction_factor=reduction_factor) if t not in promoted[rung]]
            if top:
                promoted[rung].add(top[0])
                job = (top[0], rung + 1)
                break
        if job is None:
            if started == len(curves):
                return epochs
            job, started = (started, 0), started + 1
        trial, rung = job
        for epoch in range(trained.get(trial, 0), milestones[rung]):
            epochs += 1
            if task.reached(curves[trial][epoch]):
                return epochs
        trained[trial] = milestones[rung]
        scores[rung][trial] = rung_score(curves[trial][milestones[rung] - 1], sign=sign)


def _space(task: str, seed: int, tmp: Path, *, sampler: str = "tpe", scheduler: str = "asha",
           reduction_factor: float = 3) -> Any:
    from search.space import load_space

    path = tmp / f"efficiency-{task}-{seed}-{sampler}-{scheduler}-rf{reduction_factor:g}.yaml"
    path.write_text(space_yaml(task, seed, sampler=sampler, scheduler=scheduler, reduction_factor=reduction_factor))
    return load_space(path)


def replay(task: str, curves: Curves, *, tmp: Path) -> dict[str, int]:
    """Every rule's epochs to the target on ``curves`` (one seed of ``task``)."""
    spec = TASKS[task]
    rules: dict[str, Callable[[], int]] = {
        "random": lambda: no_stopping(curves, spec),
        "oracle": lambda: oracle(curves, spec),
        "ray_asha": lambda: ray_asha(curves, spec, space=_space(task, 0, tmp)),
    }
    for rf in (3, 2):
        space = _space(task, 0, tmp, reduction_factor=rf)
        rules[f"asha_promotions_rf{rf}"] = lambda space=space, rf=rf: asha_promotions(
            curves, spec, milestones=rungs(space), reduction_factor=rf)
    return {rule: fn() for rule, fn in rules.items()}


def reachable(row: dict[str, Any], task: str) -> bool:
    """Whether any configuration of the seed's row reaches the target (else no rule can)."""
    return any(TASKS[task].reached(value) for drawn in row["configurations"] for value in drawn["curve"])


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Per task and rule: the median of random's epochs / the rule's epochs over the seeds where a
    configuration reaches the target. On a seed where none does, every rule gives up after the
    epochs it spent, and a rule that gave up sooner is no faster to the target: such seeds count
    in no ratio (``unreachable`` names them)."""
    ratios: dict[str, Any] = {}
    for task, seeds in raw.items():
        reaching = [row for row in seeds.values() if reachable(row, task)]
        for rule in RULES[1:]:
            values = [row["epochs"]["random"] / row["epochs"][rule] for row in reaching]
            ratios[f"{task}_epochs_to_target_random_vs_{rule}"] = figure(
                statistics.median(values), EPOCHS_VS_RANDOM_TARGET, "higher")
        checked = [row for row in seeds.values() if "driver_random_search" in row]
        for rule in CHECKED_RULES:
            ratios[f"{task}_driver_random_search_equals_replay_{rule}"] = figure(
                sum(row["driver_random_search"][rule] == row["epochs"][rule] for row in checked) / len(checked),
                1.0, "higher")
    return ratios


def calibration(seeds: dict[str, Any], task: str) -> dict[str, Any]:
    """How hard ``task``'s target is for random configurations trained EPOCHS epochs, over every
    seed's: the share that reaches it, the best value that TARGET_SHARE of them reach, and the target
    that makes (that value rounded to two decimals away from random's: at most TARGET_SHARE reach it)."""
    spec = TASKS[task]
    sign = -1.0 if spec.mode == "min" else 1.0
    bests = sorted((functools.reduce(spec.better, drawn["curve"]) for row in seeds.values()
                    for drawn in row["configurations"]), key=lambda value: -sign * value)  # fmt: skip
    reaching = sum(spec.reached(value) for value in bests)
    at_share = bests[math.ceil(TARGET_SHARE * len(bests)) - 1]
    rounded = (math.floor if spec.mode == "min" else math.ceil)(round(at_share * 100, 6)) / 100
    return {"target": spec.target, "configurations": len(bests), "reaching": reaching,
            "share_reaching": reaching / len(bests), "target_share": TARGET_SHARE,
            "value_at_target_share": at_share, "calibrated_target": rounded}


def check(task: str, seed: int, *, tmp: Path, tracking_uri: str) -> dict[str, int]:
    """Epochs to the target of our driver with ``sampler: random``, per checked rule."""
    epochs = {}
    for rule, scheduler in CHECKED_RULES.items():
        space = _space(task, seed, tmp, sampler="random", scheduler=scheduler)
        ours = _tpe_asha(space, TASKS[task], storage=tmp / "runs", tracking_uri=tracking_uri,
                         name=f"{space.name}-random-{scheduler}")
        epochs[rule] = ours["epochs"]
    return epochs


def run(tmp: Path, *, stored: dict[str, Any] | None = None, checks: bool = True) -> dict[str, Any]:
    """Every task's rows: curves drawn and trained (or ``stored``'s), the replays, and (``checks``)
    our driver's searches on the checked seeds."""
    from mlflow import MlflowClient

    from search import _ray

    raw: dict[str, Any] = {}
    handle = _ray.connect(num_cpus=2) if stored is None or checks else None
    try:
        tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
        MlflowClient(tracking_uri).search_experiments()
        for task in TASKS:
            raw[task] = {}
            for seed in SEEDS:
                row = dict(stored[task][f"seed_{seed}"]) if stored else {
                    "configurations": draw_curves(_space(task, seed, tmp), TASKS[task], seed=seed)}
                row["epochs"] = replay(task, [d["curve"] for d in row["configurations"]], tmp=tmp)
                if checks and seed < CHECKED_SEEDS:
                    row["driver_random_search"] = check(task, seed, tmp=tmp, tracking_uri=tracking_uri)
                raw[task][f"seed_{seed}"] = row
                print(f"  {task} seed {seed} {row['epochs']} driver (sampler: random): "
                      f"{row.get('driver_random_search', '-')}", flush=True)
    finally:
        if handle is not None:
            handle.close()
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--replay", action="store_true",
                        help="recompute the figures from the curves in the results file, without training")
    parser.add_argument("--check", action="store_true",
                        help="with --replay: run our driver's searches of the checked seeds again")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="losstune-bench-") as name:
        tmp = Path(name)
        if args.replay:
            result = json.loads((RESULTS_DIR / "scheduler_replay.json").read_text())
            stored = {t: c["target"] for t, c in result["settings"]["tasks"].items()}
            if not args.check and stored != {t: s.target for t, s in TASKS.items()}:
                parser.error(f"the stored driver checks are of the targets {stored}: replay new targets with --check")
            if args.check:
                result["machine"]["checks_measured_on"] = machine(trial_threads=1)
            result["raw"] = run(tmp, stored=result["raw"], checks=args.check)
            if args.check:
                result["machine"]["checks_measured_on"].setdefault("loadavg_end", list(os.getloadavg()))
        else:
            result = {"machine": machine(trial_threads=1),
                      "settings": {"seeds": list(SEEDS), "trials": TRIALS, "epochs": EPOCHS,
                                   "checked_seeds": CHECKED_SEEDS},
                      "raw": run(tmp)}
    # the targets the figures are of (a replay's may be new ones, on the same curves)
    result["settings"]["tasks"] = {t: {"metric": s.metric, "mode": s.mode, "target": s.target} for t, s in TASKS.items()}
    result["ratios"] = figures(result["raw"])
    result["unreachable"] = {task: [seed for seed, row in seeds.items() if not reachable(row, task)]
                             for task, seeds in result["raw"].items()}
    print(f"seeds where no configuration reaches the target (in no ratio): {result['unreachable']}")
    result["calibration"] = {task: calibration(seeds, task) for task, seeds in result["raw"].items()}
    for task, c in result["calibration"].items():
        print(f"{task}: target {c['target']} reached by {c['reaching']} of {c['configurations']} random configurations "
              f"({c['share_reaching']:.1%}); {c['target_share']:.0%} of them reach {c['value_at_target_share']:.4f}: "
              f"target {c['calibrated_target']:g} by the rule")
    for task, seeds in result["raw"].items():
        print(f"{task}: epochs to target per seed")
        for rule in RULES:
            values = [row["epochs"][rule] for row in seeds.values()]
            print(f"  {rule:<22} median {statistics.median(values):>5.1f}  {values}")
    print_ratios(result)
    write(result, "scheduler_replay")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
