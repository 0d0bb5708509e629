import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from trainables.data import DataError, DataSpec, describe_dataset, load_dataset
from trainables.data._digits_mnist import (
    _IMAGES_PER_CHUNK,
    SMOOTHNESS_MAP,
    THICKNESS_MAP,
    read_digits,
    read_idx,
    stroke_measures,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataSpec(kind="digits"))


def test_digits_shapes_heads_and_fixed_test_split(digits):
    assert digits.input_shape == (1, 8, 8)
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1294, 144, 359)
    assert digits.train.images.dtype == np.uint8 and int(digits.train.images.max()) == 255
    heads = digits.heads
    assert heads == describe_dataset(DataSpec(kind="digits"))
    assert (heads["digit"].num_classes, heads["thickness"].num_classes, heads["smoothness"].num_classes) == (10, 5, 3)
    assert not heads["digit"].ordinal and heads["thickness"].ordinal and heads["smoothness"].ordinal
    assert heads["thickness"].unit_range is None
    other_seed = load_dataset(DataSpec(kind="digits", seed=1))
    assert np.array_equal(other_seed.test.images, digits.test.images)  # test never depends on the run's seed
    assert not np.array_equal(other_seed.val.images, digits.val.images)
    # validation is stratified by digit: every digit, in proportion
    assert (np.bincount(digits.val.labels["digit"], minlength=10) >= 13).all()


