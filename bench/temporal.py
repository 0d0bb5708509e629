"""Temporal trials: training samples/s of ``trainables.train.train`` on the recurrent model vs a
hand-written PyTorch loop, at T = 1, 4 and 8 timesteps, and what a timestep costs.

Both sides train ``model.kind: recurrent_cnn`` (``build_model``, same seed, same parameters) on the
same split of the digits data set held in memory, with the same batch size, AdamW settings and
torch thread count (1: a search trial's CPU share), all three heads cross-entropy, and an energy
penalty (``energy_weight`` > 0, so the energy hooks run on every Conv2d / Linear call of every
step). The presentation exercises null steps and reaction-time masking: a pattern with a ``0``
and a reaction time of one step (``dt``), so the first step of every stimulus chunk is unsupervised:

    T=1  "1"                 (the only 1-step presentation; reaction_time 0, every step supervised)
    T=4  "10"   -> "1100"    (supervised: step 1)
    T=8  "1011" -> "11001111" (supervised: steps 1, 5, 6, 7)

Sides:

- ``ours``: ``train()``, its reported ``samples_per_s`` (train samples / time of an epoch's
  training pass; the wall/thread-CPU clock of bench/trainable.py checks what it brackets).
- ``handwritten``: the loop a user writes, doing the same math and nothing else: ``model(x,
  presented)`` -> [N, T, K] rows; per head ``F.cross_entropy(..., ignore_index=-1)`` over the
  labels repeated per step with -1 at the unsupervised steps (the same mask, built once); the
  energy by hand with forward hooks on the same modules (per call: mean over the batch of
  ||a_b||_p / n_units, averaged over all calls: every hooked module runs once per step); total =
  sum_h w_h L_h + energy_weight * E; fused AdamW, as ``train()`` takes on the CPU. Images
  converted to float32 once (as ``train()`` does for a training split of up to
  ``SCALED_TRAIN_SPLIT_BYTES`` as float32, this one included). The figure
  ``temporal_T{T}_throughput_vs_handwritten``.
- ``handwritten_same_loss`` (attribution): the same loop around the library's
  ``Presenter.for_loss`` and ``MultiHeadLoss`` with ``EnergyLoss``, as ``train()`` calls them:
  ours/this is the trainer's own per-step cost; this/handwritten is the loss library's (the head
  losses' checks and masked means, the detached breakdown, the energy hooks' bookkeeping).

Cost per step: ``temporal_cost_T8_vs_T1`` = time per training sample at T=8 / at T=1 of ``ours``
(the median over repeats of the per-repeat ratio); 8 means every step costs what the one step of
T=1 costs; fixed per-batch work (optimizer step, batching) pulls it below 8.

Repeats are interleaved (every T, every side, then the next repeat) so load drift hits every side
alike; each is a fresh ``train()`` call / fresh model of EPOCHS epochs whose first epoch is a
warm-up; a repeat's value is its best remaining epoch; a figure is the median over repeats of the
per-repeat ratio. About 2 minutes on 2 cores.

    .venv/bin/python bench/temporal.py     -> table on stdout, bench/results/temporal.json
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if str(Path(__file__).resolve().parent) not in sys.path:  # for _common when loaded by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure, machine, print_ratios, write  # noqa: E402

# train() with bench/trainable.py's checked wall / thread-CPU clock
from trainable import ours  # noqa: E402

from trainables.config import TrialConfig  # noqa: E402
from trainables.data import as_tensors, load_dataset  # noqa: E402
from trainables.losses import IGNORE_INDEX, EnergyLoss, MultiHeadLoss, build_loss  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.temporal import Presenter  # noqa: E402

THREADS = 1
REPEATS = 11
EPOCHS = 3  # per repeat; the first is a warm-up
TARGET = 0.95
COST_TARGET = 8.0  # time per sample at T=8 vs T=1: about 8 steps' worth
TIMESTEPS = (1, 4, 8)

# T -> (pattern, reaction_time) at dt = 1: one masked step at the onset of every chunk (T > 1)
PRESENTATIONS: dict[int, tuple[str, float]] = {1: ("1", 0.0), 4: ("10", 1.0), 8: ("1011", 1.0)}

CASE: dict[str, Any] = {
    "data.kind": "digits", "data.val_fraction": 0.15, "data.limit": 800,
    "model.kind": "recurrent_cnn", "model.recurrent_cnn.hidden": 64, "model.recurrent_cnn.dropout": 0.1,
    "model.recurrent_cnn.cell": "leaky",
    "train.batch_size": 32, "train.lr": 2e-3, "train.weight_decay": 1e-4, "train.grad_clip": 0.0,
    "heads.digit.loss": "ce", "heads.thickness.loss": "ce", "heads.smoothness.loss": "ce",
    "heads.thickness.weight": 0.5, "heads.smoothness.weight": 0.5,
    "energy_weight": 0.01, "energy.p": 1,
    "objective.metric": "val/acc_mean", "objective.mode": "max",
}


def _config(timesteps: int, epochs: int, case: dict[str, Any] = CASE) -> dict[str, Any]:
    pattern, reaction_time = PRESENTATIONS[timesteps]
    # patience above epochs: every repeat trains exactly `epochs` epochs
    return {**case, "temporal.n_timesteps": timesteps, "temporal.pattern": pattern, "temporal.dt": 1.0,
            "temporal.reaction_time": reaction_time,
            "train.epochs": epochs, "train.patience": epochs + 1, "train.seed": 0,
            "train.threads": THREADS, "train.device": "cpu"}


class _HandEnergy:
    """The energy penalty by hand: a forward hook per Conv2d / Linear (EnergyLoss's default types)
    keeps mean_b ||a_b||_p / n_units of every call; the penalty is their mean over all calls (every
    hooked module runs once per step, so this is sum / (modules * steps), as EnergyLoss)."""

    def __init__(self, model: nn.Module, p: int) -> None:
        self.p = p
        self.values: list[Tensor] = []
        types = EnergyLoss(p=p).module_types  # the same modules as the library's
        self.handles = [m.register_forward_hook(self._record) for m in model.modules() if isinstance(m, types)]

    def _record(self, module: nn.Module, args: object, output: Tensor) -> None:
        flat = output.reshape(output.shape[0], -1)
        self.values.append((torch.linalg.vector_norm(flat, ord=self.p, dim=1) / flat.shape[1]).mean())

    def take(self) -> Tensor:
        energy = sum(self.values[1:], self.values[0]) / len(self.values)
        self.values = []
        return energy

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def handwritten_loss(model: nn.Module, x: Tensor, y: dict[str, Tensor], *, presented: list[bool], mask: Tensor,
                     weights: dict[str, float], energy: _HandEnergy, energy_weight: float) -> Tensor:
    """sum_h w_h CE_h over the supervised (sample, step) rows + energy_weight * E, by hand."""
    out = model(x, presented)
    loss = sum(weights[h] * F.cross_entropy(out[h].reshape(-1, out[h].shape[-1]),
                                            torch.where(mask, target[:, None], IGNORE_INDEX).reshape(-1),
                                            ignore_index=IGNORE_INDEX) for h, target in y.items())
    return loss + energy_weight * energy.take()


def baseline(config: dict[str, Any], *, losses: str = "ce") -> list[dict[str, float]]:
    """The hand-written loop (see the module doc). ``losses="ce"``: F.cross_entropy with
    ignore_index and the hand-made energy; ``"library"``: ``Presenter.for_loss`` and
    ``MultiHeadLoss`` with ``EnergyLoss``, as train() calls them. Per epoch: training-pass
    samples/s (wall and per CPU second of this thread)."""
    cfg = TrialConfig.from_flat(config)
    tc = cfg.train
    torch.set_num_threads(THREADS)
    torch.manual_seed(tc.seed)
    data = as_tensors(load_dataset(cfg.data))
    x_train = data.train.images.float().div_(255.0) if data.train.images.dtype == torch.uint8 else data.train.images
    heads = {name: data.heads[name].num_classes for name in data.heads if name in cfg.heads}
    labels = {h: data.train.labels[h] for h in heads}
    weights = {name: head.weight for name, head in cfg.heads.items()}
    model = build_model(cfg.model.kind, input_shape=data.input_shape, head_outputs=heads, **cfg.model.params)
    presented = [c == "1" for c in cfg.temporal.steps]
    supervised = cfg.temporal.supervised()
    mask = torch.tensor(supervised)[None, :]  # [1, T]
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    generator = torch.Generator().manual_seed(tc.seed)
    if losses == "ce":
        energy = _HandEnergy(model, cfg.energy.p)
    else:
        presenter = Presenter(presented=tuple(presented), supervised=tuple(supervised), ignore_index=IGNORE_INDEX)
        head_losses = {h: build_loss("ce", num_classes=c) for h, c in heads.items()}
        for loss in head_losses.values():
            loss.check_targets = False  # as train() does after checking the labels once
            loss.empty_batches = not presenter.keeps_a_target  # as train() does
        library_energy = EnergyLoss(p=cfg.energy.p).register(model)
        criterion = MultiHeadLoss(losses=head_losses, weights=weights, energy=library_energy,
                                  energy_weight=cfg.energy_weight)
    n = len(x_train)
    epochs = []
    try:
        for _ in range(tc.epochs):
            start, cpu_start = time.perf_counter(), time.thread_time()
            model.train()
            order = torch.randperm(n, generator=generator)
            for i in range(0, n, tc.batch_size):
                idx = order[i:i + tc.batch_size]
                x = x_train[idx]
                if losses == "ce":
                    loss = handwritten_loss(model, x, {h: labels[h][idx] for h in heads}, presented=presented,
                                            mask=mask, weights=weights, energy=energy,
                                            energy_weight=cfg.energy_weight)
                else:
                    loss, _ = criterion(*presenter.for_loss(model, x, {h: labels[h][idx] for h in heads}))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                optimizer.step()
            train_time, cpu_time = time.perf_counter() - start, time.thread_time() - cpu_start
            epochs.append({"samples_per_s": n / train_time, "cpu_samples_per_s": n / cpu_time})
    finally:
        (energy if losses == "ce" else library_energy).remove()
    return epochs


SIDES = ("ours", "handwritten", "handwritten_same_loss")
KEYS = ("samples_per_s", "cpu_samples_per_s")


def _side(name: str, config: dict[str, Any]) -> list[dict[str, float]]:
    if name == "ours":
        return ours(config)
    return baseline(config, losses="library" if name == "handwritten_same_loss" else "ce")


def measure(*, timesteps: tuple[int, ...] = TIMESTEPS, repeats: int = REPEATS, epochs: int = EPOCHS,
            sides: tuple[str, ...] = SIDES, case: dict[str, Any] = CASE) -> dict[str, Any]:
    """Interleaved repeats (per repeat: every T, every side) of ``case``. A repeat's value is its
    best epoch among epochs 2.. (the first is a warm-up; other processes only ever slow an epoch
    down); a figure is the median over repeats of the per-repeat ratio (run back to back, so slow
    load drift cancels)."""
    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first is a warm-up), but got {epochs}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, but got {repeats}")
    if sides[0] != "ours":
        raise ValueError(f"sides must start with 'ours', but got {sides}")
    unknown = sorted(set(timesteps) - set(PRESENTATIONS))
    if unknown:
        raise ValueError(f"timesteps must be among {sorted(PRESENTATIONS)}, but got {unknown}")
    configs = {t: _config(t, epochs, case) for t in timesteps}
    before = torch.get_num_threads()
    runs = {t: {side: {key: [] for key in KEYS} for side in sides} for t in timesteps}
    try:
        for _ in range(repeats):
            for t in timesteps:
                for side in sides:
                    per_epoch = _side(side, configs[t])[1:]
                    for key in KEYS:
                        runs[t][side][key].append(max(e[key] for e in per_epoch))
    finally:
        torch.set_num_threads(before)
    per_t: dict[str, Any] = {}
    for t in timesteps:
        pattern, reaction_time = PRESENTATIONS[t]
        mine = runs[t]["ours"]
        ratios = {side: {"throughput": statistics.median(_ratios(mine["samples_per_s"], runs[t][side]["samples_per_s"])),
                         "cpu_throughput": statistics.median(
                             _ratios(mine["cpu_samples_per_s"], runs[t][side]["cpu_samples_per_s"]))}
                  for side in sides[1:]}
        per_t[str(t)] = {
            "pattern": pattern, "steps": _steps(configs[t]),
            "reaction_time": reaction_time, "dt": 1.0, "runs": runs[t],
            "median": {side: {k: statistics.median(v) for k, v in r.items()} for side, r in runs[t].items()},
            "ratios": ratios,
        }
    result = {"repeats": repeats, "epochs_per_repeat": epochs, "threads": THREADS,
              "batch_size": case["train.batch_size"], "model": case["model.kind"], "data": case["data.kind"],
              "data_limit": case.get("data.limit"), "energy_weight": case["energy_weight"], "timesteps": per_t}
    if 1 in timesteps and 8 in timesteps:
        # time per sample at T=8 / at T=1 = samples/s at T=1 / at T=8, per repeat
        cost = {key: statistics.median(_ratios(runs[1]["ours"][key], runs[8]["ours"][key])) for key in KEYS}
        result["cost_T8_vs_T1"] = {"wall": cost["samples_per_s"], "cpu": cost["cpu_samples_per_s"],
                                   "per_step_wall": cost["samples_per_s"] / 8, "per_step_cpu": cost["cpu_samples_per_s"] / 8}
    return result


def _ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


def _steps(config: dict[str, Any]) -> str:
    return TrialConfig.from_flat(config).temporal.steps


def run(sides: tuple[str, ...] = SIDES) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(torch_threads=THREADS), "raw": measure(sides=sides), "ratios": {}}
    for t, raw in result["raw"]["timesteps"].items():
        for side, figures in raw["ratios"].items():
            suffix = side.removeprefix("handwritten")
            for kind, value in figures.items():
                result["ratios"][f"temporal_T{t}_{kind}_vs_handwritten{suffix}"] = figure(value, TARGET, "higher")
    cost = result["raw"].get("cost_T8_vs_T1")
    if cost is not None:
        result["ratios"]["temporal_cost_T8_vs_T1"] = figure(cost["wall"], COST_TARGET, "lower")
        result["ratios"]["temporal_cpu_cost_T8_vs_T1"] = figure(cost["cpu"], COST_TARGET, "lower")
    return result


def main() -> int:
    start = time.perf_counter()
    result = run()
    print(f"{'T':<4}{'steps':<10}{'side':<24}{'samples/s':>12}{'per CPU s':>12}   (medians)")
    for t, raw in result["raw"]["timesteps"].items():
        for side, m in raw["median"].items():
            print(f"{t:<4}{raw['steps']:<10}{side:<24}{m['samples_per_s']:>12.0f}{m['cpu_samples_per_s']:>12.0f}")
    cost = result["raw"].get("cost_T8_vs_T1")
    if cost is not None:
        print(f"time per sample T=8 / T=1: {cost['wall']:.2f}x wall, {cost['cpu']:.2f}x CPU "
              f"({cost['per_step_wall']:.3f}x / {cost['per_step_cpu']:.3f}x the T=1 cost per step)")
    print_ratios(result)
    result["raw"]["total_s"] = time.perf_counter() - start
    print(f"{result['raw']['total_s']:.0f} s")
    write(result, "temporal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
