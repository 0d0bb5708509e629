"""GPU packing: aggregate training samples/s of k VIMH CNN trials packed on one GPU vs one trial alone.

Each trial is a process of its own (spawned: CUDA does not survive a fork) that runs ``train()``
with ``gpu_fraction=1/k``, as a Ray trial with ``resources.gpu: 1/k`` does: the trial caps its
allocations at 1/k of the GPU's memory and decides against that cap whether its data stays on the
GPU. The case is bench/trainable.py's VIMH CNN on the default VIMH set (generated on first use),
batch 64, one torch thread per trial, no data limit, EPOCHS epochs of which the first is a
warm-up. All k processes load their data and start CUDA first, then wait on a barrier and train
together; k = 1 (a whole GPU, no cap) is the baseline, measured in the same run.

A run's aggregate throughput is the training samples of all its trials' measured epochs (2..EPOCHS)
over the wall-clock span from the first of those epochs starting to the last one ending, validation
included (what a search gets from the GPU); ``overlap`` is the share of that span in which all k
trials were in their measured epochs. The sum of the training-pass samples/s each trial reports
is kept too. Repeats are interleaved (1, 2, 4, 8, 1, 2, ...), and a figure is the median over
repeats of packed / alone within the same repeat. Every trial must report ``device/type: cuda``
(a trial that fell back to the CPU fails the run). The results name the GPU.

Without CUDA nothing is measured and nothing is written: the script says ``skipped: no CUDA`` and
exits 0 (so ``make bench`` goes on), or 2 with ``--require-cuda``.

    .venv/bin/python bench/gpu_packing.py     -> table on stdout, bench/results/gpu_packing.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue as queue_module
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # for _common when loaded by path (tests)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, figure, machine, print_ratios, write  # noqa: E402

PACKINGS = (1, 2, 4, 8)
REPEATS = 3
EPOCHS = 12  # per trial; the first is a warm-up
TARGET_4 = 2.5  # 4 packed trials vs one alone
TIMEOUT_S = 900.0  # per run of k trials: start-up, data, training
CASE: dict[str, Any] = {  # bench/trainable.py's vimh_cnn, on the whole default set
    "data.kind": "vimh", "data.path": str(ROOT / "data" / "vimh-default"), "data.val_fraction": 0.1,
    "model.kind": "simple_cnn", "model.simple_cnn.hidden": 64, "model.simple_cnn.dropout": 0.1,
    "train.batch_size": 64, "train.lr": 1e-3, "train.grad_clip": 1.0, "train.threads": 1, "train.seed": 0,
    "train.epochs": EPOCHS, "train.patience": EPOCHS + 1, "train.device": "cuda",
    "heads.note_number.loss": "ce", "heads.note_velocity.loss": "ce", "heads.filter_cutoff.loss": "ce",
    "heads.note_number.weight": 1.5, "energy_weight": 0.0,
    "objective.metric": "val/mae_norm_mean", "objective.mode": "min",
}


def _trial(config: dict[str, Any], fraction: float, barrier: Any, results: Any, index: int) -> None:
    """One trial process: data and CUDA first, then the barrier, then ``train()``; puts
    (index, {"epochs": [...], "train_samples": n}) or (index, {"error": text}) on ``results``."""
    try:
        import torch

        from trainables.config import TrialConfig
        from trainables.data import load_dataset
        from trainables.train import train

        data = load_dataset(TrialConfig.from_flat(config).data)
        torch.zeros(1, device="cuda")  # the CUDA context's start-up is no part of a trial's throughput
        barrier.wait(timeout=TIMEOUT_S)
        epochs: list[dict[str, Any]] = []

        def report(metrics: dict[str, Any]) -> None:
            epochs.append({"end": time.time(), "epoch_s": metrics["epoch_time_s"],
                           "samples_per_s": metrics["samples_per_s"],
                           "peak_mb": metrics.get("gpu/peak_allocated_mb"),
                           "utilization_pct": metrics.get("gpu/utilization_pct"),
                           **{k: v for k, v in metrics.items() if k.startswith("device/")}})

        train(config, report=report, data=data, gpu_fraction=fraction)
        if epochs[0].get("device/type") != "cuda":
            raise RuntimeError(f"the trial must train on CUDA, but got {epochs[0].get('device/type')!r}")
        results.put((index, {"epochs": epochs, "train_samples": len(data.train)}))
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the parent as text
        barrier.abort()
        results.put((index, {"error": f"{type(error).__name__}: {error}"}))


def aggregate(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one run from its trials' epoch records (see the module docstring)."""
    starts = [t["epochs"][1]["end"] - t["epochs"][1]["epoch_s"] for t in trials]
    ends = [t["epochs"][-1]["end"] for t in trials]
    span = max(ends) - min(starts)
    samples = sum(t["train_samples"] * (len(t["epochs"]) - 1) for t in trials)
    peaks = [e["peak_mb"] for t in trials for e in t["epochs"][1:] if e["peak_mb"] is not None]
    usage = [e["utilization_pct"] for t in trials for e in t["epochs"][1:] if e["utilization_pct"] is not None]
    return {
        "trials": len(trials),
        "samples_per_s": samples / span,
        "span_s": span,
        "overlap": max(0.0, min(ends) - max(starts)) / span,
        "sum_of_training_pass_samples_per_s": sum(
            statistics.median(e["samples_per_s"] for e in t["epochs"][1:]) for t in trials),
        "peak_allocated_mb_per_trial": max(peaks) if peaks else None,
        "utilization_pct": statistics.mean(usage) if usage else None,
    }


