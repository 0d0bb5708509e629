"""Handwritten digits with three heads: ``digit`` (10), ``thickness`` (5) and ``smoothness`` (3).

Kinds:
- ``digits``: scikit-learn's bundled 8x8 digits (1797 real images, offline). The test split is a
  fixed 20 % (stratified by digit, seed 0 whatever ``spec.seed`` is) so every run tests on the
  same images.
- ``mnist``: the standard IDX files in ``spec.path`` (gzipped or not): train-images-idx3-ubyte,
  train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.

Thickness and smoothness come in two flavours (``spec.labels``):
- ``measured`` (default): measured from the pixels of each image, x = intensity in [0, 1].
  thickness: stroke width = 2 * ink mass / total variation, where ink mass = sum(x) and total
  variation = sum |x(i+1, j) - x(i, j)| + |x(i, j+1) - x(i, j)| (zero-padded) approximates the
  stroke's perimeter; a stroke of width w and length L >> w has mass w L and perimeter 2 L.
  smoothness: the mean absolute curvature of the iso-intensity contours,
  kappa = (x_xx x_y^2 - 2 x_x x_y x_xy + x_yy x_x^2) / |grad x|^3 on a 3x3 binomial-blurred image,
  averaged with weights |grad x| over pixels whose gradient exceeds 10 % of the image's largest.
  Levels are cut at training-split quantiles: thickness by quintiles (0 thinnest .. 4 thickest),
  smoothness by tertiles of the curvature (0 most curved/angular .. 2 smoothest). Thresholds come
  from the training split only, so validation and test do not shape them.
- ``seed_map``: the fixed digit -> level maps of the seed project, kept for comparison. They are a
  function of the digit, so they carry no information beyond the ``digit`` head.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ._split import SplitPlan, assemble, plan_splits, stratified_choice
from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset

THICKNESS_MAP = {0: 2, 1: 1, 2: 3, 3: 3, 4: 2, 5: 3, 6: 2, 7: 1, 8: 4, 9: 3}
SMOOTHNESS_MAP = {0: 2, 1: 0, 2: 1, 3: 1, 4: 0, 5: 1, 6: 2, 7: 0, 8: 2, 9: 2}
DIGIT_HEADS = {
    "digit": HeadInfo(name="digit", num_classes=10, ordinal=False, param_name="digit"),
    "thickness": HeadInfo(name="thickness", num_classes=5, ordinal=True, param_name="thickness"),
    "smoothness": HeadInfo(name="smoothness", num_classes=3, ordinal=True, param_name="smoothness"),
}
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0
_IMAGES_PER_CHUNK = 8192  # images measured at once, bounds the float work arrays


def describe_digits(spec: DataSpec) -> dict[str, HeadInfo]:
    """Static: the same three heads for every flavour and every path."""
    return dict(DIGIT_HEADS)


# ---------------------------------------------------------------- measured labels

def stroke_measures(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 1, H, W] -> (stroke width [N], mean contour curvature [N]); see the module doc."""
    widths, curvatures = [], []
    for start in range(0, len(images), _IMAGES_PER_CHUNK):
        x = images[start:start + _IMAGES_PER_CHUNK, 0].astype(np.float32) / 255.0
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
        variation = np.abs(np.diff(padded, axis=1)).sum(axis=(1, 2)) + np.abs(np.diff(padded, axis=2)).sum(axis=(1, 2))
        widths.append(2.0 * x.sum(axis=(1, 2)) / np.maximum(variation, 1e-6))
        curvatures.append(_mean_curvature(x))
    return np.concatenate(widths), np.concatenate(curvatures)


