"""bench/gpu_packing.py where no GPU is: it refuses to measure and writes nothing; and the
arithmetic of its aggregate throughput, on epoch records written by hand (the measurement
itself needs CUDA and runs only on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

BENCH = "gpu_packing.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of a machine without CUDA")
def test_without_cuda_it_skips_and_writes_nothing(bench, monkeypatch, tmp_path, capsys):
    import _common

    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    assert bench.main([]) == 0
    assert bench.main(["--require-cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("gpu_packing: skipped: no CUDA") == 2 and "nothing written" in err
    assert list(tmp_path.iterdir()) == []


def _trial(starts_and_ends, samples):
    # epoch records as a trial process keeps them: wall-clock end, epoch seconds, training-pass rate
    return {"train_samples": samples, "epochs": [
        {"end": end, "epoch_s": end - start, "samples_per_s": rate, "peak_mb": 100.0, "utilization_pct": None}
        for start, end, rate in starts_and_ends]}


def test_aggregate_counts_the_measured_epochs_of_every_trial_over_their_common_span(bench):
    # epoch 1 of each is the warm-up; the measured epochs run from t=10 (first start) to t=22 (last end)
    a = _trial([(0, 10, 50.0), (10, 15, 200.0), (15, 20, 300.0)], samples=1000)
    b = _trial([(1, 12, 50.0), (12, 17, 100.0), (17, 22, 100.0)], samples=1000)
    figures = bench.aggregate([a, b])
    assert figures["samples_per_s"] == pytest.approx(4000 / 12)
    assert figures["overlap"] == pytest.approx((20 - 12) / 12)
    assert figures["sum_of_training_pass_samples_per_s"] == pytest.approx(250.0 + 100.0)
    assert figures["peak_allocated_mb_per_trial"] == 100.0 and figures["utilization_pct"] is None
