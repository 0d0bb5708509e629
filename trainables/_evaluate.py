"""Evaluation of a trained model on a split: task metrics per head and over heads, and energy."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack, nullcontext

import torch
from torch import Tensor, nn

from trainables.data import HeadInfo, Split, iterate_batches
from trainables.losses import EnergyLoss
from trainables.metrics import aggregate, head_metrics, step_metrics
from trainables.temporal import Presenter, last_onset

__all__ = ["evaluate"]

# A forward pass without gradients keeps a layer's input and output alive at a time, a training
# step every layer's activations and then their gradients: evaluating this many training batches
# at once saves per-batch overhead and stays below the training peak of a shallow CNN too. Four
# did not: on VIMH's SimpleCNN (32 channels at full resolution) evaluation raised the trial's peak
# by up to 64 MB, up to 1.16x the hand-written loop's, against 1.00x with two; a fixed 1024 put
# it at 1.4x (bench/memory.py).
TRAIN_BATCHES_PER_EVAL_BATCH = 2


@torch.no_grad()
def evaluate(
    model: nn.Module,
    losses: Mapping[str, nn.Module],
    split: Split,
    heads: Mapping[str, HeadInfo],
    *,
    split_name: str,
    presenter: Presenter,
    energy_p: int,
    amp: torch.dtype | None,
    device: torch.device,
    train_batch_size: int,
) -> dict[str, float]:
    """Task metrics of every head on ``split`` (predictions from each head loss's ``predict``; for a
    temporal model ``trainables.metrics.step_metrics`` over its steps), their aggregates, and the raw
    activation energy per step (sample-weighted mean over batches): ``energy`` with the trial's norm
    ``energy_p`` (what its energy term sees), ``energy_l1`` with the L1 norm (comparable across
    trials that search the norm). Batches of ``TRAIN_BATCHES_PER_EVAL_BATCH`` x ``train_batch_size``."""
    model.eval()
    preds: dict[str, list[Tensor]] = {name: [] for name in heads}
    norms = {"energy": energy_p, **({"energy_l1": 1} if energy_p != 1 else {})}
    sums: dict[str, Tensor | float] = dict.fromkeys(norms, 0.0)
    batch_size = TRAIN_BATCHES_PER_EVAL_BATCH * train_batch_size
    with ExitStack() as stack:
        probes = {name: stack.enter_context(EnergyLoss(p=p).register(model)) for name, p in norms.items()}
        for x, _ in iterate_batches(split, batch_size=batch_size, shuffle=False, generator=None):
            for probe in probes.values():
                probe.reset()
            with torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext():
                outputs = presenter.outputs(model, x.to(device, non_blocking=True))
            for name in heads:
                out = outputs[name].float()
                # [N, T, K] -> one prediction per (sample, step), back to [N, T]
                pred = losses[name].predict(out.reshape(-1, out.shape[-1])).reshape(out.shape[:-1])
                preds[name].append(pred)
            for name, probe in probes.items():
                sums[name] = sums[name] + probe().float() * len(x)
    per_head = {name: _metrics(torch.cat(preds[name]).cpu(), split.labels[name].cpu(), info, presenter)
                for name, info in heads.items()}
    metrics = {f"{split_name}/{name}/{key}": v for name, values in per_head.items() for key, v in values.items()}
    metrics.update({f"{split_name}/{key}": v for key, v in aggregate(per_head).items()})
    metrics[f"{split_name}/energy"] = float(sums["energy"]) / len(split)
    metrics[f"{split_name}/energy_l1"] = float(sums.get("energy_l1", sums["energy"])) / len(split)
    return metrics


def _metrics(pred: Tensor, target: Tensor, info: HeadInfo, presenter: Presenter) -> dict[str, float]:
    if presenter.supervised is None:
        return head_metrics(pred, target, num_classes=info.num_classes, ordinal=info.ordinal,
                            unit_range=info.unit_range)
    return step_metrics(pred, target, supervised=presenter.supervised, dt=presenter.dt,
                        num_classes=info.num_classes, ordinal=info.ordinal, unit_range=info.unit_range,
                        onset=last_onset(presenter.presented))
