"""Trainable throughput: samples/s of ``trainables.train.train`` vs a minimal hand-written PyTorch loop.

Both sides train the same model (``build_model``, same seed, kind, width) on the same split of the
same data set held in memory, with the same batch size, AdamW settings, gradient clipping and torch
thread count (1: a search trial's CPU share). Every head uses cross-entropy. Three baselines:

- ``handwritten_same_loss``: the loop calls the library's ``MultiHeadLoss`` over ``build_loss("ce")``
  heads, as ``train()`` does, and steps the same fused AdamW: the ratio is the trainer's own
  per-step cost (the target's figure).
- ``handwritten_plain_ce``: the loop sums weighted ``F.cross_entropy`` per head, as a user would,
  with the same fused AdamW: the ratio adds the cost of the loss library (the per-head modules, the
  detached breakdown) to the trainer's.
- ``handwritten_plain_ce_default_adamw``: the same loop with ``torch.optim.AdamW``'s defaults (one
  op per parameter tensor and update term), the loop most users write: what ``train()``'s fused
  optimizer step gains them.

Every baseline clears the gradients with ``optimizer.zero_grad(set_to_none=True)``, as users do;
``train()`` sets them to None itself, without that call's profiler range.

The figure is the training pass only: ``train()``'s reported ``samples_per_s`` (train samples /
time of an epoch's training pass) vs the same quantity around the baseline's epoch loop, plus the
same per CPU second of the training thread (``cpu_throughput``: other processes on a shared machine
stretch wall time, not this thread's CPU time) and, informational, whole epochs incl. validation
(``train()`` computes all its task metrics; the baselines an argmax accuracy per head). The
baselines convert the images to float32 once; so does ``train()`` for a training split of up to
``SCALED_TRAIN_SPLIT_BYTES`` as float32 (the digits and VIMH cases here), and a larger one it scales
per batch.

Repeats are interleaved (ours, baselines, ours, ...) so load drift hits every side alike; each is a
fresh ``train()`` call / fresh model of EPOCHS epochs whose first epoch is a warm-up; a repeat's
value is its best remaining epoch; a figure is the median over repeats of the ours/baseline ratio.

    .venv/bin/python bench/trainable.py     -> table on stdout, bench/results/trainable.json
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

if str(Path(__file__).resolve().parent) not in sys.path:  # for _common when loaded by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402
import trainables.train as train_module  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import as_tensors, load_dataset  # noqa: E402
from trainables.losses import MultiHeadLoss, build_loss  # noqa: E402
from trainables.models import build_model  # noqa: E402

THREADS = 1
REPEATS = 7
EPOCHS = 4  # per repeat; the first is a warm-up
TARGET = 0.95

# name -> flat trial config (all heads ce). digits/MLP: tiny steps, so per-step Python overhead
# dominates; VIMH/SimpleCNN: the default search's model, compute dominates.
CASES: dict[str, dict[str, Any]] = {
    "digits_mlp": {
        "data.kind": "digits", "data.val_fraction": 0.15,
        "model.kind": "mlp", "model.mlp.hidden": 64, "model.mlp.dropout": 0.1,
        "train.batch_size": 32, "train.lr": 3e-3, "train.weight_decay": 1e-4, "train.grad_clip": 0.0,
        "heads.digit.loss": "ce", "heads.thickness.loss": "ce", "heads.smoothness.loss": "ce",
        "heads.thickness.weight": 0.5, "heads.smoothness.weight": 0.5,
        "objective.metric": "val/acc_mean", "objective.mode": "max",
    },
    "vimh_cnn": {
        # the default VIMH set, generated on first use
        "data.kind": "vimh", "data.path": str(ROOT / "data" / "vimh-default"), "data.limit": 1000,
        "data.val_fraction": 0.1,
        "model.kind": "simple_cnn", "model.simple_cnn.hidden": 64, "model.simple_cnn.dropout": 0.1,
        "train.batch_size": 64, "train.lr": 1e-3, "train.grad_clip": 1.0,
        "heads.note_number.loss": "ce", "heads.note_velocity.loss": "ce", "heads.filter_cutoff.loss": "ce",
        "heads.note_number.weight": 1.5,
        "objective.metric": "val/mae_norm_mean", "objective.mode": "min",
    },
}


def _config(case: dict[str, Any], epochs: int) -> dict[str, Any]:
    # patience above epochs: every repeat trains exactly `epochs` epochs
    return {**case, "train.epochs": epochs, "train.patience": epochs + 1, "train.seed": 0,
            "train.threads": THREADS, "train.device": "cpu", "energy_weight": 0.0}


class _Clock:
    """Stands in for ``trainables.train.perf_counter`` during a measured ``train()`` call: returns
    the wall clock (so ``train()`` reports what it always does) and records (wall, thread CPU)
    pairs, from which the CPU time of the training pass is read. train() reads the clock at the
    start of an epoch, after its training pass and for ``epoch_time_s``; ``ours`` checks that the
    recorded intervals reproduce the reported ``samples_per_s``, so a change there fails loudly."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def __call__(self) -> float:
        wall = time.perf_counter()
        self.marks.append((wall, time.thread_time()))
        return wall


