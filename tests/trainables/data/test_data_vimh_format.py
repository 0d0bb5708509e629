import json
import pickle
import struct
import time

import numpy as np
import pytest

from trainables.data import DataError, DataSpec, describe_dataset, load_dataset
from trainables.shell import python_path
from trainables.data.vimh import (INFO_FILE, VimhBatch, VimhInfo, bin_centres, quantize, read_vimh_batch,
                                  read_vimh_info, write_vimh_batch)


def _record_size(info: VimhInfo) -> int:
    return 15 + 2 * len(info.parameter_names) + info.height * info.width * info.channels


@pytest.mark.parametrize("fmt", ["binary", "pickle"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_pixel_exact(make_vimh, fmt, channels):
    directory, info, train, test = make_vimh(channels=channels, fmt=fmt)
    assert read_vimh_info(directory) == info
    for name, written in (("train_batch", train), ("test_batch", test)):
        read = read_vimh_batch(directory / name, info=info)
        assert read.images.shape == (len(written.images), channels, 6, 5)
        assert np.array_equal(read.images, written.images)
        for head in info.parameter_names:
            assert np.array_equal(read.labels[head], written.labels[head])


def _hand_made_sample(height, width, planes, pairs) -> bytes:
    """One binary sample built from the format description, independent of the writer."""
    header = struct.pack("<HHHffB", height, width, len(planes), -80.0, 20.0, len(pairs))
    body = b"".join(struct.pack("BB", pid, q) for pid, q in pairs)
    return header + body + b"".join(plane.tobytes() for plane in planes)


def test_binary_pixels_are_planar_chw_and_ids_may_come_in_any_order(tmp_path):
    info = VimhInfo(height=2, width=3, channels=3, parameter_names=("a", "b"), ranges={"a": None, "b": None})
    planes = [np.arange(6, dtype=np.uint8).reshape(2, 3) + 10 * c for c in range(3)]
    path = tmp_path / "batch"
    path.write_bytes(_hand_made_sample(2, 3, planes, [(1, 200), (0, 7)]) * 2)
    batch = read_vimh_batch(path, info=info)
    assert batch.images.shape == (2, 3, 2, 3)
    for c in range(3):
        assert np.array_equal(batch.images[1, c], planes[c])
    assert batch.labels["a"].tolist() == [7, 7] and batch.labels["b"].tolist() == [200, 200]


def test_pickle_rows_are_planar_chw(tmp_path):
    info = VimhInfo(height=2, width=2, channels=3, parameter_names=("a",), ranges={"a": (0.0, 1.0)})
    row = list(range(12))  # R plane 0..3, G plane 4..7, B plane 8..11
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": [row], "vimh_labels": [[1, 0, 9]], "height": 2, "width": 2,
                                   "channels": 3}, protocol=2))
    batch = read_vimh_batch(path, info=info)
    assert batch.images[0, 1].tolist() == [[4, 5], [6, 7]]
    assert batch.labels["a"].tolist() == [9]


def test_bin_centres_and_quantize():
    unit_range = (36.0, 84.0)
    width = 48.0 / 256
    assert bin_centres(np.array([0]), unit_range=unit_range)[0] == pytest.approx(36.0 + 0.5 * width)
    assert bin_centres(np.array([255]), unit_range=unit_range)[0] == pytest.approx(84.0 - 0.5 * width)
    levels = np.arange(256)
    assert (quantize(bin_centres(levels, unit_range=unit_range), unit_range=unit_range) == levels).all()
    assert quantize(np.array([35.0, 84.0, 90.0]), unit_range=unit_range).tolist() == [0, 255, 255]


def test_load_dataset_describes_vimh_heads(make_vimh):
    directory, info, train, test = make_vimh(train=50, test=20)
    spec = DataSpec(kind="vimh", path=str(directory), val_fraction=0.2)
    dataset = load_dataset(spec)
    assert len(dataset.train) == 40 and len(dataset.val) == 10 and len(dataset.test) == 20
    assert dataset.input_shape == (1, 6, 5)
    heads = dataset.heads
    assert heads == describe_dataset(spec)
    assert list(heads) == ["pitch", "level"]
    assert heads["pitch"].num_classes == 256 and heads["pitch"].ordinal and heads["pitch"].unit_range == (36.0, 84.0)
    assert dataset.train.labels["pitch"].dtype == np.int64
    assert dataset.train.images.dtype == np.uint8
    assert np.array_equal(dataset.test.images, test.images)  # test split untouched and in order


