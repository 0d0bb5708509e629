"""Regression guard for bench/temporal.py: ``train()``'s training throughput on the recurrent model
(T=4, a null step, reaction-time masking, energy hooks) vs a hand-written PyTorch loop doing the
same math. The benchmark measures 0.96x to 0.99x (T = 1, 4, 8); the margin is generous because a
shared CI machine is noisy: this only catches a large slowdown. The CPU-time ratio is the gate (other processes stretch wall time, not this thread's
CPU time). Also checks that the hand-written loss is the library's loss, so the ratio compares
the same math."""

from __future__ import annotations

import warnings

import pytest
import torch

BENCH = "temporal.py"


@pytest.mark.parametrize("timesteps", [1, 8])
def test_handwritten_loss_is_the_library_loss(bench, timesteps):
    from trainables.config import TrialConfig
    from trainables.data import as_tensors, load_dataset
    from trainables.losses import EnergyLoss, MultiHeadLoss, build_loss
    from trainables.models import build_model
    from trainables.temporal import Presenter

    cfg = TrialConfig.from_flat(bench._config(timesteps, 2))
    data = as_tensors(load_dataset(cfg.data))
    heads = {name: info.num_classes for name, info in data.heads.items()}
    torch.manual_seed(0)
    model = build_model(cfg.model.kind, input_shape=data.input_shape, head_outputs=heads, **cfg.model.params).eval()
    x = data.train.images[:16].float() / 255.0
    y = {name: data.train.labels[name][:16] for name in heads}
    presented = [c == "1" for c in cfg.temporal.steps]
    supervised = cfg.temporal.supervised()
    weights = {name: head.weight for name, head in cfg.heads.items()}

    energy = bench._HandEnergy(model, cfg.energy.p)
    try:
        ours_by_hand = bench.handwritten_loss(model, x, y, presented=presented, mask=torch.tensor(supervised)[None],
                                              weights=weights, energy=energy, energy_weight=cfg.energy_weight)
    finally:
        energy.remove()
    with EnergyLoss(p=cfg.energy.p).register(model) as library_energy:
        criterion = MultiHeadLoss(losses={h: build_loss("ce", num_classes=c) for h, c in heads.items()},
                                  weights=weights, energy=library_energy, energy_weight=cfg.energy_weight)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no wholly masked chunk in the benchmark's presentations
            presenter = Presenter(presented=tuple(presented), supervised=tuple(supervised))
        library, breakdown = criterion(*presenter.for_loss(model, x, y))
    assert float(breakdown["loss/energy"]) > 0
    assert torch.allclose(ours_by_hand, library, rtol=1e-5, atol=1e-6), (float(ours_by_hand), float(library))


def test_temporal_train_throughput_stays_near_a_handwritten_loop(bench):
    result = bench.measure(timesteps=(4,), repeats=3, epochs=3, sides=("ours", "handwritten"))
    ratio = result["timesteps"]["4"]["ratios"]["handwritten"]["cpu_throughput"]
    assert ratio >= 0.8, f"train() vs hand-written loop at T=4 must be >= 0.8x, but got {ratio:.2f}x"
