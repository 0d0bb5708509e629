"""Multihead data sets held in memory: ``load_dataset(spec)`` -> train / val / test tensors + heads.

Kinds: ``vimh`` (VIMH files; the default data set is synthesised on first use), ``digits``
(scikit-learn), ``mnist`` (IDX files), ``cifar10`` (python batches). VIMH reading, writing and
generation live in ``trainables.data.vimh``.
"""

from ._batching import iterate_batches
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
    "describe_dataset",
    "iterate_batches",
    "load_dataset",
    "prepare_dataset",
    "stratified_choice",
]
