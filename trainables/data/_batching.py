"""The trainer's side of a data set: its arrays as tensors, and mini-batches by index permutation
over them (no DataLoader, no worker processes)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ._types import MultiheadDataset, Split


def as_tensors(data: MultiheadDataset) -> MultiheadDataset:
    """The data set's arrays as CPU tensors that share their memory (a split already of tensors
    is kept). Arrays from Ray's object store are read-only, which torch would warn about; nothing
    in training writes to a split (batches are new tensors, or views that only the model reads)."""

    return replace(data, train=_tensor_split(data.train), val=_tensor_split(data.val), test=_tensor_split(data.test))


def _tensor_split(split: Split) -> Split:
    def tensor(values: Any) -> Tensor:
        if isinstance(values, Tensor):
            return values
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(values)

    return Split(images=tensor(split.images), labels={name: tensor(v) for name, v in split.labels.items()})


def iterate_batches(split: Split, *, batch_size: int, shuffle: bool,
                    generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Yield (images float32 in [0, 1], labels head -> int64) batches covering every index once.

    uint8 images are scaled by 1/255 per batch, so the split stays compact in memory; float images
    are taken as already in [0, 1] (float32 ones are handed out without a copy). The last batch
    may be smaller. With ``shuffle`` the order is a fresh ``torch.randperm`` drawn on the CPU from
    ``generator`` (the global torch RNG when None), so a seed gives the same order on every device.

    Batches are cut where the split's tensors live: a split moved to a GPU once yields GPU batches
    (gathered and scaled there), with no host-to-device copy per step.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, but got {batch_size!r}")
    split = _tensor_split(split)  # a split as a data set loads it (NumPy) works too, without a copy
    count = len(split)
    # one copy of the whole permutation per epoch (a no-op for a split on the CPU)
    order = torch.randperm(count, generator=generator).to(split.images.device) if shuffle else None
    for start in range(0, count, batch_size):
        if order is None:
            # contiguous slices are views: no gather needed
            images = split.images[start:start + batch_size]
            labels = {name: values[start:start + batch_size] for name, values in split.labels.items()}
        else:
            index = order[start:start + batch_size]
            images = split.images.index_select(0, index)
            labels = {name: values.index_select(0, index.to(values.device)) for name, values in split.labels.items()}
        yield _as_float(images), labels


def scaled_once(split: Split, *, max_bytes: int) -> Split:
    """The split with its uint8 images scaled to float32 in [0, 1] once, when that copy takes at
    most ``max_bytes``; otherwise (or with float images) the split as it is. ``iterate_batches``
    then cuts float batches without a per-batch scaling kernel (4 us, about 1 % of a step of the
    digits MLP); the values are the same bit for bit (the same division, done once)."""
    if split.images.dtype != torch.uint8 or split.images.nelement() * 4 > max_bytes:
        return split
    return replace(split, images=_as_float(split.images))


def _as_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        # One kernel: integer / float scalar computes in the default float dtype, which
        # is float32 unless the caller changed it (then the cast below keeps the contract).
        return images.div(255.0).to(torch.float32)
    return images.to(torch.float32)