def ours(config: dict[str, Any]) -> list[dict[str, float]]:
    """Per epoch of one train() call: training-pass samples/s (wall, as train() reports it, and
    per CPU second of this thread) and whole-epoch seconds incl. validation."""
    reports: list[dict[str, float]] = []
    clock = _Clock()
    saved = train_module.perf_counter
    train_module.perf_counter = clock
    try:
        train_module.train(config, report=reports.append)
    finally:
        train_module.perf_counter = saved
    if len(clock.marks) != 3 * len(reports):
        raise RuntimeError(f"train() must read its clock 3 times an epoch, but got {len(clock.marks)} "
                           f"reads for {len(reports)} epochs: update bench/trainable.py")
    epochs = []
    for k, r in enumerate(reports):
        (wall0, cpu0), (wall1, cpu1), _ = clock.marks[3 * k:3 * k + 3]
        samples = r["samples_per_s"] * (wall1 - wall0)
        if not math.isclose(samples, round(samples), rel_tol=1e-6):
            raise RuntimeError("train()'s clock reads no longer bracket its training pass: update bench/trainable.py")
        epochs.append({"samples_per_s": r["samples_per_s"], "cpu_samples_per_s": samples / (cpu1 - cpu0),
                       "epoch_s": r["epoch_time_s"]})
    return epochs


def baseline(config: dict[str, Any], *, losses: str = "ce", fused: bool = True) -> list[dict[str, float]]:
    """The hand-written loop: same model, data, batches, optimiser, clipping. ``losses="ce"``: plain
    ``F.cross_entropy`` per head, weighted and summed; ``"multihead"``: the library's
    ``MultiHeadLoss`` over ``build_loss("ce")`` heads, as ``train()`` uses. ``fused``: AdamW's fused
    step, as ``train()`` takes on the CPU; False: AdamW's defaults. Validation: argmax accuracy per
    head on the validation split (``train()`` computes all its task metrics)."""
    cfg = TrialConfig.from_flat(config)
    tc = cfg.train
    torch.set_num_threads(THREADS)
    torch.manual_seed(tc.seed)
    data = as_tensors(load_dataset(cfg.data))
    x_train = data.train.images.float().div_(255.0) if data.train.images.dtype == torch.uint8 else data.train.images
    x_val = data.val.images.float().div_(255.0) if data.val.images.dtype == torch.uint8 else data.val.images
    heads = {name: data.heads[name].num_classes for name in cfg.heads}
    weights = {name: head.weight for name, head in cfg.heads.items()}
    model = build_model(cfg.model.kind, input_shape=data.input_shape, head_outputs=heads, **cfg.model.params)
    criterion = MultiHeadLoss(losses={h: build_loss("ce", num_classes=c) for h, c in heads.items()}, weights=weights)
    for loss in criterion.losses.values():
        loss.check_targets = False  # as train() does after checking the labels once
        loss.empty_batches = False  # as train() does for static labels
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=fused)
    generator = torch.Generator().manual_seed(tc.seed)
    n = len(x_train)
    epochs = []
    for _ in range(tc.epochs):
        start, cpu_start = time.perf_counter(), time.thread_time()
        model.train()
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, tc.batch_size):
            idx = order[i:i + tc.batch_size]
            out = model(x_train[idx])
            if losses == "ce":
                loss = sum(weights[h] * F.cross_entropy(out[h], data.train.labels[h][idx]) for h in heads)
            else:
                loss, _ = criterion(out, {h: data.train.labels[h][idx] for h in heads})
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
        train_time, cpu_time = time.perf_counter() - start, time.thread_time() - cpu_start
        model.eval()
        with torch.no_grad():
            out = model(x_val)
            [float((out[h].argmax(1) == data.val.labels[h]).float().mean()) for h in heads]
        epochs.append({"samples_per_s": n / train_time, "cpu_samples_per_s": n / cpu_time,
                       "epoch_s": time.perf_counter() - start})
    return epochs


