"""Value types shared by every data set: head descriptions, the data spec, splits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from trainables.settings import Rule, SettingError, check_fields

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


# Data set kinds by name, filled by ``_registry`` (and by plugins): the members of ``data.kind``.
DATASETS: dict[str, Any] = {}


class DataSettingError(DataError, SettingError):
    """A data setting a data set refuses (``key``, ``rule``, ``value`` as attributes)."""


@dataclass(frozen=True)
class DataSpec:
    """Which data set to load and how to split it: the ``data`` section of a trial.

    ``val_fraction`` of the training pool becomes the validation split (seeded, stratified when
    possible); ``limit`` keeps a seeded subset of at most that many samples of the training pool
    and of the test split; ``labels`` picks the thickness/smoothness flavour of digits and mnist.
    ``seed`` seeds the validation carve-out, the limit subset and the label cuts: apart from
    train.seed, so trials with different training seeds are scored on the same validation samples.
    Nothing here may be searched: one data set per search.
    """

    kind: Annotated[str, Rule(members=DATASETS)] = "vimh"
    path: str | None = None
    val_fraction: Annotated[float, Rule(minimum=0.0, maximum=1.0, min_open=True, max_open=True)] = 0.1
    limit: Annotated[int | None, Rule(minimum=2)] = None
    labels: Literal["measured", "seed_map"] = "measured"
    seed: Annotated[int, Rule(minimum=0)] = 0

    def __post_init__(self) -> None:
        check_fields(self, "data", error=DataSettingError)
        # the pool is at most `limit`: where even that keeps no training sample, no trial can train
        if self.limit is not None and self.limit - validation_count(self.limit, self.val_fraction) < 1:
            raise DataSettingError("data.val_fraction", f"a fraction that leaves a training sample of the at most "
                                   f"data.limit={self.limit} samples of the pool", self.val_fraction)


def validation_count(pool: int, val_fraction: float) -> int:
    """How many samples of a training pool of ``pool`` the validation split takes."""
    return max(1, round(val_fraction * pool))


@dataclass
class Split:
    """Images [N, C, H, W] (uint8, or float in [0, 1]) and labels head -> int64 [N]: NumPy arrays
    as the data sets load them, torch tensors once the trainer took them (``trainables.train``)."""

    images: np.ndarray
    labels: dict[str, np.ndarray]

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
