"""A trial's checkpoint: model, optimiser, scaler, RNG states and progress, written atomically.

Read back with ``torch.load(weights_only=True)``: plain containers and tensors only.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainables.config import TrialConfig
from trainables.hooks import load_states
from trainables.settings import RebuiltFromFields

__all__ = ["CheckpointError", "Progress", "load_checkpoint", "save_checkpoint", "seed_everything"]

# Settings an interrupted run may be resumed with changed (say, on another machine). They do not
# change what is trained, but they do change floating-point rounding (reduction order across
# thread counts, CPU vs GPU kernels): the resumed run is bit-identical to an uninterrupted one
# only when these are unchanged too; otherwise it drifts like any rerun on other hardware.
_RESUMABLE_CHANGES = frozenset({"train.threads", "train.device"})


@dataclass
class Progress:
    """Everything besides model/optimiser/RNG state that a resumed trial needs."""

    epoch: int = 0  # completed epochs
    best_value: float | None = None
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0  # epochs since the objective last improved
    energies: list[float] = field(default_factory=list)  # val/energy per epoch, for trainables.energy_alarm
    alarms: list[str] = field(default_factory=list)  # the alarms raised so far: each is raised once


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA generators too


def _rng_state(batch_rng: torch.Generator, device: torch.device) -> dict[str, Any]:
    # Plain containers and tensors only, so torch.load(weights_only=True) reads them back. Of the
    # CUDA generators only the training device's: a CPU trial on a GPU node (whose GPUs Ray leaves
    # visible) would start CUDA to save every GPU's, and a resume seeing fewer GPUs could not set them.
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        "batches": batch_rng.get_state(),
    }


def _set_rng_state(state: Mapping[str, Any], batch_rng: torch.Generator, device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and device.type == "cuda":
        # one state, the device's; a checkpoint of an older version holds one per visible GPU
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_rng_state(cuda[index] if 1 < len(cuda) and index < len(cuda) else cuda[0], device)
    batch_rng.set_state(state["batches"])


def save_checkpoint(
    path: Path,
    flat: Mapping[str, Any],
    progress: Progress,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch_rng: torch.Generator,
    hooks: Mapping[str, Any] | None = None,
    device: torch.device = torch.device("cpu"),
) -> None:
    """Write to a temporary file and rename it, so a crash never leaves a half-written checkpoint.
    ``hooks``: the states of the train loop's hooks by section (``trainables.hooks.states``);
    ``device``: where the model trains (its generator's state is saved with the others)."""
    payload = {
        "hooks": dict(hooks or {}),
        "config": dict(flat),
        "progress": dict(vars(progress)),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": _rng_state(batch_rng, device),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        try:
            torch.save(payload, f)
        except RuntimeError as error:
            # torch's zip writer, closed on its way out of a Ctrl-C, raises its own error about the
            # cut-off archive in the interrupt's place: the interrupt is what happened.
            if isinstance(error.__context__, KeyboardInterrupt):
                raise error.__context__ from None
            raise
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointError(RebuiltFromFields, ValueError):
    """A file at a checkpoint's path (``path``) that is no checkpoint ``save_checkpoint`` wrote:
    ``reason`` says what reading it met."""

    _fields = ("path", "reason")

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: a checkpoint losstune wrote, but got {reason}")
        self.path = path
        self.reason = reason


# what every checkpoint save_checkpoint wrote holds (checkpoints of older versions lack "hooks")
_ABSENT = object()  # a key one of two configs lacks
_PAYLOAD_KEYS = frozenset({"config", "progress", "model", "optimizer", "scaler", "rng"})


def load_checkpoint(
    path: Path,
    flat: Mapping[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch_rng: torch.Generator,
    hooks: Mapping[str, Any] | None = None,
    device: torch.device = torch.device("cpu"),
) -> Progress:
    """Restore a checkpoint into the model, optimiser, scaler, RNGs and ``hooks`` (by section);
    the progress. ``flat``: the trial's config, which must train as the checkpoint's did;
    ``device``: where the model trains."""
    # map_location cpu: RNG states must stay CPU tensors; load_state_dict moves the rest.
    if not path.is_file():
        raise CheckpointError(path, "a folder or other non-file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not _PAYLOAD_KEYS <= set(payload):
            raise ValueError(f"a mapping of {', '.join(sorted(_PAYLOAD_KEYS))}")
    except (OSError, MemoryError):  # reading failed, which may pass (a retried trial reads it again)
        raise
    except Exception as exc:  # noqa: BLE001 - torch's weights-only unpickler meets junk with any error
        raise CheckpointError(path, f"{type(exc).__name__}: {exc}") from None
    # Through the schema, so a checkpoint written under older flat key names compares equal, and
    # with every option's defaults written out: a default spelt out trains the same (it was
    # refused), and a parameter set to None differs from one left at a default that is not None
    # (both read None before).
    with _fitting(path, "a trial config"):
        saved = TrialConfig.from_flat(payload["config"]).to_flat(with_defaults=True)
    flat = TrialConfig.from_flat(flat).to_flat(with_defaults=True)
    changed = sorted(k for k in set(saved) | set(flat)
                     if k not in _RESUMABLE_CHANGES and saved.get(k, _ABSENT) != flat.get(k, _ABSENT))
    if changed:
        raise ValueError(f"a checkpoint must be resumed with the config it was written with, but got changes in {changed}")
    # The same config may still build another model (a data set regenerated at the same path with
    # another image size): a state that does not fit is this error, which a retry would repeat.
    with _fitting(path, "states that fit this trial's model, optimiser and progress"):
        model.load_state_dict(payload["model"])
        state = payload["optimizer"]
        # The step's implementation is the one this run built for its device, not the checkpoint's:
        # a checkpoint of a non-fused AdamW (an older version) would switch it back, and GradScaler
        # hands the step the arguments only a fused one takes.
        for group, current in zip(state["param_groups"], optimizer.param_groups):
            group.update({key: current[key] for key in ("fused", "foreach") if key in current})
        optimizer.load_state_dict(state)
        # A run without fp16 (the CPU, bf16) saves no scaler state; resumed under fp16 on another
        # device (train.device may change), its scaler starts from its initial scale.
        if payload["scaler"]:
            scaler.load_state_dict(payload["scaler"])
        _set_rng_state(payload["rng"], batch_rng, device)
        load_states(hooks or {}, payload.get("hooks", []))
        return Progress(**payload["progress"])


@contextmanager
def _fitting(path: Path, what: str) -> Iterator[None]:
    """Errors of restoring a read checkpoint's parts as ``CheckpointError`` (first line of the
    cause: torch lists every mismatched tensor)."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise  # the states fit; the GPU did not hold them (the trial's DeviceOutOfMemory)
    except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(path, f"{type(exc).__name__} where it should hold {what}: {first}") from None