# baseline name -> its keywords for ``baseline``
BASELINES: dict[str, dict[str, Any]] = {
    "handwritten_same_loss": {"losses": "multihead"},
    "handwritten_plain_ce": {"losses": "ce"},
    "handwritten_plain_ce_default_adamw": {"losses": "ce", "fused": False},
}
SIDES = ("ours", *BASELINES)
# per repeat, the best epoch among epochs 2..: other processes on a shared machine only ever slow
# an epoch down (as in timeit)
_BEST = {"samples_per_s": max, "cpu_samples_per_s": max, "epoch_s": min}


def _side(name: str, config: dict[str, Any]) -> list[dict[str, float]]:
    if name == "ours":
        return ours(config)
    return baseline(config, **BASELINES[name])


def measure(case: dict[str, Any], *, repeats: int = REPEATS, epochs: int = EPOCHS,
            sides: tuple[str, ...] = SIDES) -> dict[str, Any]:
    """Interleaved repeats (ours, baseline(s), ours, ...) of ``case``. A repeat's value is its best
    epoch among epochs 2.. (the first is a warm-up); a figure is the median over repeats of the
    per-repeat ratio ours/baseline (run back to back, so slow load drift cancels)."""
    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first is a warm-up), but got {epochs}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, but got {repeats}")
    if sides[0] != "ours":
        raise ValueError(f"sides must start with 'ours', but got {sides}")
    config = _config(case, epochs)
    before = torch.get_num_threads()
    runs: dict[str, dict[str, list[float]]] = {side: {key: [] for key in _BEST} for side in sides}
    try:
        for _ in range(repeats):
            for side in sides:
                per_epoch = _side(side, config)[1:]
                for key, best in _BEST.items():
                    runs[side][key].append(best(e[key] for e in per_epoch))
    finally:
        torch.set_num_threads(before)
    ratios: dict[str, dict[str, float]] = {}
    for side in sides[1:]:
        ours_runs, theirs = runs["ours"], runs[side]
        ratios[side] = {
            "throughput": statistics.median(a / b for a, b in zip(ours_runs["samples_per_s"], theirs["samples_per_s"])),
            "cpu_throughput": statistics.median(
                a / b for a, b in zip(ours_runs["cpu_samples_per_s"], theirs["cpu_samples_per_s"])),
            # seconds inverted, so higher is better like the throughput ratios
            "epoch_incl_validation": statistics.median(b / a for a, b in zip(ours_runs["epoch_s"], theirs["epoch_s"])),
        }
    return {
        "repeats": repeats, "epochs_per_repeat": epochs, "threads": THREADS,
        "batch_size": config["train.batch_size"], "model": config["model.kind"], "data": config["data.kind"],
        "data_limit": config.get("data.limit"), "runs": runs,
        "median": {side: {k: statistics.median(v) for k, v in r.items()} for side, r in runs.items()},
        "ratios": ratios,
    }


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(torch_threads=THREADS), "raw": {}, "ratios": {}}
    for name, case in CASES.items():
        raw = measure(case)
        result["raw"][name] = raw
        for side, figures in raw["ratios"].items():
            for kind, value in figures.items():
                if kind == "epoch_incl_validation" and side != "handwritten_same_loss":
                    continue
                result["ratios"][f"{name}_{kind}_vs_{side}"] = figure(value, TARGET, "higher")
    return result


def main() -> int:
    result = run()
    print(f"{'case':<14}{'side':<24}{'samples/s':>12}{'per CPU s':>12}{'epoch s':>10}   (medians)")
    for name, raw in result["raw"].items():
        for side, m in raw["median"].items():
            print(f"{name:<14}{side:<24}{m['samples_per_s']:>12.0f}{m['cpu_samples_per_s']:>12.0f}{m['epoch_s']:>10.3f}")
    print_ratios(result)
    write(result, "trainable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
