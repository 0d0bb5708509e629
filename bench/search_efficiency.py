"""Search efficiency: epochs (and wall time) until a search first reaches a target objective.

Task: a small VIMH search (data/vimh-default, 1500 samples, 20 % validation), MLP (64 hidden), up to
9 epochs a trial, objective ``val/mae_norm_mean`` (min); searched: the loss of ``note_number``
(6 losses and their parameters), the loss and weight of ``note_velocity``, learning rate and
dropout (``space_yaml``). Patience is above the epoch budget, so only a scheduler or pruner stops
a trial. TARGET = 0.10 is about the top decile of random configurations (3 of 30 random trials
reached it in a calibration run). Every method gets TRIALS trials per seed, for SEEDS seeds (the
sampler seed; data split and training seed stay 0), with one trial at a time:

- ``tpe_asha``: our driver (``search.driver.run_search``, what ``python -m search run`` calls) with
  its TPE sampler and ASHA (grace 1 epoch, reduction factor 3, so rungs at 1, 3 and 9 epochs),
  in this process on one Ray instance shared by the seeds (the fixed start-up of ``search run``
  is measured in search_overhead.json, not here); it always runs its TRIALS trials, and epochs are
  counted in trial order from Tune's per-trial results;
- ``random``: Optuna's RandomSampler over the same space, every trial trained to 9 epochs;
- ``optuna_median``: plain Optuna, TPESampler(seed) and MedianPruner() with their defaults,
  ``trial.report`` each epoch.

The last two run ``train()`` in this process with an epoch counter and stop once the target is
reached. A method that does not reach the target counts every epoch it trained (censored; its
``reached`` is false). Optuna's TPE samples its first 10 trials with a RandomSampler of the same
seed, so ``optuna_median`` and ``random`` try the same first configurations. Figures: the median over seeds of the per-seed ratio of epochs (and
of wall seconds) of a baseline to ``tpe_asha``. Wall seconds of ``tpe_asha`` come from Tune's
result timestamps (1 s resolution). About 5 minutes on 2 quiet cores, up to 15 under load.

    .venv/bin/python bench/search_efficiency.py   -> table on stdout, bench/results/search_efficiency.json
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
TRIALS = 30
EPOCHS = 9
TARGET = 0.10
METRIC = "val/mae_norm_mean"
EPOCHS_VS_RANDOM_TARGET = 3.0
EPOCHS_VS_OPTUNA_TARGET = 1.0


def space_yaml(seed: int) -> str:
    """The searched space (see the module docstring) with sampler seed ``seed``."""
    import yaml

    space = {
        "name": f"efficiency-{seed}",
        "data": {"kind": "vimh", "path": str(ROOT / "data" / "vimh-default"), "val_fraction": 0.2, "limit": 1500},
        "model": {"kind": "mlp", "hidden": 64, "dropout": {"uniform": [0.0, 0.3]}},
        "train": {"epochs": EPOCHS, "batch_size": 64, "lr": {"loguniform": [1.0e-4, 3.0e-2]}, "grad_clip": 1.0,
                  "patience": EPOCHS + 1, "seed": 0},
        "heads": {
            "note_number": {"loss": {"choice": {
                "ce": {},
                "ordinal": {"alpha": {"loguniform": [0.01, 1.0]}, "distance": {"choice": ["l1", "l2", "huber"]}},
                "quantized": {"distance": {"choice": ["l1", "huber"]}},
                "weighted_ce": {"distance_power": {"uniform": [1.0, 3.0]}},
                "focal": {"gamma": {"uniform": [0.0, 5.0]}},
                "soft_ordinal": {"sigma": {"uniform": [0.5, 4.0]}},
            }}},
            "note_velocity": {"weight": {"uniform": [0.5, 2.0]}, "loss": {"choice": ["ce", "ordinal", "soft_ordinal"]}},
            "filter_cutoff": {"loss": "ordinal"},
        },
        "energy_weight": 0.0,
        "objective": {"metric": METRIC, "mode": "min"},
        "search": {"num_samples": TRIALS, "sampler": "tpe", "scheduler": "asha", "grace_period": 1,
                   "reduction_factor": 3, "max_concurrent": 1, "seed": seed},
        "resources": {"cpu": 1, "gpu": 0},
    }
    return yaml.safe_dump(space, sort_keys=False)


class _TargetReached(Exception):
    pass


class _Counter:
    """Counts epochs across a search's trials; records when the target is first reached."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.epochs = 0
        self.best = float("inf")
        self.reached_at: tuple[int, float] | None = None

    def epoch(self, value: float) -> None:
        self.epochs += 1
        self.best = min(self.best, value)
        if self.reached_at is None and value <= TARGET:
            self.reached_at = (self.epochs, time.perf_counter() - self.start)
            raise _TargetReached

    def outcome(self) -> dict[str, Any]:
        epochs, wall = self.reached_at or (self.epochs, time.perf_counter() - self.start)
        return {"reached": self.reached_at is not None, "epochs": epochs, "wall_s": wall, "best": self.best}


def _config(space: Any, trial: Any) -> dict[str, Any]:
    return {**space.define_by_run(trial), **trial.params, "train.threads": 1}