def _mean_curvature(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    blurred = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    blurred = (blurred[:, :, :-2] + 2 * blurred[:, :, 1:-1] + blurred[:, :, 2:]) / 4
    gy, gx = np.gradient(blurred, axis=(1, 2))
    gyy, gyx = np.gradient(gy, axis=(1, 2))
    gxx = np.gradient(gx, axis=2)
    magnitude = np.sqrt(gx ** 2 + gy ** 2)
    edge = magnitude > 0.1 * magnitude.max(axis=(1, 2), keepdims=True)
    safe = np.where(edge, magnitude, 1.0)
    # |kappa| * |grad| = |numerator| / |grad|^2 : the |grad|-weighted sum of |kappa|
    weighted = np.abs(gxx * gy ** 2 - 2 * gx * gy * gyx + gyy * gx ** 2) / safe ** 2
    return np.where(edge, weighted, 0.0).sum(axis=(1, 2)) / np.maximum(np.where(edge, magnitude, 0.0).sum(axis=(1, 2)), 1e-6)


def quantile_levels(scores: np.ndarray, *, reference: np.ndarray, levels: int) -> np.ndarray:
    """Level 0..levels-1 of each score, cut at the 1/levels quantiles of ``reference``."""
    cuts = np.quantile(reference, np.arange(1, levels) / levels)
    return np.searchsorted(cuts, scores, side="right").astype(np.int64)


def _style_labels(images: np.ndarray, digits: np.ndarray, train_rows: np.ndarray, flavour: str) -> dict[str, np.ndarray]:
    if flavour == "seed_map":
        return {"thickness": np.array([THICKNESS_MAP[d] for d in range(10)])[digits],
                "smoothness": np.array([SMOOTHNESS_MAP[d] for d in range(10)])[digits]}
    width, curvature = stroke_measures(images)
    return {"thickness": quantile_levels(width, reference=width[train_rows], levels=5),
            "smoothness": 2 - quantile_levels(curvature, reference=curvature[train_rows], levels=3)}


def _build(pool: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], spec: DataSpec) -> MultiheadDataset:
    (pool_images, pool_digits), (test_images, test_digits) = pool, test
    plan = plan_splits(pool_strata=pool_digits, test_strata=test_digits, pool_size=len(pool_digits),
                       test_size=len(test_digits), spec=spec)
    # Only the rows in use are measured, and quantile cuts are fitted on the train rows.
    used_pool = np.concatenate([plan.train, plan.val])
    images = np.concatenate([pool_images[used_pool], test_images[plan.test]])
    digits = np.concatenate([pool_digits[used_pool], test_digits[plan.test]])
    n_train, n_val = len(plan.train), len(plan.val)
    labels = {"digit": digits.astype(np.int64),
              **_style_labels(images, digits, np.arange(n_train), spec.labels)}
    compact = SplitPlan(train=np.arange(n_train), val=np.arange(n_train, n_train + n_val),
                        test=np.arange(n_train + n_val, len(digits)))
    return assemble(pool=(images, labels), test=(images, labels), plan=compact, heads=dict(DIGIT_HEADS))


# ---------------------------------------------------------------- digits (scikit-learn)

def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images float64 [N, 8, 8] in 0..16 and digits int64 [N], what
    ``sklearn.datasets.load_digits()`` returns as ``images`` and ``target``. Read from the file
    scikit-learn ships without importing scikit-learn: that import costs ~0.7 s and ~65 MB of RSS
    in every process that loads the data set (the search driver, each trial of ``per_node``)."""
    spec = importlib.util.find_spec("sklearn")  # locates the package, runs none of it
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.kind digits needs scikit-learn installed, but got no package `sklearn`")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    try:
        table = np.loadtxt(path, delimiter=",")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: scikit-learn's digits file must be a readable CSV, but got {exc}") from exc
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_digits_dataset(spec: DataSpec) -> MultiheadDataset:
    """scikit-learn's 8x8 digits as uint8 [N, 1, 8, 8] (0..16 scaled to 0..255)."""
    pixels, digits = read_digits()
    images = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)[:, None]
    count = len(digits)
    test_rows = stratified_choice(count, count=round(_DIGITS_TEST_FRACTION * count), strata=digits,
                                  rng=np.random.default_rng(_DIGITS_TEST_SEED))
    in_test = np.zeros(count, dtype=bool)
    in_test[test_rows] = True
    return _build((images[~in_test], digits[~in_test]), (images[in_test], digits[in_test]), spec)


