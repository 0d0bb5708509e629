"""VIMH (Variable Image MultiHead) files: JSON metadata plus binary or pickle sample batches.

Directory layout: ``train_batch``, ``test_batch`` and ``vimh_dataset_info.json`` (``height``,
``width``, ``channels``, ``parameter_names``, ``parameter_mappings`` name -> {min, max, ...}).

Binary batch, per sample, little-endian: ``<HHH`` height, width, channels; ``<ff`` spectrogram
min and max; ``B`` number of parameters P; P x (``B`` parameter id, ``B`` quantised value 0..255);
then height*width*channels uint8 pixels, planar CHW. A parameter id indexes
``parameter_names``. Every sample must carry every parameter exactly once.

Pickle batch: a dict with ``data`` ([N, H*W*C] pixels, planar CHW per row), ``vimh_labels``
(rows ``[P, id, q, id, q, ...]``), ``height``, ``width``, ``channels``; read with the restricted
unpickler only.

Quantisation: q = clip(floor((v - min) / (max - min) * 256), 0, 255); decoding returns the bin
centre v = min + (q + 0.5) * (max - min) / 256, not the bin's lower edge.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._safe_pickle import safe_load
from ._types import DataError, HeadInfo

QUANT_LEVELS = 256
INFO_FILE = "vimh_dataset_info.json"
SPLIT_FILES = ("train_batch", "test_batch")
_HEADER = struct.Struct("<HHHffB")  # height, width, channels, spec min, spec max, param count


@dataclass(frozen=True)
class VimhInfo:
    """The metadata of a VIMH directory; ``ranges`` maps each parameter to (min, max) or None."""

    height: int
    width: int
    channels: int
    parameter_names: tuple[str, ...]
    ranges: dict[str, tuple[float, float] | None]

    def heads(self) -> dict[str, HeadInfo]:
        """One ordinal head of 256 quantised levels per parameter, in metadata order."""
        return {name: HeadInfo(name=name, num_classes=QUANT_LEVELS, ordinal=True, param_name=name,
                               unit_range=self.ranges[name])
                for name in self.parameter_names}


@dataclass
class VimhBatch:
    """Samples of one batch file: images uint8 [N, C, H, W], quantised labels name -> uint8 [N]."""

    images: np.ndarray
    labels: dict[str, np.ndarray]


def quantize(values: np.ndarray, *, unit_range: tuple[float, float]) -> np.ndarray:
    """Parameter values -> levels 0..255 (floor of the scaled value, clipped)."""
    low, high = unit_range
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():  # NaN would become level 0 and inf level 255, without a word
        raise ValueError(f"values must be finite, but got {values[~np.isfinite(values)][:5].tolist()}")
    scaled = (values - low) / (high - low) * QUANT_LEVELS
    return np.clip(np.floor(scaled), 0, QUANT_LEVELS - 1).astype(np.uint8)


def bin_centres(levels: np.ndarray, *, unit_range: tuple[float, float]) -> np.ndarray:
    """Levels 0..255 -> parameter values at the centre of each bin: min + (q + 0.5) * width."""
    low, high = unit_range
    return low + (np.asarray(levels, dtype=np.float64) + 0.5) * (high - low) / QUANT_LEVELS


# ---------------------------------------------------------------- metadata

def read_vimh_info(directory: Path | str) -> VimhInfo:
    """Parse and check ``vimh_dataset_info.json``; problems raise DataError naming the file."""
    path = Path(directory) / INFO_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: VIMH metadata file must exist and be readable, but got {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: VIMH metadata must be valid JSON, but got {exc}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: VIMH metadata must be a JSON object, but got {type(raw).__name__}")
    dims = {}
    for key in ("height", "width", "channels"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise DataError(f"{path}: {key} must be an integer in [1, 65535], but got {value!r}")
        dims[key] = value
    names = raw.get("parameter_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: parameter_names must be a non-empty list of strings, but got {names!r}")
    if len(set(names)) != len(names) or len(names) > 255:
        raise DataError(f"{path}: parameter_names must be at most 255 distinct names, but got {names!r}")
    mappings = raw.get("parameter_mappings", {})
    if not isinstance(mappings, dict):
        raise DataError(f"{path}: parameter_mappings must be an object, but got {mappings!r}")
    ranges = {name: _unit_range(path, name, mappings.get(name)) for name in names}
    info = VimhInfo(parameter_names=tuple(names), ranges=ranges, **dims)
    try:
        info.heads()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return info


def _unit_range(path: Path, name: str, mapping: Any) -> tuple[float, float] | None:
    if mapping is None or ("min" not in mapping and "max" not in mapping):
        return None
    low, high = mapping.get("min"), mapping.get("max")
    numbers = all(_finite_number(v) for v in (low, high))
    if not numbers or not low < high:
        raise DataError(f"{path}: parameter_mappings.{name} must have finite min < max, "
                        f"but got min={low!r}, max={high!r}")
    return float(low), float(high)


def _finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too long for a float (JSON allows any number of digits)
        return False


def write_vimh_info(directory: Path | str, *, info: VimhInfo, extra: dict[str, Any] | None = None) -> Path:
    """Write ``vimh_dataset_info.json`` for ``info``.

    ``extra`` adds free-form fields; its ``parameter_mappings`` entries add details (such as a
    description) to each parameter. Fields derived from ``info`` always win, so the file cannot
    contradict the data.
    """
    extra = dict(extra or {})
    details = extra.pop("parameter_mappings", {})
    mappings = {}
    for name in info.parameter_names:
        unit_range = info.ranges[name]
        exact = {} if unit_range is None else {"min": unit_range[0], "max": unit_range[1], "scale": "linear"}
        mappings[name] = {**details.get(name, {}), **exact}
    core = {
        "format": "VIMH",
        "version": "3.0",
        "image_size": f"{info.height}x{info.width}x{info.channels}",
        "height": info.height,
        "width": info.width,
        "channels": info.channels,
        "varying_parameters": len(info.parameter_names),
        "parameter_names": list(info.parameter_names),
        "parameter_mappings": mappings,
    }
    payload = {**core, **{key: value for key, value in extra.items() if key not in core}}
    path = Path(directory) / INFO_FILE
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- batches

def read_vimh_batch(path: Path | str, *, info: VimhInfo) -> VimhBatch:
    """Read one batch file, binary or pickle (told apart by whether the first bytes are a sample
    header matching the metadata or a pickle protocol marker), checking every sample."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: VIMH batch file must exist and be readable, but got {exc}") from exc
    if not data:
        raise DataError(f"{path}: VIMH batch file must hold at least one sample, but got 0 bytes")
    if len(data) >= 6 and struct.unpack_from("<HHH", data) == (info.height, info.width, info.channels):
        return _read_binary(path, data, info)
    # Not told apart by a first byte: a binary header's height of 128 (or 384 ...) starts with
    # pickle's protocol marker, and a protocol 0 or 1 pickle (Python 2's default) has none.
    try:
        return _read_pickle(path, info)
    except DataError as as_pickle:
        got = struct.unpack_from("<HHH", data) if len(data) >= 6 else data[:6]
        raise DataError(f"{path}: byte offset 0: a VIMH batch must start with a sample header "
                        f"(height, width, channels) = {(info.height, info.width, info.channels)} "
                        f"matching the metadata, or be a pickle, but got {got}; read as a pickle: {as_pickle}") from None


