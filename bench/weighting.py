"""Weighting throughput: training samples/s of ``train()`` with each multi-task weighting strategy
vs ``fixed`` (the weighted sum, no strategy attached), on the VIMH CNN.

Same trial as bench/trainable.py's ``vimh_cnn`` case (its default VIMH set, generated on first use
into data/vimh-default; SimpleCNN, all VIMH heads with ``ce``, batch 64, 1 torch thread, CPU) on a
smaller subset (``data.limit`` 640: 576 training samples, 9 batches an epoch), with
``weighting.strategy`` set to each of fixed | uncertainty | dwa | gradnorm | pcgrad (default
parameters: ``weighting.dwa.temperature`` 2, ``weighting.gradnorm.alpha`` 1.5). Every strategy
goes through ``train()`` with bench/trainable.py's checked wall / thread-CPU clock (``ours``):
its reported ``samples_per_s`` (train samples / time of an epoch's training pass).

Figures ``weighting_<strategy>_throughput_vs_fixed`` (and ``_cpu_throughput_vs_fixed``, per CPU
second of the training thread), with K heads (K = 3 here) and what each strategy adds to a step:

- ``uncertainty`` (one learned log-variance per head, its own optimiser group) and ``dwa`` (the
  head losses weighted by a K-vector set once an epoch): a few tensor ops per step on top of the
  same single backward pass. Target >= 0.95x.
- ``gradnorm``: before the full backward, one ``autograd.grad`` per head down to the last shared
  layer only (the heads' Linear, the ReLU / dropout, the last shared Linear's weights), plus the
  norms and the gains' gradient. Predicted: T / (T + K b_last) with T the fixed step (per sample)
  and b_last one such per-head backward, close to 1x. Target >= 0.90x.
- ``pcgrad``: one ``autograd.grad`` per head through the whole shared part (where ``fixed`` takes
  one backward for all heads together), the projection of the K flat gradients, and a backward
  of the total through the heads' own parameters only. Predicted:

      T / (T - B + K b_shared + b_own)     ~ 1 / (1 + (K - 1) * backward share of the step)

  with B the full backward, b_shared one head's backward to the shared parameters (about B: the
  heads are one Linear each, the shared convolutions dominate), b_own the heads-only backward.
  T is ``fixed``'s measured time per sample in ``train()`` of the same repeat, the rest comes from
  the breakdown below (so the prediction adds to ``train()``'s step only what the backward
  passes change).
  Target >= 1/K: what K backward passes cost if backward were the whole step (the forward, the
  optimiser step and the batching only pull the ratio above that), i.e. "no more than its extra
  backward passes". The tighter check is ``weighting_pcgrad_measured_vs_predicted``: the measured
  cost (time per sample, pcgrad / fixed) over the predicted one, target <= 1.10 (the projection,
  the flattening of the gradients and their copy back into ``.grad`` are not in the prediction:
  more than 10 % on top means something else costs).

Measured breakdown (bench/results/weighting.json, medians of 7 repeats, per batch of 64, wall):
a fixed step is 99 ms: batch 0.2, forward (model + MultiHeadLoss) 54, backward 43 (0.44 of the
step), rest 2.2; one head's backward through the shared part 35 ms (0.8x the full backward in
that run, 1.0x to 1.1x in quieter ones: the heads are one Linear each, so it is the whole
backward of the backbone), the heads-only backward 0.7 ms, GradNorm's per-head backward to the
last shared layer 0.9 ms (2.6 ms for K = 3). Predicted: pcgrad 0.62x (0.51x on a quieter machine,
where the forward takes 34 ms and the backward share is 0.52), gradnorm 0.97x; both far above
1/K and 0.90. Inside ``train()`` PCGrad.backward spends 98 % of its time in the K per-head
``autograd.grad`` calls (``_flat_grad``), about 1 % in the projection (``pcgrad``).

The breakdown (``raw.breakdown``) is measured by hand with the same model, losses, optimiser,
clipping and batches as ``train()`` builds (``fixed``): per step the batch (``iterate_batches``),
the forward (model + ``MultiHeadLoss``), the full backward, the rest (zero_grad, clipping,
AdamW step; ``train()`` clears the gradients without ``zero_grad``'s profiler range, some
microseconds of a step); on passes of their own, each strategy's backward passes in its own order (the
memory in flight matters on CPU: fresh pages for the gradients): PCGrad's K
``autograd.grad(w_h L_h, shared, retain_graph=True)`` then the heads-only backward
(``backward(inputs=heads' parameters)``), no full backward; GradNorm's K ``autograd.grad(L_h,
layer, retain_graph=True)`` then the full backward. Shared / head parameters and the last shared
layer come from the strategies' own ``setup``. Each segment keeps its best (smallest) per-pass
total over its passes after a warm-up pass, as timeit does.

Repeats are interleaved (per repeat: every strategy's ``train()``, the order rotated by one each
repeat, then the breakdown) so load drift hits every side alike, after one untimed ``train()``
call (the first of a process runs slower); each ``train()`` call is a fresh model of EPOCHS epochs
whose first is a warm-up; a repeat's value is its best remaining epoch; a figure is the median
over repeats of the per-repeat ratio (strategy / fixed of the same repeat; measured / predicted
of the same repeat). The thread-CPU figures track the wall ones closely here: what slows this
machine down (other jobs on the 2 shared cores) stretches CPU time too (caches, memory
bandwidth), so neither clock removes load; the load average is in ``machine``. About 3 minutes
on 2 cores.

    .venv/bin/python bench/weighting.py     -> table on stdout, bench/results/weighting.json
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

if str(Path(__file__).resolve().parent) not in sys.path:  # for _common when loaded by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure, machine, print_ratios, write  # noqa: E402

# train() with bench/trainable.py's checked wall / thread-CPU clock, and its VIMH CNN case
from trainable import CASES, ours  # noqa: E402

from trainables.config import TrialConfig  # noqa: E402
from trainables.data import as_tensors, iterate_batches, load_dataset, scaled_once  # noqa: E402
from trainables.losses import MultiHeadLoss, build_loss  # noqa: E402
from trainables.models import build_model  # noqa: E402
from trainables.train import SCALED_TRAIN_SPLIT_BYTES  # noqa: E402
from trainables.weighting import GradNorm, PCGrad  # noqa: E402

THREADS = 1
REPEATS = 7
EPOCHS = 3  # per train() call; the first is a warm-up
PASSES = 2  # breakdown passes per mode and repeat, after one warm-up pass
STRATEGIES = ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad")
# Informational targets (see the module doc); pcgrad's is 1/K, set from the data's heads in run().
TARGETS = {"uncertainty": 0.95, "dwa": 0.95, "gradnorm": 0.90}
PREDICTION_TARGET = 1.10

# bench/trainable.py's VIMH CNN (all VIMH heads, ce) on 640 samples: 576 train (9 batches of 64), 64 val
CASE: dict[str, Any] = {**CASES["vimh_cnn"], "data.limit": 640}
KEYS = ("samples_per_s", "cpu_samples_per_s")


def _config(strategy: str, epochs: int, case: dict[str, Any] = CASE) -> dict[str, Any]:
    # patience above epochs: every call trains exactly `epochs` epochs
    return {**case, "weighting.strategy": strategy, "train.epochs": epochs, "train.patience": epochs + 1,
            "train.seed": 0, "train.threads": THREADS, "train.device": "cpu", "energy_weight": 0.0}


class _Timer:
    """Sums (wall, thread CPU) seconds per segment name over one pass."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._mark = (0.0, 0.0)

    def start(self) -> None:
        self._mark = (time.perf_counter(), time.thread_time())

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.wall[name] = self.wall.get(name, 0.0) + wall - self._mark[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - self._mark[1]
        self._mark = (wall, cpu)


def breakdown(config: dict[str, Any], *, passes: int = PASSES) -> dict[str, Any]:
    """The parts of a ``fixed`` training step, and the per-head backward passes PCGrad and GradNorm
    add, by hand around the model, losses, optimiser and batches ``train()`` builds. Per segment,
    seconds per training sample (wall and thread CPU): the smallest per-pass total over ``passes``
    passes of each mode after a warm-up pass (other processes only ever slow a pass down).
    ``<clock>_extra``: the seconds per sample PCGrad's and GradNorm's backward passes add to a
    fixed step (PCGrad: K per-head backward passes and the heads-only one in place of the full one)."""
    cfg = TrialConfig.from_flat(config)
    tc = cfg.train
    torch.set_num_threads(THREADS)
    torch.manual_seed(tc.seed)
    data = as_tensors(load_dataset(cfg.data))
    heads = {name: data.heads[name].num_classes for name in data.heads if name in cfg.heads}
    losses = {h: build_loss(cfg.heads[h].loss, num_classes=c) for h, c in heads.items()}
    for loss in losses.values():
        loss.check_targets = False  # as train() does after checking the labels once
        loss.empty_batches = False  # as train() does
    model = build_model(cfg.model.kind, input_shape=data.input_shape, head_outputs=heads, **cfg.model.params)
    weights = {h: cfg.heads[h].weight for h in heads}
    criterion = MultiHeadLoss(losses=losses, weights=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    # the strategies' own choice of shared / head parameters and of GradNorm's last shared layer
    probes = {}
    for kind in (PCGrad, GradNorm):
        probe = kind()
        probe.heads = list(losses)
        probe.register_buffer("base", torch.tensor([weights[h] for h in losses]))
        probe.setup(model)
        probes[kind] = probe
    shared, own, layer = probes[PCGrad].shared, probes[PCGrad].own, probes[GradNorm].layer
    base = probes[PCGrad].base
    train = scaled_once(data.train, max_bytes=SCALED_TRAIN_SPLIT_BYTES)  # the batches train() cuts
    generator = torch.Generator().manual_seed(tc.seed)

    def finish(timer: _Timer) -> None:  # what fixed does after its backward, as train() does it
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        timer.lap("rest")

    def fixed_pass() -> _Timer:
        timer = _Timer()
        model.train()
        timer.start()
        for x, y in iterate_batches(train, batch_size=tc.batch_size, shuffle=True, generator=generator):
            timer.lap("batch")
            total, _ = criterion(model(x), y)
            timer.lap("forward")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            timer.lap("backward")
            finish(timer)
        return timer

    def forward(x: Any, y: dict[str, Any]) -> tuple[Any, Any]:
        out = model(x)
        weighted = base * torch.stack([losses[h](out[h], y[h]) for h in losses])
        return weighted, weighted.sum()

    def per_head_pass(params: list[Any], lap: str, final: str, final_inputs: list[Any] | None) -> _Timer:
        """One backward per head on ``params`` (timed as ``lap``), then the step's backward (timed
        as ``final``, into ``final_inputs`` or every parameter): PCGrad's passes without its
        projection (the shared part, then the heads' own parameters), GradNorm's without its norms
        and gains (the last shared layer, then the whole model)."""
        timer = _Timer()
        model.train()
        for x, y in iterate_batches(train, batch_size=tc.batch_size, shuffle=True, generator=generator):
            weighted, total = forward(x, y)
            optimizer.zero_grad(set_to_none=True)
            timer.start()
            for value in weighted:
                torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            timer.lap(lap)
            total.backward(inputs=final_inputs)
            timer.lap(final)
            finish(timer)
        return timer

    def pcgrad_pass() -> _Timer:
        return per_head_pass(shared, "per_head_backward_shared", "heads_backward", own)

    def gradnorm_pass() -> _Timer:
        return per_head_pass(layer, "per_head_backward_last_layer", "backward_after_heads", None)

    modes = {"fixed": (fixed_pass, ("batch", "forward", "backward", "rest")),
             "pcgrad": (pcgrad_pass, ("per_head_backward_shared", "heads_backward")),
             "gradnorm": (gradnorm_pass, ("per_head_backward_last_layer",))}
    before = torch.get_num_threads()
    runs: dict[str, list[_Timer]] = {mode: [] for mode in modes}
    try:
        fixed_pass()  # warm-up: the fresh model's first steps
        for _ in range(passes):
            for mode, (one_pass, _) in modes.items():
                runs[mode].append(one_pass())
    finally:
        torch.set_num_threads(before)
    n = len(train)
    k = len(losses)
    segments: dict[str, dict[str, float]] = {}
    for clock in ("wall", "cpu"):
        segments[clock] = {name: min(getattr(t, clock)[name] for t in runs[mode]) / n
                           for mode, (_, names) in modes.items() for name in names}
    result: dict[str, Any] = {"heads": k, "train_samples": n, "shared_parameters": sum(p.numel() for p in shared),
                              "last_layer_parameters": sum(p.numel() for p in layer), "seconds_per_sample": segments}
    for clock, s in segments.items():
        step = s["batch"] + s["forward"] + s["backward"] + s["rest"]
        result[f"{clock}_fixed_step"] = step
        result[f"{clock}_backward_share"] = s["backward"] / step
        result[f"{clock}_per_head_shared_vs_full_backward"] = s["per_head_backward_shared"] / k / s["backward"]
        # seconds per sample the strategy's backward passes add to a fixed step
        result[f"{clock}_extra"] = {
            "pcgrad": s["per_head_backward_shared"] + s["heads_backward"] - s["backward"],
            "gradnorm": s["per_head_backward_last_layer"],
        }
    return result


def measure(*, strategies: tuple[str, ...] = STRATEGIES, repeats: int = REPEATS, epochs: int = EPOCHS,
            case: dict[str, Any] = CASE, with_breakdown: bool = True, warm_up: bool = True) -> dict[str, Any]:
    """Interleaved repeats (per repeat: every strategy, in an order rotated by one each repeat, then
    the breakdown) of ``case``, after an untimed ``train()`` call (``warm_up``). A repeat's value is
    its best epoch among epochs 2.. (the first is a warm-up); a figure is the median over repeats of
    the per-repeat ratio strategy / fixed (run back to back, so slow load drift cancels)."""
    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first is a warm-up), but got {epochs}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, but got {repeats}")
    if not strategies or strategies[0] != "fixed":
        raise ValueError(f"strategies must start with 'fixed', but got {strategies}")
    configs = {s: _config(s, epochs, case) for s in strategies}
    before = torch.get_num_threads()
    runs = {s: {key: [] for key in KEYS} for s in strategies}
    breakdowns: list[dict[str, Any]] = []
    try:
        if warm_up:  # the first train() call of a process runs slower (allocator, caches): not timed
            ours(_config(strategies[0], 2, case))
        for repeat in range(repeats):
            # each repeat starts one strategy later, so no strategy always runs first or last
            for s in strategies[repeat % len(strategies):] + strategies[:repeat % len(strategies)]:
                per_epoch = ours(configs[s])[1:]
                for key in KEYS:
                    runs[s][key].append(max(e[key] for e in per_epoch))
            if with_breakdown:
                breakdowns.append(breakdown(configs["fixed"]))
    finally:
        torch.set_num_threads(before)
    fixed = runs["fixed"]
    per_repeat = {s: {key: _ratios(runs[s][key], fixed[key]) for key in KEYS} for s in strategies[1:]}
    result: dict[str, Any] = {
        "repeats": repeats, "epochs_per_repeat": epochs, "threads": THREADS,
        "batch_size": case["train.batch_size"], "model": case["model.kind"], "data": case["data.kind"],
        "data_limit": case.get("data.limit"), "heads": sorted(k.split(".")[1] for k in case if k.startswith("heads.")
                                                              and k.endswith(".loss")),
        "runs": runs,
        "median": {s: {k: statistics.median(v) for k, v in r.items()} for s, r in runs.items()},
        "per_repeat_ratios": per_repeat,
        "ratios": {s: {"throughput": statistics.median(r["samples_per_s"]),
                       "cpu_throughput": statistics.median(r["cpu_samples_per_s"])} for s, r in per_repeat.items()},
    }
    if breakdowns:
        result["breakdown"] = {"per_repeat": breakdowns, "median": _median_breakdown(breakdowns)}
        for s in ("pcgrad", "gradnorm"):
            if s not in per_repeat:
                continue
            for key, clock, prefix in (("samples_per_s", "wall", ""), ("cpu_samples_per_s", "cpu", "cpu_")):
                # per repeat: the predicted time per sample is the measured fixed one plus what the
                # strategy's backward passes add (the breakdown of the same repeat)
                predicted = [1.0 / (1.0 + b[f"{clock}_extra"][s] * f) for b, f in zip(breakdowns, fixed[key])]
                measured = per_repeat[s][key]
                result["ratios"][s][f"{prefix}predicted"] = statistics.median(predicted)
                # measured cost / predicted cost (time per sample) = predicted throughput ratio / measured one
                result["ratios"][s][f"{prefix}measured_vs_predicted"] = statistics.median(_ratios(predicted, measured))
    return result


def _ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b)]


