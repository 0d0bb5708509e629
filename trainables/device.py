"""Where a trial trains and what it may take there: the device, its share of the GPU's memory, the
mixed precision, and what the trial reports about them.

``place`` picks the device. ``train.device: auto`` trains on CUDA when CUDA works, else on the
CPU; a trial that was given a GPU (``gpu_fraction``, from Ray) but finds CUDA unusable (a CPU
build of torch, a logical GPU of ``ray start --num-gpus`` on a machine without one, a broken
driver) says so in a RuntimeWarning instead of training slowly in silence. A trial given a
fraction f < 1 of a GPU shares it with other trials: it caps its own allocations at f of the GPU's
memory, decides whether its data set stays on the GPU against that cap (``resident_budget``), and
an out-of-memory error becomes ``DeviceOutOfMemory``, a ValueError, because the same config under
the same cap fails the same way on a retry (unless other processes held what the cap allowed).
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "RESIDENT_SHARE",
    "DeviceOutOfMemory",
    "GpuMonitor",
    "Placement",
    "amp_dtype",
    "device_report",
    "keeps_resident",
    "out_of_memory_as_failure",
    "held_by_others_bytes",
    "peak_allocated_bytes",
    "place",
    "resident_budget",
]

MIB = 1 << 20
# A GPU keeps the splits resident when they take at most this share of the memory the trial can
# still allocate, so each step gathers its batch on the device instead of copying it from the host.
RESIDENT_SHARE = 0.25
# torch.cuda.utilization asks NVML, which averages over its own sample period (1/6 s to 1 s):
# sampling more often would cost calls, not add information.
_UTILIZATION_EVERY_S = 0.5
_ADVICE = "raise resources.gpu (a larger share of the GPU per trial, fewer trials on it) or lower train.batch_size"


@dataclass(frozen=True)
class Placement:
    """The device a trial trains on; on CUDA the GPU's memory and the share the trial may use."""

    device: torch.device
    fraction: float | None = None  # the trial's cap as a share of the GPU's memory; None: no cap
    total_bytes: int | None = None  # the GPU's memory; None on the CPU
    name: str = "cpu"  # the GPU's name

    @property
    def cap_bytes(self) -> int | None:
        """What the trial may allocate on its GPU; None on the CPU."""
        if self.total_bytes is None:
            return None
        return int(self.total_bytes * (1.0 if self.fraction is None else self.fraction))


# What the GPU may lack of a trial's cap before other processes count as holding it: the trial's
# own CUDA context (a few hundred MiB, outside its allocator) is used memory the cap does not see.
_OWN_CONTEXT_ALLOWANCE_MB = 1024.0


class DeviceOutOfMemory(ValueError):
    """Training ran out of GPU memory. Training is deterministic for a config, so the same trial
    under the same cap runs out again (a ValueError: ``repeats_on_retry``), unless the GPU itself
    ran out before the cap (``others_held``): other processes held memory the cap still allowed.
    ``fraction`` (None: the whole GPU), ``cap_mb``, ``peak_mb``, ``held_by_others_mb`` (what the cap
    still allowed the trial beyond the GPU's free memory when it ran out: the trial's own CUDA
    context, plus what other processes held; each None where unknown), ``device`` and ``advice``
    (what to change in the space) are attributes."""

    def __init__(self, *, device: str, fraction: float | None, cap_mb: float | None, peak_mb: float | None,
                 held_by_others_mb: float | None = None) -> None:
        self.device, self.fraction, self.cap_mb, self.peak_mb = device, fraction, cap_mb, peak_mb
        self.held_by_others_mb = held_by_others_mb
        self.advice = _ADVICE
        share = f"all of {device}" if fraction is None else f"{fraction:g} of {device} by resources.gpu"
        cap = "" if cap_mb is None else f": {cap_mb:.0f} MiB"
        peak = "an unknown peak" if peak_mb is None else f"a peak of {peak_mb:.0f} MiB allocated"
        hint = ""
        if self.others_held:
            hint = (f" (the GPU ran out {held_by_others_mb:.0f} MiB short of the cap: other processes held it; "
                    "a retry may find it free)")
        super().__init__(f"training must fit in the trial's GPU memory ({share}{cap}), but got out of memory "
                         f"at {peak}{hint}; {_ADVICE}")

    @property
    def others_held(self) -> bool:
        """Whether the GPU ran out before the trial's cap did: other processes (trials of other
        searches, their CUDA contexts, programs outside Ray) held memory the cap still allowed it,
        more than the trial's own context takes."""
        return self.held_by_others_mb is not None and self.held_by_others_mb > _OWN_CONTEXT_ALLOWANCE_MB

    def __reduce__(self) -> tuple:
        # Keyword-only fields: the default pickling (cls(*args)) would fail where Ray ships errors.
        fields = {"device": self.device, "fraction": self.fraction, "cap_mb": self.cap_mb, "peak_mb": self.peak_mb,
                  "held_by_others_mb": self.held_by_others_mb}
        return functools.partial(DeviceOutOfMemory, **fields), ()


