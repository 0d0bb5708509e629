"""Data-layer benchmark: VIMH load time and in-memory batching vs torch's DataLoader.

Writes 10,000 32x32 VIMH samples (8,000 train_batch + 2,000 test_batch) to a temp dir, times
``load_dataset`` on them, then one shuffled epoch over the training split with batch 128 through
``iterate_batches`` and through ``DataLoader(TensorDataset(...), batch_size=128, shuffle=True,
num_workers=0)`` on the same tensors (both hand out float32 images in [0, 1]). Also times the
synthesiser on 5,000 samples. Median of REPEATS runs each.

    .venv/bin/python bench/data.py      -> table on stdout, bench/results/data.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainables.data import DataSpec, as_tensors, iterate_batches, load_dataset
from trainables.data.vimh import SPLIT_FILES, VimhBatch, VimhInfo, generate_vimh, write_vimh_batch, write_vimh_info

REPEATS = 5
SAMPLES = 10_000
BATCH = 128
RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def _median_time(run: Callable[[], object], repeats: int = REPEATS) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _write_dataset(directory: Path) -> None:
    info = VimhInfo(height=32, width=32, channels=1, parameter_names=("note_number", "note_velocity"),
                    ranges={"note_number": (36.0, 84.0), "note_velocity": (1.0, 127.0)})
    rng = np.random.default_rng(0)
    for name, count in zip(SPLIT_FILES, (SAMPLES * 4 // 5, SAMPLES // 5)):
        batch = VimhBatch(images=rng.integers(0, 256, (count, 1, 32, 32), dtype=np.uint8),
                          labels={p: rng.integers(0, 256, count) for p in info.parameter_names})
        write_vimh_batch(directory / name, batch, info=info)
    write_vimh_info(directory, info=info)


def run() -> dict:
    loadavg_start = list(os.getloadavg())  # other processes on a shared machine skew the timings
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "vimh"
        directory.mkdir()
        _write_dataset(directory)
        spec = DataSpec(kind="vimh", path=str(directory))
        load_s, load_all = _median_time(lambda: load_dataset(spec))
        train = as_tensors(load_dataset(spec)).train

        def ours() -> None:
            generator = torch.Generator().manual_seed(0)
            for images, labels in iterate_batches(train, batch_size=BATCH, shuffle=True, generator=generator):
                pass

        names = list(train.labels)
        loader = DataLoader(TensorDataset(train.images, *(train.labels[n] for n in names)),
                            batch_size=BATCH, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(0))

        def theirs() -> None:
            for images, *labels in loader:
                images = images.to(torch.float32).div_(255.0)
                labels = dict(zip(names, labels))

        ours()  # warm-up: first-call allocations
        theirs()
        ours_s, ours_all = _median_time(ours)
        theirs_s, theirs_all = _median_time(theirs)
        generate_s, _ = _median_time(
            lambda: generate_vimh(Path(tmp) / f"gen-{time.perf_counter_ns()}", samples=5000, seed=0,
                                  params=("note_number", "note_velocity", "filter_cutoff")), repeats=1)
    return {
        "machine": {"cores": os.cpu_count(), "device": "cpu", "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_start": loadavg_start,
                    "loadavg_end": list(os.getloadavg())},
        "raw": {"samples": SAMPLES, "train_samples": len(train), "batch_size": BATCH, "repeats": REPEATS,
                "load_time_s": load_s, "load_times_s": load_all,
                "epoch_iterate_batches_s": ours_s, "epoch_iterate_batches_all_s": ours_all,
                "epoch_dataloader_s": theirs_s, "epoch_dataloader_all_s": theirs_all,
                "generate_5000_samples_s": generate_s},
        "ratios": {
            "load_time_s": {"value": load_s, "target": 1.0, "better": "lower"},
            "batching_vs_dataloader": {"value": ours_s / theirs_s, "target": 1.0, "better": "lower"},
        },
    }


def main() -> int:
    result = run()
    raw = result["raw"]
    rows = [("load_dataset (10k VIMH 32x32)", raw["load_time_s"]),
            ("epoch iterate_batches (b128)", raw["epoch_iterate_batches_s"]),
            ("epoch DataLoader (b128, workers=0)", raw["epoch_dataloader_s"]),
            ("generate 5000 samples (1 run)", raw["generate_5000_samples_s"])]
    print(f"{'measurement':<38}{'median s':>12}")
    for name, seconds in rows:
        print(f"{name:<38}{seconds:>12.4f}")
    for name, ratio in result["ratios"].items():
        print(f"{name:<38}{ratio['value']:>12.4f}  (target {ratio['target']}, {ratio['better']} is better)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    scratch = RESULTS.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(result, indent=2) + "\n")
    scratch.replace(RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