def _record_dtype(params: int, pixels: int) -> np.dtype:
    return np.dtype([("h", "<u2"), ("w", "<u2"), ("c", "<u2"), ("smin", "<f4"), ("smax", "<f4"),
                     ("n", "u1"), ("pq", "u1", (params, 2)), ("px", "u1", (pixels,))])


def _read_binary(path: Path, data: bytes, info: VimhInfo) -> VimhBatch:
    params = len(info.parameter_names)
    pixels = info.height * info.width * info.channels
    dtype = _record_dtype(params, pixels)
    # A valid file has one record layout for all samples, so it is read as one structured array;
    # anything that does not fit is handed to the sample-by-sample scan, which names the problem.
    if len(data) % dtype.itemsize == 0 and data[_HEADER.size - 1] == params:
        records = np.frombuffer(data, dtype=dtype)
        ids = records["pq"][:, :, 0]
        uniform = ((records["h"] == info.height) & (records["w"] == info.width)
                   & (records["c"] == info.channels) & (records["n"] == params)).all()
        if uniform and (np.sort(ids, axis=1) == np.arange(params, dtype=np.uint8)).all():
            rows = np.arange(len(records))[:, None]
            levels = np.empty((len(records), params), dtype=np.uint8)
            levels[rows, ids] = records["pq"][:, :, 1]
            images = records["px"].reshape(len(records), info.channels, info.height, info.width)
            return VimhBatch(images=np.ascontiguousarray(images),
                             labels={name: levels[:, i].copy() for i, name in enumerate(info.parameter_names)})
    raise _locate_binary_error(path, data, info)