def _median_breakdown(breakdowns: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-repeat breakdowns' medians, field by field (numbers; nested mappings recursively)."""
    first = breakdowns[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _median_breakdown([b[key] for b in breakdowns])
        else:
            out[key] = statistics.median(b[key] for b in breakdowns)
    return out


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(torch_threads=THREADS), "raw": measure(), "ratios": {}}
    raw = result["raw"]
    k = raw["breakdown"]["median"]["heads"]
    targets = {**TARGETS, "pcgrad": 1.0 / k}
    for s, figures in raw["ratios"].items():
        result["ratios"][f"weighting_{s}_throughput_vs_fixed"] = figure(figures["throughput"], targets[s], "higher")
        result["ratios"][f"weighting_{s}_cpu_throughput_vs_fixed"] = figure(figures["cpu_throughput"], targets[s],
                                                                            "higher")
    pcgrad = raw["ratios"]["pcgrad"]
    result["ratios"]["weighting_pcgrad_measured_vs_predicted"] = figure(
        pcgrad["measured_vs_predicted"], PREDICTION_TARGET, "lower")
    result["ratios"]["weighting_pcgrad_cpu_measured_vs_predicted"] = figure(
        pcgrad["cpu_measured_vs_predicted"], PREDICTION_TARGET, "lower")
    return result


def main() -> int:
    start = time.perf_counter()
    result = run()
    raw = result["raw"]
    print(f"{'strategy':<14}{'samples/s':>12}{'per CPU s':>12}{'vs fixed':>10}{'predicted':>11}   (medians)")
    for s, m in raw["median"].items():
        r = raw["ratios"].get(s, {})
        vs = f"{r['throughput']:.3f}" if r else "1"
        predicted = f"{r['predicted']:.3f}" if "predicted" in r else ""
        print(f"{s:<14}{m['samples_per_s']:>12.0f}{m['cpu_samples_per_s']:>12.0f}{vs:>10}{predicted:>11}")
    b = raw["breakdown"]["median"]
    ms = {name: 1e3 * raw["batch_size"] * v for name, v in b["seconds_per_sample"]["wall"].items()}
    print(f"breakdown per batch of {raw['batch_size']} (ms, wall): "
          + ", ".join(f"{name} {v:.2f}" for name, v in ms.items()))
    print(f"backward share of a fixed step {b['wall_backward_share']:.2f}; one head's backward to the shared part "
          f"= {b['wall_per_head_shared_vs_full_backward']:.2f}x the full backward (K = {b['heads']})")
    print_ratios(result)
    result["raw"]["total_s"] = time.perf_counter() - start
    print(f"{result['raw']['total_s']:.0f} s")
    write(result, "weighting")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
