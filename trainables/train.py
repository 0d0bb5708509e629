"""Train one trial: data, model, losses and hooks from a trial config; report per epoch; resumable.

The outside world is reached only through ``report`` and ``checkpoint_dir``, so the same function
runs under Ray Tune, in ``search train``, in tests and in a notebook.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from time import perf_counter
from typing import Any

import torch
from torch import Tensor, nn

from trainables import device as placement_module
from trainables import hooks as train_hooks
from trainables._checkpoint import CheckpointError, Progress, load_checkpoint, save_checkpoint, seed_everything
from trainables._evaluate import evaluate as _evaluate
from trainables.config import TemporalConfig, TrainConfig, TrialConfig
from trainables.data import HeadInfo, MultiheadDataset, Split, as_tensors, iterate_batches, load_dataset, scaled_once
from trainables.device import DeviceOutOfMemory, GpuMonitor, out_of_memory_as_failure
from trainables.energy_alarm import ALARM_PREFIX, energy_alarms
from trainables.flat_keys import HEAD_LOSS, HEADS, FlatKey
from trainables.losses import EnergyLoss, MultiHeadLoss, build_loss, check_fits_head
from trainables.metric_names import BEST_EPOCH_KEY, LAST_EPOCH_KEY, metric_names
from trainables.models import build_model, is_temporal
from trainables.settings import SettingError
from trainables.temporal import Presenter

__all__ = [
    "CHECKPOINT_NAME", "CheckpointError", "DeviceOutOfMemory", "TrainingDiverged", "repeats_on_retry", "train",
    "trained_heads",
]

CHECKPOINT_NAME = "checkpoint.pt"
# where trials train and torch has a fused AdamW kernel
FUSED_ADAMW_DEVICES = ("cpu", "cuda")
# A training split of uint8 images up to this size as float32 is scaled once, not per batch: the
# memory a hand-written loop spends on its float copy of every split, for a smaller step.
SCALED_TRAIN_SPLIT_BYTES = 64 * 2**20


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def repeats_on_retry(error: BaseException) -> bool:
    """Whether running the same trial again would fail the same way: ``train`` is deterministic for
    a config and seed, so a diverged loss diverges again, a config the data set, the model or a
    loss refuses (ValueError, TypeError, LookupError) is refused again, and so is one that runs out
    of its GPU memory cap (DeviceOutOfMemory, a ValueError). Other errors (the host out of memory,
    a file system gone for a moment, a GPU that ran out before the trial's cap because other
    processes held memory the cap allowed it) may pass on a retry."""
    if isinstance(error, DeviceOutOfMemory):
        return not error.others_held
    return isinstance(error, (TrainingDiverged, ValueError, TypeError, LookupError))


def train(
    config: TrialConfig | Mapping[str, Any],
    *,
    report: Callable[[dict[str, float | str]], None],
    checkpoint_dir: str | os.PathLike[str] | None = None,
    data: MultiheadDataset | None = None,
    gpu_fraction: float | None = None,
) -> dict[str, float]:
    """Train a trial and return the final metrics: test/... of the best-on-validation weights,
    the validation metrics of that epoch, ``best/<objective>``, ``best_epoch`` and ``epoch``.

    ``report(metrics)`` is called once per epoch, after ``checkpoint_dir/checkpoint.pt`` is written;
    a checkpoint found there at the start is resumed, bit for bit on CPU with the same
    ``train.threads``. ``train.threads`` and ``train.device`` may change on resumption, but then the
    run is no longer bit-identical to an uninterrupted one (floating-point rounding differs).
    The first report of a call also says, in strings, what the trial trains on (``device/type``,
    ``device/name``, ``device/gpu_id``, ``device/amp``); on CUDA every report has ``gpu/...`` figures.

    ``data``: the data set of ``cfg.data``, already loaded (a search hands it to its trials through
    Ray's object store); None: loaded here. ``gpu_fraction``: the share of a GPU Ray gave the trial
    (0: none; None: not run by Ray); see ``trainables.device.place``.
    """
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_flat(config)
    placement = placement_module.place(cfg.train.device, gpu_fraction=gpu_fraction)
    # The whole trial: moving the model, the data set or a checkpoint's weights to the GPU may run
    # out of its memory as well as a training step.
    with _torch_threads(cfg.train.threads), out_of_memory_as_failure(placement):
        return _train(cfg, placement=placement, report=report, checkpoint_dir=checkpoint_dir, data=data)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's threads set to ``threads`` (None: as they are) while a trial trains: a process
    that trains more than once (a notebook, a reused trial worker) gets torch's own default back
    where a config says None, and the thread count changes a trial's floats."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(
    cfg: TrialConfig,
    *,
    report: Callable[[dict[str, float | str]], None],
    checkpoint_dir: str | os.PathLike[str] | None,
    data: MultiheadDataset | None,
    placement: placement_module.Placement,
) -> dict[str, float]:
    tc = cfg.train
    device = placement.device
    amp = placement_module.amp_dtype(tc.amp, device)
    seed_everything(tc.seed)

    data = as_tensors(load_dataset(cfg.data) if data is None else data)
    heads = trained_heads(cfg, data.heads)
    data = replace(data, train=_only(data.train, heads), val=_only(data.val, heads), test=_only(data.test, heads))
    _check_labels(data, heads)
    if placement_module.keeps_resident(_resident_tensors(data), placement):
        data = replace(data, train=_to_device(data.train, device), val=_to_device(data.val, device),
                       test=_to_device(data.test, device))
    data = replace(data, train=scaled_once(data.train, max_bytes=SCALED_TRAIN_SPLIT_BYTES))
    presenter = _presenter(cfg).on(device)
    objective = cfg.objective.metric
    better = (lambda new, old: new > old) if cfg.objective.mode == "max" else (lambda new, old: new < old)

    losses = {name: _head_loss(cfg, name, info) for name, info in heads.items()}
    for loss in losses.values():
        loss.check_targets = False  # _check_labels did it once; per step it would sync the GPU
        loss.empty_batches = not presenter.keeps_a_target
    model = build_model(
        cfg.model.kind,
        input_shape=data.input_shape,
        head_outputs={name: type(loss).outputs(heads[name].num_classes) for name, loss in losses.items()},
        **cfg.model.params,
    ).to(device)
    energy = EnergyLoss(p=cfg.energy.p) if cfg.energy_weight > 0 else None
    criterion = MultiHeadLoss(
        losses=losses,
        weights={name: cfg.heads[name].weight for name in heads},
        energy=energy,
        energy_weight=cfg.energy_weight,
    ).to(device)
    # The fused kernel updates every parameter in one op instead of about ten per tensor, the same
    # step to rounding: a small model trains 1.26x faster on the CPU (bench/trainable.py).
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                  fused=device.type in FUSED_ADAMW_DEVICES)
    # fp16 needs the loss scaled against gradient underflow; bf16 has float32's exponent range.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    batch_rng = torch.Generator().manual_seed(tc.seed)

    flat = cfg.to_flat()
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    # Hooks start from the trial's beginning; a checkpoint then restores what they keep.
    hooks = train_hooks.build_hooks(cfg)
    train_hooks.start(hooks, model=model, optimizer=optimizer, criterion=criterion)
    progress = Progress()
    if path is not None and path.exists():
        progress = load_checkpoint(path, flat, model=model, optimizer=optimizer, scaler=scaler, batch_rng=batch_rng,
                                   hooks=hooks, device=device)
        progress.best_state = {k: v.to(device) for k, v in progress.best_state.items()}

    def evaluate(split: Split, name: str) -> dict[str, float]:
        return _evaluate(model, losses, split, heads, split_name=name, presenter=presenter, energy_p=cfg.energy.p,
                         amp=amp, device=device, train_batch_size=tc.batch_size)

    first = placement_module.device_report(placement, amp)  # once per call: a resumed trial may have moved
    monitor = GpuMonitor(device)
    while _trains_on(progress, tc):
        epoch = progress.epoch + 1
        start = perf_counter()
        monitor.start_epoch()
        with energy.register(model) if energy is not None else nullcontext():
            train_losses = _train_epoch(
                model, criterion, optimizer, scaler, data.train, presenter,
                batch_size=tc.batch_size, batch_rng=batch_rng, grad_clip=tc.grad_clip, amp=amp, epoch=epoch,
                device=device, on_step=monitor.tick if monitor.sampling else None,
            )  # fmt: skip
        train_time = perf_counter() - start
        val = evaluate(data.val, "val")
        # before the checkpoint: it keeps their effect
        hooked = train_hooks.epoch_end(hooks, epoch=epoch, metrics={
            **val, **{f"train/{key}": v for key, v in train_losses.items()}})

        value = val[objective]
        if progress.best_value is None or better(value, progress.best_value):
            progress.best_value, progress.best_epoch, progress.best_metrics = value, epoch, val
            progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            progress.bad_epochs = 0
        else:
            progress.bad_epochs += 1
        progress.epoch = epoch

        alarms = _new_alarms(progress, val["val/energy"], train_losses) if energy is not None else {}

        if path is not None:
            save_checkpoint(path, flat, progress, model=model, optimizer=optimizer, scaler=scaler,
                            batch_rng=batch_rng, hooks=train_hooks.states(hooks), device=device)
        report(
            {
                "epoch": epoch,
                **val,
                **hooked,
                **{f"train/{key}": v for key, v in train_losses.items()},
                "epoch_time_s": perf_counter() - start,
                "samples_per_s": len(data.train) / train_time,
                f"best/{objective}": progress.best_value,
                BEST_EPOCH_KEY: progress.best_epoch,
                LAST_EPOCH_KEY: float(not _trains_on(progress, tc)),
                **monitor.epoch_metrics(),
                **first,
                **{f"{ALARM_PREFIX}{name}": text for name, text in alarms.items()},
            }
        )
        first = {}

    model.load_state_dict(progress.best_state)
    return {
        "epoch": progress.epoch,
        "best_epoch": progress.best_epoch,
        f"best/{objective}": progress.best_value,
        **progress.best_metrics,
        **evaluate(data.test, "test"),
    }


def _head_loss(cfg: TrialConfig, head: str, info: HeadInfo) -> nn.Module:
    """The head's loss module; a parameter it refuses named by its key (heads.<head>.<loss>.<name>):
    the bare name is ambiguous where two heads have an ``alpha``."""
    loss = cfg.heads[head].loss
    try:
        return build_loss(loss, num_classes=info.num_classes, **cfg.heads[head].params)
    except SettingError as error:
        raise SettingError(str(FlatKey((HEADS, head), error.key, option=loss)), error.rule, error.value) from None


def _trains_on(progress: Progress, tc: TrainConfig) -> bool:
    """Whether another epoch follows: neither the epochs nor the patience have run out."""
    return progress.epoch < tc.epochs and progress.bad_epochs < tc.patience


def _presenter(cfg: TrialConfig) -> Presenter:
    """How the trial's model sees a batch: a recurrent kind over the ``temporal`` section's steps
    (warning for every stimulus chunk its reaction time masks wholly); a static one in one step."""
    if not is_temporal(cfg.model.kind):
        if cfg.temporal.dt != TemporalConfig.dt:  # it would change nothing but the trial's record
            raise SettingError("temporal.dt", f"{TemporalConfig.dt} with model.kind {cfg.model.kind} (a static model "
                               "has no time steps)", cfg.temporal.dt)
        if not cfg.temporal.is_static:
            raise ValueError(f"temporal.n_timesteps must be 1 with model.kind {cfg.model.kind} (a static model sees "
                             f"one step; a recurrent kind runs over timesteps), but got {cfg.temporal.n_timesteps}")
        return Presenter()
    return Presenter(presented=tuple(c == "1" for c in cfg.temporal.steps), supervised=tuple(cfg.temporal.supervised()),
                     dt=cfg.temporal.dt)


def _new_alarms(progress: Progress, energy: float, train_losses: Mapping[str, float]) -> dict[str, str]:
    """The energy alarms this epoch raises for the first time (kept in ``progress``), each also a warning."""
    progress.energies.append(energy)
    raised = energy_alarms(energies=progress.energies, weighted=train_losses["loss/energy_weighted"],
                           task=train_losses["loss/task"])
    new = {name: text for name, text in raised.items() if name not in progress.alarms}
    for name, text in new.items():
        progress.alarms.append(name)
        warnings.warn(f"{text} (epoch {progress.epoch})", RuntimeWarning, stacklevel=3)
    return new


def _train_epoch(
    model: nn.Module,
    criterion: MultiHeadLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    split: Split,
    presenter: Presenter,
    *,
    batch_size: int,
    batch_rng: torch.Generator,
    grad_clip: float,
    amp: torch.dtype | None,
    epoch: int,
    device: torch.device,
    on_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One pass over ``split``; returns the epoch means of the loss breakdown, each step's
    weighted by its batch size (a smaller last batch counts for its samples, as in an evaluation's
    means). ``amp``: the autocast dtype (None: float32); ``on_step``: called after every step.

    The breakdown stays on the device (its 0-dim tensors, kept per step and stacked into a table
    after the epoch), so the loop never waits for the device; NaN/inf is found from that table. A split already on the device
    yields device batches; one in host memory is copied batch by batch.
    """
    model.train()
    rows: list[tuple[Tensor, ...]] = []
    sizes: list[int] = []
    keys: list[str] = []
    # Per-step overhead matters for small models: no autocast context without AMP, no host-to-device
    # copies of batches already on the device, and the breakdown stacked once per epoch, not per step.
    cast = torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext()
    for x, y in iterate_batches(split, batch_size=batch_size, shuffle=True, generator=batch_rng):
        if x.device != device:
            x = x.to(device, non_blocking=True)
            y = {name: t.to(device, non_blocking=True) for name, t in y.items()}
        with cast:
            outputs, targets = presenter.for_loss(model, x, y)
        # The loss outside autocast, on float32 outputs (a plugin's loss too): under autocast its
        # matmuls (supcon's similarities, the expected class) would run in 16 bits again.
        if amp is not None:
            outputs = {name: out.float() for name, out in outputs.items()}
        total, breakdown = criterion(outputs, targets)
        _clear_grads(optimizer)
        criterion.backward(total, scale=scaler.scale)
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        keys = list(breakdown)
        rows.append(tuple(breakdown.values()))
        sizes.append(len(x))
        if on_step is not None:
            on_step()
    table = torch.stack([torch.stack(column) for column in zip(*rows)], dim=1)
    totals = table[:, keys.index("loss/total")]
    bad = (~torch.isfinite(totals)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingDiverged(
            f"training loss must stay finite, but got {totals[step].item()} at epoch {epoch}, step {step + 1}"
        )
    weights = torch.tensor(sizes, dtype=table.dtype, device=table.device) / len(split)
    return dict(zip(keys, (weights @ table).tolist()))


def _clear_grads(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)`` without its profiler range: that call takes 9 us
    more, about 2 % of a step of the digits MLP (bench/trainable.py)."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = None


def trained_heads(cfg: TrialConfig, available: Mapping[str, HeadInfo]) -> dict[str, HeadInfo]:
    """The heads ``cfg`` trains, in the data set's order (the order of the config's keys must not
    change the model's initialisation, so a trial config written in any key order reproduces the
    trial), checked against the data set's heads ``available`` (``describe_dataset`` gives them
    without loading it) with the objective and every head's loss: a ValueError names what does
    not fit. A config given whole (``search train``) was never validated against its data set."""
    unknown = sorted(set(cfg.heads) - set(available))
    if unknown:
        raise SettingError(HEADS, f"heads of the data set {sorted(available)}", unknown)
    heads = {name: info for name, info in available.items() if name in cfg.heads}
    valid_objectives = metric_names(heads, split="val", temporal=is_temporal(cfg.model.kind))
    if cfg.objective.metric not in valid_objectives:
        raise SettingError("objective.metric", f"one of {valid_objectives}", cfg.objective.metric)
    for name, info in heads.items():
        check_fits_head(cfg.heads[name].loss, num_classes=info.num_classes, ordinal=info.ordinal, head=name,
                        key=f"{HEADS}.{name}.{HEAD_LOSS}")
    return heads


def _only(split: Split, heads: Mapping[str, HeadInfo]) -> Split:
    """The split with the labels of the trained heads only: a space may train a subset of the heads."""
    return replace(split, labels={name: split.labels[name] for name in heads})


def _check_labels(data: MultiheadDataset, heads: Mapping[str, HeadInfo]) -> None:
    """Every label of a trained head must be a class index: checked once here, so the losses can
    skip their per-step check (a GPU sync each)."""
    for split_name in ("train", "val", "test"):
        split = getattr(data, split_name)
        for name, info in heads.items():
            labels = split.labels[name]
            bad = (labels < 0) | (labels >= info.num_classes)
            if bool(bad.any()):
                raise ValueError(f"{split_name} labels of head {name!r} must lie in [0, {info.num_classes - 1}], "
                                 f"but got {labels[bad][:5].tolist()}")


def _resident_tensors(data: MultiheadDataset) -> list[Tensor]:
    """The data set's tensors as they stay on a GPU: the training images as ``scaled_once`` leaves
    them (float32 takes 4x the bytes of uint8), sized on the meta device without a copy."""
    train = scaled_once(replace(data.train, images=data.train.images.to("meta")), max_bytes=SCALED_TRAIN_SPLIT_BYTES)
    return [t for split in (train, data.val, data.test) for t in (split.images, *split.labels.values())]


def _to_device(split: Split, device: torch.device) -> Split:
    return Split(images=split.images.to(device), labels={name: t.to(device) for name, t in split.labels.items()})