def _locate_binary_error(path: Path, data: bytes, info: VimhInfo) -> DataError:
    """Walk the samples one by one and describe the first bad one."""
    expected = (info.height, info.width, info.channels)
    params = len(info.parameter_names)
    offset, index = 0, 0
    while offset < len(data):
        where = f"{path}: sample {index} (byte offset {offset})"
        if len(data) - offset < _HEADER.size:
            return DataError(f"{where}: file is truncated: a sample header needs {_HEADER.size} bytes, "
                            f"but got {len(data) - offset}")
        height, width, channels, _, _, count = _HEADER.unpack_from(data, offset)
        if (height, width, channels) != expected:
            return DataError(f"{where}: height, width, channels must match the metadata {expected}, "
                            f"but got {(height, width, channels)}")
        size = _HEADER.size + 2 * count + height * width * channels
        if len(data) - offset < size:
            return DataError(f"{where}: file is truncated: the sample needs {size} bytes, "
                            f"but got {len(data) - offset}")
        pairs = data[offset + _HEADER.size: offset + _HEADER.size + 2 * count]
        ids = list(pairs[0::2])
        unknown = [i for i in ids if i >= params]
        if unknown:
            return DataError(f"{where}: parameter ids must be < {params} (the metadata's parameter_names), "
                            f"but got {unknown[0]}")
        if sorted(ids) != list(range(params)):
            return DataError(f"{where}: every parameter id 0..{params - 1} must appear exactly once, "
                            f"but got {ids}")
        offset += size
        index += 1
    return DataError(f"{path}: file must be a consistent VIMH binary batch, but got an unreadable layout")


def _read_pickle(path: Path, info: VimhInfo) -> VimhBatch:
    raw = safe_load(path, encoding="bytes")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: VIMH pickle must hold a dict, but got {type(raw).__name__}")
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in raw.items()}
    missing = [key for key in ("data", "vimh_labels", "height", "width", "channels") if key not in batch]
    if missing:
        raise DataError(f"{path}: VIMH pickle must have keys data, vimh_labels, height, width, channels, "
                        f"but got no {missing}")
    got = (batch["height"], batch["width"], batch["channels"])
    expected = (info.height, info.width, info.channels)
    if got != expected:
        raise DataError(f"{path}: height, width, channels must match the metadata {expected}, but got {got}")
    pixels = info.height * info.width * info.channels
    images = _pickle_rows(path, batch["data"], width=pixels, what="data")
    params = len(info.parameter_names)
    rows = _pickle_rows(path, batch["vimh_labels"], width=1 + 2 * params, what="vimh_labels")
    if len(rows) != len(images):
        raise DataError(f"{path}: vimh_labels must have one row per image ({len(images)}), but got {len(rows)}")
    ids = rows[:, 1::2]
    bad = np.flatnonzero((rows[:, 0] != params) | (np.sort(ids, axis=1) != np.arange(params)).any(axis=1))
    if len(bad):
        raise DataError(f"{path}: sample index {bad[0]}: a label row must be [P={params}, id, q, ...] with "
                        f"every parameter id 0..{params - 1} once, but got {rows[bad[0]].tolist()}")
    levels = np.empty((len(rows), params), dtype=np.uint8)
    levels[np.arange(len(rows))[:, None], ids] = rows[:, 2::2]
    return VimhBatch(images=images.reshape(-1, info.channels, info.height, info.width),
                     labels={name: levels[:, i].copy() for i, name in enumerate(info.parameter_names)})