def place(setting: str, *, gpu_fraction: float | None) -> Placement:
    """The device for ``train.device`` (auto, cpu, cuda) in a process that Ray gave
    ``gpu_fraction`` of a GPU (None: not run by Ray). ``auto`` given 0 by Ray trains on the CPU:
    Ray (since 2.4x) leaves a zero-GPU worker's CUDA_VISIBLE_DEVICES as the node has it, so its
    GPUs would be visible, unaccounted for and uncapped, all on the first. On CUDA it caps the process's
    allocations at ``gpu_fraction`` of the GPU's memory when that is below 1 (and lifts a cap an
    earlier trial of the same worker process set), and lets cuDNN pick its fastest kernels (a
    trial's shapes are fixed; it makes GPU runs not bit-identical, as they are not anyway)."""
    if gpu_fraction is not None and (isinstance(gpu_fraction, bool) or not isinstance(gpu_fraction, (int, float))
                                     or not math.isfinite(gpu_fraction) or gpu_fraction < 0):
        raise ValueError(f"gpu_fraction must be a number >= 0 or None, but got {gpu_fraction!r}")
    given = bool(gpu_fraction)
    if setting == "cpu" or (setting == "auto" and gpu_fraction == 0):
        return Placement(torch.device("cpu"))
    problem, broken = _cuda_problem()
    if problem is not None:
        if setting == "cuda":
            raise ValueError(f"train.device must be 'cpu' or 'auto' where CUDA is unusable ({problem}), but got 'cuda'")
        if given or broken:
            what = f"was given {gpu_fraction:g} GPU" if given else "found a GPU"
            warnings.warn(f"train.device auto: the trial {what}, but CUDA is unusable ({problem}); "
                          "training on the CPU", RuntimeWarning, stacklevel=3)
        return Placement(torch.device("cpu"))
    device = torch.device("cuda", torch.cuda.current_device())
    fraction = float(gpu_fraction) if given and gpu_fraction < 1 else None
    torch.cuda.set_per_process_memory_fraction(1.0 if fraction is None else fraction, device)
    torch.cuda.reset_peak_memory_stats(device)  # a reused worker's previous trial is not this one's peak
    torch.backends.cudnn.benchmark = True
    return Placement(device, fraction=fraction, total_bytes=torch.cuda.get_device_properties(device).total_memory,
                     name=torch.cuda.get_device_name(device))


def _cuda_problem() -> tuple[str | None, bool]:
    """(why CUDA cannot be used, or None; whether it looked available but failed)."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:  # ROCm builds use torch.cuda too
        return f"torch {torch.__version__} is a build without CUDA", False
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = "unset" if visible is None else repr(visible)
        return f"torch.cuda.is_available() is False; no usable driver or device, CUDA_VISIBLE_DEVICES {shown}", False
    try:
        torch.zeros(1, device="cuda")  # initialises the context: a driver/toolkit mismatch shows here
    except RuntimeError as error:
        return f"a first CUDA allocation failed: {str(error).strip().splitlines()[0]}", True
    return None, False


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (off, fp16, bf16, auto) on ``device``; None: float32.
    auto: bf16 where the GPU has it natively (no gradient scaler needed), else fp16; float32 on the
    CPU. fp16 or bf16 asked for on the CPU warn and train float32."""
    if setting == "off":
        return None
    if device.type != "cuda":
        if setting != "auto":
            warnings.warn(f"train.amp {setting} needs CUDA; training in float32 on the CPU", RuntimeWarning,
                          stacklevel=3)
        return None
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if setting == "bf16" and not native_bf16:
        raise ValueError(f"train.amp must be fp16, auto or off on a GPU without bfloat16 "
                         f"({torch.cuda.get_device_name(device)}), but got 'bf16'")
    return torch.bfloat16 if setting == "bf16" or (setting == "auto" and native_bf16) else torch.float16


