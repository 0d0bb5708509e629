"""Seeded, stratified-when-possible subsets: the limit subset and the validation carve-out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset, Split, validation_count

# Distinct streams per purpose so changing `limit` does not reshuffle which samples are validation
# in an unrelated way, and the test subset never depends on the validation choice.
_SALT_LIMIT_POOL, _SALT_LIMIT_TEST, _SALT_VAL = 11, 12, 13


def stratified_choice(size: int, *, count: int, strata: np.ndarray | None,
                      rng: np.random.Generator) -> np.ndarray:
    """Pick ``count`` of the indices 0..size-1 at random, keeping the class proportions of ``strata``.

    Each class c of n_c members gets floor(count * n_c / size) picks, and the remaining picks go to
    the classes with the largest remainders (exact integer arithmetic, random tie-break). When
    there are more classes than picks, proportions cannot be kept and the pick is plain random.
    Returns the picked indices sorted ascending.
    """
    if strata is not None and len(strata) != size:
        raise ValueError(f"strata must have {size} entries, but got {len(strata)}")
    if not 0 <= count <= size:
        raise ValueError(f"count must be in [0, {size}], but got {count}")
    classes = None if strata is None else np.unique(strata, return_inverse=True, return_counts=True)
    if classes is None or len(classes[0]) > count:
        return np.sort(rng.permutation(size)[:count])
    _, inverse, counts = classes
    numer = counts.astype(np.int64) * count
    quota, remainder = numer // size, numer % size
    missing = count - int(quota.sum())
    # lexsort: last key is primary -> largest remainder first, random among equal remainders
    order = np.lexsort((rng.random(len(counts)), -remainder))
    quota[order[:missing]] += 1
    perm = rng.permutation(size)
    grouped = perm[np.argsort(inverse[perm], kind="stable")]
    starts = np.cumsum(counts) - counts
    cls = inverse[grouped]
    rank = np.arange(size) - starts[cls]
    return np.sort(grouped[rank < quota[cls]])


@dataclass(frozen=True)
class SplitPlan:
    """Row indices into the training pool (train, val) and into the test source (test)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def plan_splits(*, pool_strata: np.ndarray | None, test_strata: np.ndarray | None,
                pool_size: int, test_size: int, spec: DataSpec) -> SplitPlan:
    """Apply ``spec.limit`` to pool and test, then carve ``spec.val_fraction`` of the pool as val.

    ``*_strata`` are the class labels to stratify on (None: plain random). The test split is only
    ever subset by ``limit``, never mixed with the pool, so it stays out of model selection.
    """
    pool = np.arange(pool_size)
    test = np.arange(test_size)
    if spec.limit is not None:
        if pool_size > spec.limit:
            rng = np.random.default_rng([spec.seed, _SALT_LIMIT_POOL])
            pool = stratified_choice(pool_size, count=spec.limit, strata=pool_strata, rng=rng)
        if test_size > spec.limit:
            rng = np.random.default_rng([spec.seed, _SALT_LIMIT_TEST])
            test = stratified_choice(test_size, count=spec.limit, strata=test_strata, rng=rng)
    n_val = validation_count(len(pool), spec.val_fraction)
    if len(pool) - n_val < 1:
        raise DataError(f"the training pool must keep >= 1 sample after carving validation "
                        f"(val_fraction={spec.val_fraction}), but got a pool of {len(pool)}")
    rng = np.random.default_rng([spec.seed, _SALT_VAL])
    strata = None if pool_strata is None else pool_strata[pool]
    in_val = np.zeros(len(pool), dtype=bool)
    in_val[stratified_choice(len(pool), count=n_val, strata=strata, rng=rng)] = True
    return SplitPlan(train=pool[~in_val], val=pool[in_val], test=test)


def take(images: np.ndarray, labels: dict[str, np.ndarray], rows: np.ndarray) -> Split:
    """Copy the given rows into a contiguous in-memory Split (uint8 images, int64 labels)."""
    return Split(
        images=np.ascontiguousarray(images[rows]),
        labels={name: np.ascontiguousarray(values[rows], dtype=np.int64) for name, values in labels.items()},
    )


def assemble(*, pool: tuple[np.ndarray, dict[str, np.ndarray]], test: tuple[np.ndarray, dict[str, np.ndarray]],
             plan: SplitPlan, heads: dict[str, HeadInfo]) -> MultiheadDataset:
    """Cut the planned rows out of the pool (train, val) and the test source into arrays."""
    train = take(*pool, plan.train)
    return MultiheadDataset(train=train, val=take(*pool, plan.val), test=take(*test, plan.test), heads=heads,
                            input_shape=tuple(int(d) for d in train.images.shape[1:]))
