import pickle

import numpy as np
import pytest

from trainables.data import DATASETS, DataError, DataSpec, describe_dataset, load_dataset

CLASSES_PER_FILE = 6


def _write_cifar(directory, rng):
    """Files as the CIFAR-10 python version has them: protocol-2 pickles with bytes keys."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (CLASSES_PER_FILE, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, CLASSES_PER_FILE).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(CLASSES_PER_FILE)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = data, labels
    return written


def test_cifar_batches_read_with_planar_images_and_heads(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    spec = DataSpec(kind="cifar10", path=str(tmp_path), val_fraction=0.2)  # parent dir is accepted
    dataset = load_dataset(spec)
    data, labels = written["test_batch"]
    assert dataset.input_shape == (3, 32, 32)
    assert np.array_equal(dataset.test.images.reshape(CLASSES_PER_FILE, -1), data)
    assert np.array_equal(dataset.test.images[:, 1].reshape(CLASSES_PER_FILE, -1), data[:, 1024:2048])
    assert dataset.test.labels["class"].tolist() == labels
    vehicles = {0, 1, 8, 9}
    assert dataset.test.labels["vehicle_or_animal"].tolist() == [0 if c in vehicles else 1 for c in labels]
    assert len(dataset.train) + len(dataset.val) == 5 * CLASSES_PER_FILE and len(dataset.val) == 6
    assert dataset.heads == describe_dataset(spec)
    assert dataset.heads["class"].num_classes == 10 and dataset.heads["vehicle_or_animal"].num_classes == 2


def test_cifar_missing_files_and_malicious_pickle(tmp_path):
    with pytest.raises(DataError, match="but got no data_batch_1.*test_batch.*cifar-10-python.tar.gz"):
        load_dataset(DataSpec(kind="cifar10", path=str(tmp_path)))
    _write_cifar(tmp_path, np.random.default_rng(0))
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(DataError, match="data_batch_3: refusing to unpickle.*posix.system"):
        load_dataset(DataSpec(kind="cifar10", path=str(tmp_path)))


def test_unknown_kind_lists_the_kinds():
    assert sorted(DATASETS) == ["cifar10", "digits", "mnist", "vimh"]
    with pytest.raises(DataError, match=r"data.kind must be one of \[vimh, digits, mnist, cifar10\], but got 'svhn'"):
        load_dataset(DataSpec(kind="svhn"))