def test_corrupt_header_names_sample_and_offset(make_vimh):
    directory, info, _, _ = make_vimh()
    path = directory / "train_batch"
    data = bytearray(path.read_bytes())
    offset = 3 * _record_size(info)
    struct.pack_into("<H", data, offset, 99)  # height of sample 3
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"train_batch: sample 3 \(byte offset {offset}\): height, width, "
                                        r"channels must match the metadata \(6, 5, 1\), but got \(99, 5, 1\)"):
        read_vimh_batch(path, info=info)


def test_truncated_file_names_last_sample(make_vimh):
    directory, info, _, _ = make_vimh(train=40)
    path = directory / "train_batch"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=rf"sample 39 \(byte offset {39 * _record_size(info)}\): file is truncated"):
        read_vimh_batch(path, info=info)


def test_unknown_parameter_id(make_vimh):
    directory, info, _, _ = make_vimh()
    path = directory / "test_batch"
    data = bytearray(path.read_bytes())
    data[_record_size(info) + 15] = 7  # first parameter id of sample 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"sample 1 .*parameter ids must be < 2 .*but got 7"):
        read_vimh_batch(path, info=info)


def test_metadata_mismatch_with_file(make_vimh):
    directory, info, _, _ = make_vimh(channels=1)
    meta = json.loads((directory / INFO_FILE).read_text())
    meta["channels"] = 3
    (directory / INFO_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"train_batch: byte offset 0: .*\(6, 5, 3\) matching the metadata"):
        load_dataset(DataSpec(path=str(directory)))


def test_pickle_problems_name_the_sample(make_vimh):
    directory, info, _, _ = make_vimh(fmt="pickle")
    path = directory / "train_batch"
    payload = pickle.loads(path.read_bytes())
    payload["vimh_labels"][5, 1] = 1  # sample 5 now names parameter 1 twice
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"train_batch: sample index 5: a label row must be"):
        read_vimh_batch(path, info=info)
    payload["height"] = 7
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=r"height, width, channels must match the metadata \(6, 5, 1\), but got \(7, 5, 1\)"):
        read_vimh_batch(path, info=info)


def test_a_binary_header_that_starts_like_a_pickle_is_named_as_a_header_mismatch(tmp_path):
    # height 128 is the byte 0x80, pickle's protocol marker: the file was read as a pickle only
    info = VimhInfo(height=128, width=4, channels=3, parameter_names=("a",), ranges={"a": None})
    path = tmp_path / "batch"
    path.write_bytes(_hand_made_sample(128, 4, [np.zeros((128, 4), dtype=np.uint8)], [(0, 7)]))
    with pytest.raises(DataError, match=r"byte offset 0: a VIMH batch must start with a sample header "
                                        r"\(height, width, channels\) = \(128, 4, 3\) matching the metadata, "
                                        r"or be a pickle, but got \(128, 4, 1\); read as a pickle: "):
        read_vimh_batch(path, info=info)


@pytest.mark.parametrize("protocol", [0, 1])
def test_pickles_of_protocols_without_a_marker_load(tmp_path, protocol):
    # Python 2's cPickle.dump writes protocol 0 unless told otherwise
    info = VimhInfo(height=2, width=2, channels=1, parameter_names=("a",), ranges={"a": None})
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": [[1, 2, 3, 4]], "vimh_labels": [[1, 0, 9]], "height": 2, "width": 2,
                                   "channels": 1}, protocol=protocol))
    batch = read_vimh_batch(path, info=info)
    assert batch.images.tolist() == [[[[1, 2], [3, 4]]]] and batch.labels["a"].tolist() == [9]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("data", np.arange(8, dtype=np.uint8), r"data must be rows of 4 entries \(a 2-d array\), but got shape \(8,\)"),
    ("data", [1, 2, 3, 4], "sample index 0: data must be rows of 4 entries, but got a int"),
    ("vimh_labels", [1, 0, 9], "sample index 0: vimh_labels must be rows of 3 entries, but got a int"),
])
def test_flat_pickle_rows_are_named(tmp_path, field, value, message):
    info = VimhInfo(height=2, width=2, channels=1, parameter_names=("a",), ranges={"a": None})
    payload = {"data": [[1, 2, 3, 4]], "vimh_labels": [[1, 0, 9]], "height": 2, "width": 2, "channels": 1, field: value}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match=message):
        read_vimh_batch(path, info=info)