# ---------------------------------------------------------------- MNIST (IDX files)

def _mnist_help(directory: str | Path) -> str:
    names = ", ".join(MNIST_FILES.values())
    return (f"mnist needs the four IDX files {names} (each may end in .gz) in {directory}; download them "
            f"from https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of yann.lecun.com/exdb/mnist) "
            f"or copy them from torchvision's MNIST/raw folder")


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed when the name ends in .gz). The body is
    read in chunks up to one byte past the header's length: a small .gz claiming a few images but
    holding gigabytes of zeros is refused without holding them."""
    start = 4 + 4 * ndim
    try:
        with _open_idx(path) as f:
            header = f.read(start)
            shape = _idx_shape(path, header, ndim=ndim)
            expected = math.prod(shape)
            body = _read_at_most(f, expected + 1)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: IDX file must be readable (and valid gzip if .gz), but got {exc}") from exc
    if len(body) != expected:
        got = f"more than {expected}" if len(body) > expected else str(len(body))
        raise DataError(f"{path}: byte offset {start}: IDX body must hold {expected} bytes for shape {shape}, "
                        f"but got {got}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _open_idx(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 - the caller closes


def _idx_shape(path: Path, header: bytes, *, ndim: int) -> tuple[int, ...]:
    if len(header) < 4 + 4 * ndim:
        raise DataError(f"{path}: byte offset 0: IDX header must have {4 + 4 * ndim} bytes, but got {len(header)}")
    magic = header[:4]
    if magic[:2] != b"\0\0" or magic[2] != 0x08 or magic[3] != ndim:
        raise DataError(f"{path}: byte offset 0: IDX magic must be 00 00 08 {ndim:02x} (unsigned bytes, "
                        f"{ndim} dims), but got {magic.hex(' ')}")
    return tuple(int(d) for d in np.frombuffer(header, dtype=">u4", count=ndim, offset=4))


def _read_at_most(f: BinaryIO, limit: int) -> bytearray:
    """The rest of ``f``, or its first ``limit`` bytes when it holds more; read in chunks, so that
    what is held never outgrows what the file holds (a header may claim any length)."""
    body = bytearray()
    while len(body) < limit and (chunk := f.read(min(_READ_CHUNK_BYTES, limit - len(body)))):
        body += chunk
    return body


_READ_CHUNK_BYTES = 1 << 20


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: file {stem} (or {stem}.gz) must exist, but got none; {_mnist_help(directory)}")


def _read_mnist_part(directory: Path, images_stem: str, labels_stem: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = _find_idx(directory, images_stem), _find_idx(directory, labels_stem)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: label count must equal the image count of {images_path.name} "
                        f"({len(images)}), but got {len(labels)}")
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise DataError(f"{labels_path}: sample index {bad[0]}: digit labels must be 0..9, but got {labels[bad[0]]}")
    return images[:, None], labels.astype(np.int64)


def load_mnist_dataset(spec: DataSpec) -> MultiheadDataset:
    """MNIST from IDX files: uint8 [N, 1, 28, 28]; validation carved from the 60k training set."""
    if spec.path is None:
        raise DataError(f"data.path must name a directory for mnist, but got null; {_mnist_help('it')}")
    directory = Path(spec.path)
    if not directory.is_dir():
        raise DataError(f"{directory}: data.path must be an existing directory, but got none; "
                        f"{_mnist_help(directory)}")
    pool = _read_mnist_part(directory, MNIST_FILES["train_images"], MNIST_FILES["train_labels"])
    test = _read_mnist_part(directory, MNIST_FILES["test_images"], MNIST_FILES["test_labels"])
    return _build(pool, test, spec)