def device_report(placement: Placement, amp: torch.dtype | None) -> dict[str, str]:
    """What the trial really trains on, for the driver's MLflow tags (string values, so they never
    pass for metrics). ``device/gpu_id`` is the GPU's index on its machine: Ray shows each trial
    only its own GPU(s) as CUDA index 0, 1, ... through CUDA_VISIBLE_DEVICES, which maps them back."""
    precision = {None: "off", torch.float16: "fp16", torch.bfloat16: "bf16"}[amp]
    if placement.device.type != "cuda":
        return {"device/type": "cpu", "device/name": "cpu", "device/gpu_id": "", "device/amp": precision}
    index = placement.device.index or 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return {"device/type": "cuda", "device/name": placement.name,
            "device/gpu_id": visible[index] if index < len(visible) else str(index), "device/amp": precision}


def resident_budget(*, free: int, total: int, allocated: int, fraction: float | None) -> float:
    """Bytes of data a trial may keep on its GPU: RESIDENT_SHARE of the memory it can still
    allocate. Under a cap that is the cap (``fraction`` of ``total``) less what the trial holds,
    and never more than is free. Trials that start together all see the GPU free: measured
    against free memory alone, each would take a quarter of the whole GPU."""
    room = free if fraction is None else min(free, fraction * total - allocated)
    return max(0.0, RESIDENT_SHARE * room)


def keeps_resident(tensors: Iterable[Tensor], placement: Placement) -> bool:
    """Whether ``tensors`` (a data set's splits) fit ``resident_budget`` on the placement's GPU."""
    if placement.device.type != "cuda":
        return False
    size = sum(t.nelement() * t.element_size() for t in tensors)
    free, total = torch.cuda.mem_get_info(placement.device)
    allocated = torch.cuda.memory_allocated(placement.device)
    return size <= resident_budget(free=free, total=total, allocated=allocated, fraction=placement.fraction)


def peak_allocated_bytes(device: torch.device) -> int | None:
    """The most memory allocated on ``device`` since the epoch began (or the trial, before its
    first epoch: ``place``); None on the CPU."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def held_by_others_bytes(placement: Placement) -> int | None:
    """What the trial's cap still allows it on its GPU beyond the GPU's free memory: the trial's
    own CUDA context (used memory its allocator does not count), plus what other processes hold
    of what the cap leaves to the trial. None on the CPU or where CUDA cannot say (a context
    broken by the error)."""
    if placement.device.type != "cuda" or placement.cap_bytes is None:
        return None
    try:
        free, _ = torch.cuda.mem_get_info(placement.device)
        reserved = torch.cuda.memory_reserved(placement.device)
    except RuntimeError:
        return None
    return placement.cap_bytes - reserved - free


@contextmanager
def out_of_memory_as_failure(placement: Placement) -> Iterator[None]:
    """Turn torch.OutOfMemoryError on a GPU into DeviceOutOfMemory with the cap and the peak. On the
    CPU it stays as it is: host memory is no cap of the trial's and may be free on a retry."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        if placement.total_bytes is None:
            raise
        cap, peak = placement.cap_bytes, peak_allocated_bytes(placement.device)
        held = held_by_others_bytes(placement)
        raise DeviceOutOfMemory(device=placement.name, fraction=placement.fraction,
                                cap_mb=None if cap is None else cap / MIB,
                                peak_mb=None if peak is None else peak / MIB,
                                held_by_others_mb=None if held is None else held / MIB) from error


def _utilization(device: torch.device) -> float | None:
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # no pynvml (or amdsmi), no NVML on this driver: the figure is optional
        return None


class GpuMonitor:
    """Per-epoch GPU figures on CUDA: ``gpu/peak_allocated_mb`` and ``gpu/utilization_pct`` (the
    mean of samples taken from the step loop, at most every 0.5 s, where torch.cuda.utilization
    works: it needs pynvml; the whole device's, which trials packed on it share). Nothing on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.active = device.type == "cuda"
        self.sampling = self.active and _utilization(device) is not None
        self._samples: list[float] = []
        self._next = 0.0

    def start_epoch(self) -> None:
        if self.active:
            torch.cuda.reset_peak_memory_stats(self.device)
            self._samples, self._next = [], 0.0

    def tick(self) -> None:
        """Called once a step; samples the utilisation when it is due."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + _UTILIZATION_EVERY_S
            value = _utilization(self.device)
            if value is not None:
                self._samples.append(value)

    def epoch_metrics(self) -> dict[str, float]:
        if not self.active:
            return {}
        metrics = {"gpu/peak_allocated_mb": torch.cuda.max_memory_allocated(self.device) / MIB}
        if self._samples:
            metrics["gpu/utilization_pct"] = sum(self._samples) / len(self._samples)
        return metrics