def _pickle_rows(path: Path, value: Any, *, width: int, what: str) -> np.ndarray:
    """A pickled list-of-rows or 2-d array -> uint8 [N, width], naming the first bad row."""
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == width:
        array = value
    else:
        if isinstance(value, np.ndarray) and value.ndim != 2:  # a flat array would be listed value by value
            raise DataError(f"{path}: {what} must be rows of {width} entries (a 2-d array), but got shape {value.shape}")
        rows = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
        if not rows:
            raise DataError(f"{path}: {what} must be a non-empty list of rows, but got {type(value).__name__}")
        for index, row in enumerate(rows):
            if not isinstance(row, (list, tuple, bytes, bytearray, np.ndarray)) or np.ndim(row) != 1:
                raise DataError(f"{path}: sample index {index}: {what} must be rows of {width} entries, "
                                f"but got a {type(row).__name__}")
            if len(row) != width:
                raise DataError(f"{path}: sample index {index}: {what} rows must have {width} entries, "
                                f"but got {len(row)}")
        if all(isinstance(row, (bytes, bytearray)) for row in rows):
            array = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), width)
        else:
            array = np.asarray(rows)
    if len(array) == 0:
        raise DataError(f"{path}: {what} must hold at least one sample, but got 0")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu":
            raise DataError(f"{path}: {what} must hold integers 0..255, but got dtype {array.dtype}")
        bad = np.flatnonzero(((array < 0) | (array > 255)).any(axis=1))
        if len(bad):
            raise DataError(f"{path}: sample index {bad[0]}: {what} must hold integers 0..255, "
                            f"but got {array[bad[0]].min()}..{array[bad[0]].max()}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def write_vimh_batch(path: Path | str, batch: VimhBatch, *, info: VimhInfo,
                     fmt: Literal["binary", "pickle"] = "binary",
                     spectrogram_range: np.ndarray | None = None) -> Path:
    """Write ``batch`` in the binary or pickle format; ``spectrogram_range`` [N, 2] fills the
    binary header's min/max floats (zeros when None)."""
    path = Path(path)
    images = _levels("images", batch.images)
    count = len(images)
    if images.shape[1:] != (info.channels, info.height, info.width):
        raise ValueError(f"images must have shape [N, {info.channels}, {info.height}, {info.width}], "
                         f"but got {list(images.shape)}")
    if set(batch.labels) != set(info.parameter_names):
        raise ValueError(f"labels must have exactly the heads {list(info.parameter_names)}, "
                         f"but got {sorted(batch.labels)}")
    levels = np.stack([np.asarray(batch.labels[name]) for name in info.parameter_names], axis=1)
    if levels.shape[0] != count:
        raise ValueError(f"labels must be {count} levels per head, but got shape {list(levels.shape)}")
    levels = _levels("labels", levels)
    params = len(info.parameter_names)
    pairs = np.empty((count, params, 2), dtype=np.uint8)
    pairs[:, :, 0] = np.arange(params)
    pairs[:, :, 1] = levels
    if fmt == "binary":
        records = np.zeros(count, dtype=_record_dtype(params, images[0].size if count else 0))
        records["h"], records["w"], records["c"] = info.height, info.width, info.channels
        if spectrogram_range is not None:
            records["smin"], records["smax"] = spectrogram_range[:, 0], spectrogram_range[:, 1]
        records["n"] = params
        records["pq"] = pairs
        records["px"] = images.reshape(count, -1)
        path.write_bytes(records.tobytes())
    elif fmt == "pickle":
        labels = np.concatenate([np.full((count, 1), params, dtype=np.uint8), pairs.reshape(count, -1)], axis=1)
        payload = {"data": images.reshape(count, -1), "vimh_labels": labels,
                   "height": info.height, "width": info.width, "channels": info.channels}
        path.write_bytes(pickle.dumps(payload, protocol=4))
    else:
        raise ValueError(f"fmt must be 'binary' or 'pickle', but got {fmt!r}")
    return path


def _levels(what: str, values: Any) -> np.ndarray:
    """``values`` as uint8, refusing what a cast would change: floats (0.5 became 0), integers
    outside 0..255 (300 became 44)."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers in 0..{QUANT_LEVELS - 1}, but got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= QUANT_LEVELS):
        raise ValueError(f"{what} must be integers in 0..{QUANT_LEVELS - 1}, but got {array.min()}..{array.max()}")
    return np.ascontiguousarray(array, dtype=np.uint8)

