"""The data set kinds behind ``load_dataset`` and ``describe_dataset``."""

from __future__ import annotations

import errno
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._cifar import describe_cifar, load_cifar
from ._digits_mnist import describe_digits, load_digits_dataset, load_mnist_dataset
from ._types import DATASETS, DataError, DataSpec, HeadInfo, MultiheadDataset
from ._vimh_dataset import describe_vimh, load_vimh, prepare_vimh


Progress = Callable[[int, int], None]  # (done, total) of a long preparation


@dataclass(frozen=True)
class DatasetKind:
    """How to load a kind and how to describe its heads cheaply (no generation, no full read);
    ``prepare``: a kind that builds its files on first use does it there, reporting progress."""

    load: Callable[[DataSpec], MultiheadDataset]
    describe: Callable[[DataSpec], dict[str, HeadInfo]]
    prepare: Callable[[DataSpec, Progress | None], None] | None = None
    reads_path: bool = True  # False: a kind shipped in a package, which a data.path would not change
    # True: a kind whose style labels data.labels chooses (measured or seed_map)
    reads_labels: bool = False


DATASETS.update(
    vimh=DatasetKind(load=load_vimh, describe=describe_vimh, prepare=prepare_vimh),
    digits=DatasetKind(load=load_digits_dataset, describe=describe_digits, reads_path=False, reads_labels=True),
    mnist=DatasetKind(load=load_mnist_dataset, describe=describe_digits, reads_labels=True),
    cifar10=DatasetKind(load=load_cifar, describe=describe_cifar),
)


def _kind(spec: DataSpec) -> DatasetKind:
    return DATASETS[spec.kind]  # DataSpec checked the name


def prepare_dataset(spec: DataSpec, *, progress: Progress | None = None) -> None:
    """Build the files of a data set generated on first use, reporting ``progress(done, total)``;
    nothing for other kinds or when the files are there."""
    kind = _kind(spec)
    if kind.prepare is not None:
        kind.prepare(spec, progress)


def load_dataset(spec: DataSpec, *, progress: Progress | None = None) -> MultiheadDataset:
    """Load ``spec`` into memory: train / val (carved from training data) / test splits plus heads.
    A data set generated on first use reports its progress to ``progress(done, total)``."""
    prepare_dataset(spec, progress=progress)
    data = _reading(spec, _kind(spec).load)
    # An empty split would end a trial only after its training, when it is evaluated.
    empty = [name for name in ("train", "val", "test") if len(getattr(data, name)) == 0]
    if empty:
        raise DataError(f"data.kind {spec.kind}: every split (train, val, test) must hold at least one sample, "
                        f"but got none in {', '.join(empty)}")
    return data


def describe_dataset(spec: DataSpec) -> dict[str, HeadInfo]:
    """The heads of ``spec`` without loading it (vimh reads only the JSON metadata)."""
    return _reading(spec, _kind(spec).describe)


# What a user's malformed files make a loader raise beyond its own checks (a ragged array, a
# metadata field of another type, a folder it may not enter, nesting too deep for the JSON parser).
_MALFORMED = (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, zlib.error)
# OS errors a later try may not meet (a network file system's hiccup, no file handle free): not the files' fault.
_MAY_PASS = {errno.EIO, errno.ESTALE, errno.EAGAIN, errno.EINTR, errno.EMFILE, errno.ENFILE}


def _reading(spec: DataSpec, read: Callable[[DataSpec], Any]) -> Any:
    """``read(spec)``, its failures on the user's files (``data.path``) as a DataError naming them."""
    if spec.path is None:  # no user files: a failure is the loader's own, as it is
        return read(spec)
    try:
        return read(spec)
    except DataError:
        raise
    except _MALFORMED as exc:
        if isinstance(exc, OSError) and exc.errno in _MAY_PASS:
            raise
        raise DataError(f"data.kind {spec.kind} at {spec.path}: the files must be readable {spec.kind} data, but "
                        f"got {type(exc).__name__}: {exc}") from exc