@pytest.mark.parametrize(("images", "levels", "message"), [
    (np.array([0, 255, 300]), [7], "images must be integers in 0..255, but got 0..300"),
    (np.array([0.0, 0.5, 1.0]), [7], "images must be integers in 0..255, but got dtype float64"),
    (np.array([0, 1, 2]), [7.9], "labels must be integers in 0..255, but got dtype float64"),
    (np.array([0, 1, 2]), [256], "labels must be integers in 0..255, but got 256..256"),
])
def test_the_writer_refuses_what_a_cast_to_bytes_would_change(tmp_path, images, levels, message):
    info = VimhInfo(height=1, width=3, channels=1, parameter_names=("a",), ranges={"a": None})
    batch = VimhBatch(images=images.reshape(1, 1, 1, 3), labels={"a": np.array(levels)})
    with pytest.raises(ValueError, match=message):
        write_vimh_batch(tmp_path / "batch", batch, info=info)
    assert not (tmp_path / "batch").exists()


def test_quantize_refuses_values_that_are_not_finite():
    with pytest.raises(ValueError, match=r"values must be finite, but got \[nan, inf\]"):
        quantize(np.array([0.5, np.nan, np.inf]), unit_range=(0.0, 1.0))


def test_malicious_vimh_pickle_is_refused(make_vimh):
    directory, info, _, _ = make_vimh()
    path = directory / "train_batch"
    path.write_bytes(b"\x80\x04cos\nsystem\n\x8c\x04true\x85R.")  # os.system("true")
    with pytest.raises(DataError, match="refusing to unpickle.*os.system"):
        read_vimh_batch(path, info=info)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.pop("height"), "height must be an integer"),
    (lambda m: m.update(parameter_names=[]), "parameter_names must be a non-empty list"),
    (lambda m: m.update(parameter_names=["a.b"]), "head name must be an identifier"),
    (lambda m: m["parameter_mappings"]["pitch"].update(min=90), "parameter_mappings.pitch must have finite min < max"),
    (lambda m: m["parameter_mappings"]["pitch"].update(max=10**400), "parameter_mappings.pitch must have finite min < max"),
])
def test_bad_metadata(make_vimh, change, message):
    directory, *_ = make_vimh()
    meta = json.loads((directory / INFO_FILE).read_text())
    change(meta)
    (directory / INFO_FILE).write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"{INFO_FILE}: .*{message}"):
        read_vimh_info(directory)


def test_missing_and_partial_directories(tmp_path, make_vimh):
    with pytest.raises(DataError, match="a VIMH directory must exist") as missing:
        load_dataset(DataSpec(path=str(tmp_path / "absent")))
    # the command runs this environment's Python: a bare `python` reached the shell's
    assert f"`{python_path()} -m trainables.data.vimh generate --out {tmp_path / 'absent'} " in str(missing.value)
    directory, *_ = make_vimh()
    (directory / "test_batch").unlink()
    with pytest.raises(DataError, match="but got no test_batch"):
        describe_dataset(DataSpec(path=str(directory)))


@pytest.mark.parametrize("fmt", ["binary", "pickle"])
def test_ten_thousand_samples_load_fast(tmp_path, fmt):
    # Vectorised reading takes ~20 ms here (the pickle through the pure-Python restricted
    # unpickler too); the bound leaves room for a loaded CI box and still catches a per-byte or
    # quadratic loop.
    info = VimhInfo(height=32, width=32, channels=1, parameter_names=("a", "b"), ranges={"a": None, "b": None})
    rng = np.random.default_rng(0)
    batch = VimhBatch(images=rng.integers(0, 256, (10_000, 1, 32, 32), dtype=np.uint8),
                      labels={"a": rng.integers(0, 256, 10_000), "b": rng.integers(0, 256, 10_000)})
    write_vimh_batch(tmp_path / "train_batch", batch, info=info, fmt=fmt)
    start = time.perf_counter()
    read = read_vimh_batch(tmp_path / "train_batch", info=info)
    assert time.perf_counter() - start < 5.0
    assert np.array_equal(read.images, batch.images)