def test_digits_are_scikit_learns_read_without_importing_it():
    from sklearn.datasets import load_digits

    images, digits = read_digits()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(digits, bunch.target)
    assert images.dtype == np.float64 and digits.dtype == np.int64
    code = ("import sys; from trainables.data import DataSpec, load_dataset; load_dataset(DataSpec(kind='digits')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_measured_labels_are_not_a_function_of_the_digit(digits):
    digit = digits.train.labels["digit"]
    for head, levels in (("thickness", 5), ("smoothness", 3)):
        labels = digits.train.labels[head]
        counts = np.bincount(labels, minlength=levels)
        # quantile levels of the training split: roughly equal shares
        assert counts.min() >= 0.9 * len(labels) / levels
        varied = [d for d in range(10) if len(np.unique(labels[digit == d])) >= 2]
        assert len(varied) >= 9, head


def test_seed_map_labels_are_the_fixed_maps():
    dataset = load_dataset(DataSpec(kind="digits", labels="seed_map", limit=200))
    digit = dataset.train.labels["digit"]
    assert np.array_equal(dataset.train.labels["thickness"], [THICKNESS_MAP[int(d)] for d in digit])
    assert np.array_equal(dataset.train.labels["smoothness"], [SMOOTHNESS_MAP[int(d)] for d in digit])
    assert len(dataset.train) + len(dataset.val) == 200 and len(dataset.test) == 200


def test_stroke_width_and_curvature_measure_what_they_claim():
    images = np.zeros((4, 1, 28, 28), dtype=np.uint8)
    images[0, 0, 4:24, 13:14] = 255  # 1-pixel stroke
    images[1, 0, 4:24, 12:15] = 255  # 3-pixel stroke
    yy, xx = np.mgrid[:28, :28]
    images[2, 0][(yy - 14) ** 2 + (xx - 14) ** 2 <= 10 ** 2] = 255  # large disc: gentle contour
    images[3, 0][(yy - 14) ** 2 + (xx - 14) ** 2 <= 4 ** 2] = 255  # small disc: tight contour
    width, curvature = stroke_measures(images)
    assert width[0] == pytest.approx(1.0, rel=0.15) and width[1] == pytest.approx(3.0, rel=0.15)
    assert curvature[3] > 1.5 * curvature[2]


def test_stroke_measures_hold_one_chunk_of_images_at_a_time():
    # A second module constant of the same name (the IDX reader's 1 MiB) had replaced the chunk of
    # images: MNIST's 60000 training images were measured at once, with a 2.4 GiB peak (330 MiB).
    images = np.random.default_rng(0).integers(0, 256, (3 * _IMAGES_PER_CHUNK, 1, 8, 8), dtype=np.uint8)

    def peak(part: np.ndarray) -> tuple[int, np.ndarray]:
        tracemalloc.start()
        try:
            measured = stroke_measures(part)
            return tracemalloc.get_traced_memory()[1], np.stack(measured)
        finally:
            tracemalloc.stop()

    one, first = peak(images[:_IMAGES_PER_CHUNK])
    three, every = peak(images)
    assert three < 1.5 * one
    np.testing.assert_array_equal(every[:, :_IMAGES_PER_CHUNK], first)  # chunks change no value


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files_read_correctly(tmp_path, compress, write_mnist):
    parts = write_mnist(tmp_path, compress=compress, rng=np.random.default_rng(0))
    dataset = load_dataset(DataSpec(kind="mnist", path=str(tmp_path), val_fraction=0.25))
    test_images, test_labels = parts["t10k"]
    assert np.array_equal(dataset.test.images[:, 0], test_images)
    assert np.array_equal(dataset.test.labels["digit"], test_labels) and dataset.test.labels["digit"].dtype == np.int64
    train_images, train_labels = parts["train"]
    source = {train_images[i].tobytes(): int(train_labels[i]) for i in range(40)}
    seen = set()
    for split in (dataset.train, dataset.val):
        for image, digit in zip(split.images, split.labels["digit"]):
            key = image[0].tobytes()
            assert source[key] == int(digit) and key not in seen
            seen.add(key)
    assert len(seen) == 40 and len(dataset.val) == 10


def test_a_small_gz_claiming_few_images_but_holding_many_zeros_is_refused_without_holding_them(tmp_path):
    import gzip
    import tracemalloc

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 3]) + np.array([10, 28, 28], ">u4").tobytes())
        for _ in range(64):
            f.write(bytes(1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"IDX body must hold 7840 bytes for shape \(10, 28, 28\), but got more"):
            read_idx(path, ndim=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # before: the whole 64 MiB, decompressed at once


def test_a_corrupt_gz_and_malformed_files_are_data_errors(tmp_path, write_mnist, monkeypatch):
    import gzip

    write_mnist(tmp_path, compress=True, rng=np.random.default_rng(0))
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    good = labels.read_bytes()
    labels.write_bytes(good[:12] + bytes(255 - b for b in good[12:-8]) + good[-8:])  # the deflate body garbled
    with pytest.raises(DataError, match="IDX file must be readable .*but got"):
        load_dataset(DataSpec(kind="mnist", path=str(tmp_path)))
    # images of 1 x 1 pixel: the stroke measures could not be taken (numpy's ValueError, a traceback before)
    write_mnist(tmp_path, compress=True, rng=np.random.default_rng(0))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.array([40, 1, 1], ">u4").tobytes() + bytes(40)))
    with pytest.raises(DataError, match=rf"data.kind mnist at {tmp_path}: the files must be readable mnist data, but "
                                        r"got ValueError"):
        load_dataset(DataSpec(kind="mnist", path=str(tmp_path)))


def test_mnist_corrupt_and_missing_files(tmp_path, write_mnist):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte.*download"):
        load_dataset(DataSpec(kind="mnist", path=str(tmp_path)))
    write_mnist(tmp_path, compress=False, rng=np.random.default_rng(0))
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: byte offset 8: IDX body must hold 40 bytes.*but got 37"):
        load_dataset(DataSpec(kind="mnist", path=str(tmp_path)))
    labels.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="byte offset 0: IDX magic must be 00 00 08 01"):
        load_dataset(DataSpec(kind="mnist", path=str(tmp_path)))
    with pytest.raises(DataError, match="data.path must name a directory for mnist"):
        load_dataset(DataSpec(kind="mnist"))
