"""Value types shared by every data set: head descriptions, the data spec, splits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor

LABEL_FLAVOURS = ("measured", "seed_map")
# Head names become parts of flat trial-config keys ("heads.<head>.loss"), so no dots or spaces.
_HEAD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DataError(ValueError):
    """Every user-facing data problem: missing files, corrupt files, bad specs."""


@dataclass(frozen=True)
class HeadInfo:
    """One prediction head of a data set.

    ``ordinal`` marks quantised continuous or ordered targets (distance between classes is
    meaningful); ``unit_range`` is the (min, max) of the parameter in its own units when known.
    """

    name: str
    num_classes: int
    ordinal: bool
    param_name: str
    unit_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not _HEAD_NAME.match(self.name):
            raise DataError(f"head name must be an identifier (letters, digits, _), but got {self.name!r}")
        if self.num_classes < 2:
            raise DataError(f"head {self.name}: num_classes must be >= 2, but got {self.num_classes}")
        if self.unit_range is not None and not self.unit_range[0] < self.unit_range[1]:
            raise DataError(f"head {self.name}: unit_range must have min < max, but got {self.unit_range}")


@dataclass(frozen=True)
class DataSpec:
    """Which data set to load and how to split it.

    ``val_fraction`` of the training pool becomes the validation split (seeded, stratified when
    possible); ``limit`` keeps a seeded subset of at most that many samples of the training pool
    and of the test split; ``labels`` picks the thickness/smoothness flavour of digits and mnist.
    """

    kind: str = "vimh"
    path: str | None = None
    val_fraction: float = 0.1
    limit: int | None = None
    labels: str = "measured"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise DataError(f"data.kind must be a non-empty string, but got {self.kind!r}")
        if self.path is not None and not isinstance(self.path, str):
            raise DataError(f"data.path must be a string or null, but got {self.path!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0.0 < self.val_fraction < 1.0:
            raise DataError(f"data.val_fraction must be a number in (0, 1), but got {self.val_fraction!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 2):
            raise DataError(f"data.limit must be null or an integer >= 2, but got {self.limit!r}")
        if self.labels not in LABEL_FLAVOURS:
            raise DataError(f"data.labels must be one of {list(LABEL_FLAVOURS)}, but got {self.labels!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DataError(f"data.seed must be an integer >= 0, but got {self.seed!r}")


@dataclass
class Split:
    """Images [N, C, H, W] (uint8, or float in [0, 1]) and labels head -> int64 [N]."""

    images: Tensor
    labels: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class MultiheadDataset:
    """Train / val / test splits in memory plus the description of every head."""

    train: Split
    val: Split
    test: Split
    heads: dict[str, HeadInfo]
    input_shape: tuple[int, int, int]
