"""CIFAR-10 from the "python version" batch files, with heads ``class`` (10) and
``vehicle_or_animal`` (2: 0 vehicle = airplane, automobile, ship, truck; 1 animal).

``spec.path`` is the directory holding data_batch_1 .. data_batch_5 and test_batch (or its parent,
holding cifar-10-batches-py/). Each file is a pickled dict with b"data" (uint8 [N, 3072], per row
1024 red, 1024 green, 1024 blue values of a 32x32 image, i.e. planar CHW) and b"labels"; it is read
with the restricted unpickler, never ``pickle.load``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._safe_pickle import safe_load
from ._split import assemble, plan_splits
from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_VEHICLES = {"airplane", "automobile", "ship", "truck"}
VEHICLE_OR_ANIMAL = np.array([0 if name in _VEHICLES else 1 for name in CLASS_NAMES], dtype=np.int64)
CIFAR_HEADS = {
    "class": HeadInfo(name="class", num_classes=10, ordinal=False, param_name="class"),
    "vehicle_or_animal": HeadInfo(name="vehicle_or_animal", num_classes=2, ordinal=False,
                                  param_name="vehicle_or_animal"),
}
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
_SUBDIR = "cifar-10-batches-py"


def describe_cifar(spec: DataSpec) -> dict[str, HeadInfo]:
    """Static: the heads do not depend on the files."""
    return dict(CIFAR_HEADS)


def _directory(spec: DataSpec) -> Path:
    help_text = (f"cifar10 needs {', '.join(TRAIN_FILES)} and {TEST_FILE} (the python version: download "
                 f"cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it)")
    if spec.path is None:
        raise DataError(f"data.path must name a directory for cifar10, but got null; {help_text}")
    root = Path(spec.path)
    for directory in (root, root / _SUBDIR):
        if all((directory / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return directory
    missing = [name for name in (*TRAIN_FILES, TEST_FILE) if not (root / name).is_file()]
    raise DataError(f"{root}: cifar10 files must exist there or in {root / _SUBDIR}, but got no "
                    f"{', '.join(missing)}; {help_text}")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images [N, 3, 32, 32], int64 class labels [N])."""
    raw = safe_load(path, encoding="bytes")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a CIFAR-10 batch must hold a dict, but got {type(raw).__name__}")
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in raw.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{path}: a CIFAR-10 batch must have keys data and labels, but got {sorted(batch)}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data must be uint8 [N, 3072], but got {data.dtype} {list(data.shape)}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels must be {len(data)} integers, but got {labels.dtype} {list(labels.shape)}")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise DataError(f"{path}: sample index {bad[0]}: labels must be 0..9, but got {labels[bad[0]]}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(spec: DataSpec) -> MultiheadDataset:
    """The 50k training images (-> train + val, stratified by class) and the 10k test images."""
    directory = _directory(spec)
    parts = [read_cifar_batch(directory / name) for name in TRAIN_FILES]
    pool_images = np.concatenate([images for images, _ in parts])
    pool_classes = np.concatenate([classes for _, classes in parts])
    test_images, test_classes = read_cifar_batch(directory / TEST_FILE)
    plan = plan_splits(pool_strata=pool_classes, test_strata=test_classes, pool_size=len(pool_classes),
                       test_size=len(test_classes), spec=spec)

    def heads_of(classes: np.ndarray) -> dict[str, np.ndarray]:
        return {"class": classes, "vehicle_or_animal": VEHICLE_OR_ANIMAL[classes]}

    return assemble(pool=(pool_images, heads_of(pool_classes)), test=(test_images, heads_of(test_classes)),
                    plan=plan, heads=dict(CIFAR_HEADS))
