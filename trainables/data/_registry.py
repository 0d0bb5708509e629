"""The data set kinds behind ``load_dataset`` and ``describe_dataset``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._cifar import describe_cifar, load_cifar
from ._digits_mnist import describe_digits, load_digits_dataset, load_mnist_dataset
from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset
from ._vimh_dataset import describe_vimh, load_vimh


@dataclass(frozen=True)
class DatasetKind:
    """How to load a kind and how to describe its heads cheaply (no generation, no full read)."""

    load: Callable[[DataSpec], MultiheadDataset]
    describe: Callable[[DataSpec], dict[str, HeadInfo]]


DATASETS: dict[str, DatasetKind] = {
    "vimh": DatasetKind(load=load_vimh, describe=describe_vimh),
    "digits": DatasetKind(load=load_digits_dataset, describe=describe_digits),
    "mnist": DatasetKind(load=load_mnist_dataset, describe=describe_digits),
    "cifar10": DatasetKind(load=load_cifar, describe=describe_cifar),
}


def _kind(spec: DataSpec) -> DatasetKind:
    try:
        return DATASETS[spec.kind]
    except KeyError:
        raise DataError(f"data.kind must be one of {sorted(DATASETS)}, but got {spec.kind!r}") from None


def load_dataset(spec: DataSpec) -> MultiheadDataset:
    """Load ``spec`` into memory: train / val (carved from training data) / test splits plus heads."""
    return _kind(spec).load(spec)


def describe_dataset(spec: DataSpec) -> dict[str, HeadInfo]:
    """The heads of ``spec`` without loading it (vimh reads only the JSON metadata)."""
    return _kind(spec).describe(spec)