def _optuna(space: Any, *, sampler: Any, pruner: Any) -> dict[str, Any]:
    import optuna

    from trainables.train import train

    counter = _Counter()
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        values: list[float] = []

        def report(metrics: dict[str, float]) -> None:
            value = metrics[METRIC]
            values.append(value)
            counter.epoch(value)
            trial.report(value, int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned

        train(_config(space, trial), report=report)
        return min(values)

    with contextlib.suppress(_TargetReached):
        study.optimize(objective, n_trials=TRIALS)
    return {**counter.outcome(), "trials": len(study.trials)}


def _random(space: Any, seed: int) -> dict[str, Any]:
    import optuna

    return _optuna(space, sampler=optuna.samplers.RandomSampler(seed=seed), pruner=optuna.pruners.NopPruner())


def _optuna_median(space: Any, seed: int) -> dict[str, Any]:
    import optuna

    return _optuna(space, sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner())


def _tpe_asha(space: Any, seed: int, *, storage: Path, tracking_uri: str) -> dict[str, Any]:
    from ray import tune

    from search.driver import SearchOptions, plan_search, prepare_data, run_search

    plan = plan_search(space, SearchOptions(storage=str(storage), tracking_uri=tracking_uri))
    prepare_data(space)
    log = plan.run_dir.parent / f"{plan.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as out, contextlib.redirect_stdout(out):
        outcome = run_search(plan)
    finished = time.time()
    if outcome.exit_code != 0:
        raise RuntimeError(f"the search must exit 0, but got {outcome.exit_code} (log: {log})")
    epochs, best, reached_at = 0, float("inf"), None
    trials = tune.ExperimentAnalysis(str(plan.run_dir)).trials  # in creation order (one trial at a time)
    for trial in trials:
        results = [json.loads(line) for line in (Path(trial.path) / "result.json").read_text().splitlines()]
        for result in results:
            if result.get("final"):  # the trial's closing summary, not an epoch
                continue
            epochs += 1
            best = min(best, result[METRIC])
            if reached_at is None and result[METRIC] <= TARGET:
                reached_at = (epochs, result["timestamp"] - start)
    wall = finished - start
    epochs_to, wall_to = reached_at or (epochs, wall)
    return {"reached": reached_at is not None, "epochs": epochs_to, "wall_s": max(wall_to, 0.0), "best": best,
            "trials": len(trials), "epochs_all_trials": epochs, "search_wall_s": wall}


def run() -> dict[str, Any]:
    from mlflow import MlflowClient

    from search import _ray
    from search.space import load_space

    result: dict[str, Any] = {
        "machine": machine(trial_threads=1),
        "settings": {"seeds": list(SEEDS), "trials": TRIALS, "epochs": EPOCHS, "target": TARGET, "metric": METRIC},
        "raw": {},
        "ratios": {},
    }
    handle = _ray.connect(num_cpus=2)
    try:
        with tempfile.TemporaryDirectory(prefix="losstune-bench-") as name:
            tmp = Path(name)
            tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
            MlflowClient(tracking_uri).search_experiments()
            for seed in SEEDS:
                space_file = tmp / f"efficiency-{seed}.yaml"
                space_file.write_text(space_yaml(seed))
                space = load_space(space_file)
                methods: dict[str, Callable[[], dict[str, Any]]] = {
                    "tpe_asha": lambda: _tpe_asha(space, seed, storage=tmp / "runs", tracking_uri=tracking_uri),
                    "optuna_median": lambda: _optuna_median(space, seed),
                    "random": lambda: _random(space, seed),
                }
                row: dict[str, Any] = {"loadavg_start": list(os.getloadavg())}
                for method, fn in methods.items():
                    row[method] = fn()
                    r = row[method]
                    print(f"  seed {seed} {method:<14} reached={r['reached']!s:<5} epochs={r['epochs']:>4} "
                          f"wall={r['wall_s']:7.1f}s best={r['best']:.4f}", flush=True)
                result["raw"][f"seed_{seed}"] = row
    finally:
        handle.close()
    rows = list(result["raw"].values())
    for baseline, target in (("random", EPOCHS_VS_RANDOM_TARGET), ("optuna_median", EPOCHS_VS_OPTUNA_TARGET)):
        for quantity in ("epochs", "wall_s"):
            per_seed = [row[baseline][quantity] / max(row["tpe_asha"][quantity], 1e-9) for row in rows]
            name = f"{quantity.removesuffix('_s')}_to_target_{baseline}_vs_tpe_asha"
            result["raw"].setdefault("per_seed_ratios", {})[name] = per_seed
            result["ratios"][name] = figure(statistics.median(per_seed), target if quantity == "epochs" else 1.0,
                                            "higher")
    return result


def main() -> int:
    result = run()
    methods = ("tpe_asha", "optuna_median", "random")
    print(f"{'seed':<8}" + "".join(f"{m + ' epochs':>22}{'wall s':>9}" for m in methods))
    for key, row in result["raw"].items():
        if key.startswith("seed_"):
            cells = "".join(f"{row[m]['epochs']:>21}{'' if row[m]['reached'] else '*'}{row[m]['wall_s']:>9.1f}"
                            for m in methods)
            print(f"{key:<8}{cells}")
    print(f"(* target {TARGET} not reached within {TRIALS} trials: every epoch trained is counted)")
    print_ratios(result)
    write(result, "search_efficiency")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