def run_packed(k: int, config: dict[str, Any]) -> dict[str, Any]:
    """k trials on the GPU at once; their figures, or {"error": ...}."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k), ctx.Queue()
    fraction = 1.0 / k
    processes = [ctx.Process(target=_trial, args=(config, fraction, barrier, results, i)) for i in range(k)]
    for process in processes:
        process.start()
    got: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(got) < k:
            try:
                index, result = results.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue_module.Empty:
                return {"error": f"{k - len(got)} of {k} trials gave no result within {TIMEOUT_S:g} s"}
            got[index] = result
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = sorted({r["error"] for r in got.values() if "error" in r})
    if errors:
        return {"error": "; ".join(errors)}
    trials = [got[i] for i in range(k)]
    figures = aggregate(trials)
    figures["device"] = trials[0]["epochs"][0].get("device/name")
    return figures


def run(repeats: int = REPEATS) -> dict[str, Any]:
    import torch

    from trainables.config import TrialConfig
    from trainables.data import prepare_dataset

    prepare_dataset(TrialConfig.from_flat(CASE).data)  # once, before trials race to generate it
    props = torch.cuda.get_device_properties(0)
    runs: dict[str, list[dict[str, Any]]] = {str(k): [] for k in PACKINGS}
    for _ in range(repeats):
        for k in PACKINGS:
            runs[str(k)].append(run_packed(k, CASE))
    speedup: dict[str, float | None] = {}
    for k in PACKINGS[1:]:
        ratios = [packed["samples_per_s"] / alone["samples_per_s"]
                  for packed, alone in zip(runs[str(k)], runs["1"]) if "error" not in packed and "error" not in alone]
        speedup[str(k)] = statistics.median(ratios) if ratios else None
    result: dict[str, Any] = {
        "machine": machine(device=props.name, gpu_memory_mib=props.total_memory // (1 << 20), cuda=torch.version.cuda,
                           torch_threads_per_trial=CASE["train.threads"]),
        "raw": {"repeats": repeats, "epochs_per_trial": EPOCHS, "packings": list(PACKINGS), "case": CASE,
                "runs": runs, "speedup_vs_alone": speedup},
        "ratios": {},
    }
    if speedup.get("4") is not None:
        result["ratios"]["packed_4_vs_alone_samples_per_s"] = figure(speedup["4"], TARGET_4, "higher")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-cuda", action="store_true", help="exit 2 instead of 0 where CUDA is missing")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, but got {args.repeats}")
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no usable GPU"
        print(f"gpu_packing: skipped: no CUDA (torch {torch.__version__}, {build}); nothing measured, nothing "
              "written", file=sys.stderr)
        return 2 if args.require_cuda else 0
    result = run(args.repeats)
    print(f"device: {result['machine']['device']}; the last repeat's figures, `vs alone` the median over repeats")
    print(f"{'trials':>6}{'samples/s':>12}{'vs alone':>10}{'pass sum/s':>12}{'peak MiB':>10}{'overlap':>9}")
    for k in PACKINGS:
        last = result["raw"]["runs"][str(k)][-1]
        if "error" in last:
            print(f"{k:>6}  failed: {last['error']}")
            continue
        ratio = result["raw"]["speedup_vs_alone"].get(str(k), 1.0)
        peak = last["peak_allocated_mb_per_trial"]
        print(f"{k:>6}{last['samples_per_s']:>12.0f}{'' if ratio is None else f'{ratio:.2f}x':>10}"
              f"{last['sum_of_training_pass_samples_per_s']:>12.0f}{'-' if peak is None else f'{peak:.0f}':>10}"
              f"{last['overlap']:>9.2f}")
    if not result["ratios"]:
        print("gpu_packing: no figure: the runs of 1 or 4 trials failed (above); nothing written", file=sys.stderr)
        return 1
    print_ratios(result)
    write(result, "gpu_packing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
