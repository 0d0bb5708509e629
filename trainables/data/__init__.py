"""Multihead data sets held in memory: ``load_dataset(spec)`` -> train / val / test NumPy arrays +
heads (the trainer makes tensors of them; the search driver loads a data set without torch).

Kinds: ``vimh`` (VIMH files; the default data set is synthesised on first use), ``digits``
(scikit-learn), ``mnist`` (IDX files), ``cifar10`` (python batches). VIMH reading, writing and
generation live in ``trainables.data.vimh``. ``as_tensors``, ``iterate_batches`` and
``scaled_once`` (torch) are imported when first used.
"""

from typing import Any

from ._registry import DATASETS, DatasetKind, describe_dataset, load_dataset, prepare_dataset
from ._split import stratified_choice
from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset, Split
from ._vimh_synth import DEFAULT_VIMH_PATH

__all__ = [
    "DATASETS",
    "DEFAULT_VIMH_PATH",
    "DataError",
    "DataSpec",
    "DatasetKind",
    "HeadInfo",
    "MultiheadDataset",
    "Split",
    "as_tensors",
    "describe_dataset",
    "iterate_batches",
    "load_dataset",
    "prepare_dataset",
    "scaled_once",
    "stratified_choice",
]


def __getattr__(name: str) -> Any:
    if name not in ("as_tensors", "iterate_batches", "scaled_once"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _batching

    return getattr(_batching, name)
