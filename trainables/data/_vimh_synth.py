"""A small sawtooth synthesiser rendered to log-magnitude spectrogram images, as VIMH data.

Sound model, per sample (sample rate 8 kHz, 1 s):
    f0 = 440 * 2 ** ((note_number - 69) / 12)
    saw(t) = 2 * frac(f0 t) - 1, band-limited at the jumps with PolyBLEP (no aliasing buzz)
    x(t) = saw(t) * gain(note_velocity) * exp(-t / decay_time) * attack(t)
    gain = 10 ** (-40 dB * (127 - velocity) / 126 / 20)       (velocity 1..127 spans 40 dB)
    optional resonant low-pass (RBJ biquad, cutoff filter_cutoff Hz, quality filter_resonance),
    applied as its magnitude response (zero-phase) on a zero-padded FFT of the whole sound (the
    impulse response dies out long before the padding wraps around).
Image: STFT (Hann, 256 points, hop 128) magnitude scaled so a unit sine reads 1, resampled to
H log-spaced frequency rows (50 Hz .. 3.9 kHz, low frequencies at the bottom) and W time
columns (area average), in dB, mapped from the fixed range [-80, +20] dB to 0..255. A fixed range
(not per-image min/max) keeps loudness, hence velocity, visible. Each sample's own dB min and max
go into the binary header.

Parameters not listed as varying are held at their default (the filter is off unless a filter
parameter varies). Varying values are drawn uniformly in each parameter's range; the label is the
value quantised to 256 levels.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import numpy as np

from ._types import DataError, HeadInfo
from ._vimh_format import (INFO_FILE, SPLIT_FILES, VimhBatch, VimhInfo, quantize,
                           write_vimh_batch, write_vimh_info)

SAMPLE_RATE = 8000
DURATION_S = 1.0
_N_FFT, _HOP = 256, 128
_DB_FLOOR, _DB_CEIL = -80.0, 20.0
_LOW_HZ, _HIGH_HZ = 50.0, 3900.0
_BATCH = 256  # samples rendered at once: ~100 MB of float64 work arrays
_TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class SynthParameter:
    """A synthesiser parameter: its range in its own units and its value when not varied."""

    low: float
    high: float
    default: float
    description: str


SYNTH_PARAMETERS: dict[str, SynthParameter] = {
    "note_number": SynthParameter(36.0, 84.0, 60.0, "MIDI note number (pitch, continuous)"),
    "note_velocity": SynthParameter(1.0, 127.0, 100.0, "MIDI velocity (40 dB of gain)"),
    "filter_cutoff": SynthParameter(200.0, 3800.0, 1000.0, "low-pass cutoff frequency in Hz"),
    "filter_resonance": SynthParameter(0.5, 8.0, 0.707, "low-pass quality factor Q"),
    "decay_time": SynthParameter(0.05, 1.0, 0.3, "exponential decay time constant in s"),
}
_FILTER_PARAMS = ("filter_cutoff", "filter_resonance")
DEFAULT_PARAMS = ("note_number", "note_velocity")

DEFAULT_VIMH_PATH = "data/vimh-default"
DEFAULT_VIMH_PARAMS = ("note_number", "note_velocity", "filter_cutoff")
DEFAULT_VIMH_SAMPLES = 5000
DEFAULT_VIMH_SEED = 0
DEFAULT_VIMH_SIZE = (32, 32)


def synth_info(params: Sequence[str], *, size: tuple[int, int]) -> VimhInfo:
    """The VIMH metadata the synthesiser writes for these varying parameters (no rendering)."""
    unknown = [name for name in params if name not in SYNTH_PARAMETERS]
    if unknown or not params or len(set(params)) != len(params):
        raise DataError(f"params must be distinct names from {sorted(SYNTH_PARAMETERS)}, but got {list(params)}")
    height, width = size
    if not (4 <= height <= 1024 and 4 <= width <= 1024):
        raise DataError(f"size must be HxW with 4 <= H, W <= 1024, but got {height}x{width}")
    return VimhInfo(height=height, width=width, channels=1, parameter_names=tuple(params),
                    ranges={name: (SYNTH_PARAMETERS[name].low, SYNTH_PARAMETERS[name].high) for name in params})


def default_vimh_heads() -> dict[str, HeadInfo]:
    """Heads of the embedded default data set, described without generating it."""
    return synth_info(DEFAULT_VIMH_PARAMS, size=DEFAULT_VIMH_SIZE).heads()


# ---------------------------------------------------------------- rendering

def _polyblep(phase: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Band-limiting correction for the sawtooth's jump at phase 0 (two-sample polynomial).

    Only the samples within one step of the jump are touched, so the work is computed there only.
    """
    step = np.broadcast_to(step, phase.shape)
    correction = np.zeros_like(phase)
    after = phase < step
    x = phase[after] / step[after]
    correction[after] = 2 * x - x * x - 1
    before = phase > 1 - step
    x = (phase[before] - 1) / step[before]
    correction[before] = x * x + 2 * x + 1
    return correction


def _lowpass_gain(cutoff: np.ndarray, q: np.ndarray, n_fft: int) -> np.ndarray:
    """|H(e^jw)| of the RBJ-cookbook biquad low-pass on the rfft grid, per sample: [B, n_fft // 2 + 1].

    |b0 + b1 e^-jw + b2 e^-2jw|^2 = b0^2 + b1^2 + b2^2 + 2 (b0 b1 + b1 b2) cos w + 2 b0 b2 cos 2w, and
    likewise for the denominator: real arithmetic only. Applying the magnitude alone makes the
    filter zero-phase, which leaves the magnitude spectrogram as the biquad would.
    """
    w0 = 2 * np.pi * cutoff / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * q)
    cos_w0 = np.cos(w0)
    b0 = b2 = (1 - cos_w0) / 2
    b1 = 1 - cos_w0
    a0, a1, a2 = 1 + alpha, -2 * cos_w0, 1 - alpha
    w = (2 * np.pi * np.arange(n_fft // 2 + 1) / n_fft)[None, :]
    cos1, cos2 = np.cos(w), np.cos(2 * w)

    def power(c0, c1, c2):
        return c0 ** 2 + c1 ** 2 + c2 ** 2 + 2 * (c0 * c1 + c1 * c2) * cos1 + 2 * c0 * c2 * cos2

    # clip: the numerator is an exact zero at w = pi and rounds to tiny negatives near it
    return np.sqrt(np.clip(power(b0, b1, b2), 0.0, None) / power(a0, a1, a2)).astype(np.float32)


def _frequency_matrix(rows: int) -> np.ndarray:
    """Linear interpolation of STFT bins at ``rows`` log-spaced frequencies: [rows, bins]."""
    bins = _N_FFT // 2 + 1
    position = np.geomspace(_LOW_HZ, _HIGH_HZ, rows) / (SAMPLE_RATE / _N_FFT)
    lower = np.floor(position).astype(int)
    frac = position - lower
    matrix = np.zeros((rows, bins))
    matrix[np.arange(rows), lower] = 1 - frac
    matrix[np.arange(rows), np.minimum(lower + 1, bins - 1)] += frac
    return matrix


def _time_matrix(frames: int, columns: int) -> np.ndarray:
    """Area averaging of ``frames`` STFT frames into ``columns``: [columns, frames]."""
    edges = np.linspace(0.0, frames, columns + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    cells = np.arange(frames)[None, :]
    overlap = np.clip(np.minimum(ends, cells + 1) - np.maximum(starts, cells), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def render(values: dict[str, np.ndarray], *, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render one batch: parameter values [B] each -> (uint8 images [B, 1, H, W], dB range [B, 2])."""
    # varying parameters are columns [B, 1]; fixed ones stay scalars so their terms broadcast cheaply
    p = {name: np.asarray(values[name], dtype=np.float64)[:, None] if name in values else spec.default
         for name, spec in SYNTH_PARAMETERS.items()}
    count = len(next(iter(values.values())))
    length = int(SAMPLE_RATE * DURATION_S)
    t = np.arange(length) / SAMPLE_RATE
    f0 = np.broadcast_to(440.0 * 2.0 ** ((p["note_number"] - 69.0) / 12.0), (count, 1))
    phase = np.mod(f0 * t, 1.0)  # float64: f0 * t reaches ~1000 cycles
    saw = (2.0 * phase - 1.0 - _polyblep(phase, f0 / SAMPLE_RATE)).astype(np.float32)
    gain = 10.0 ** (-40.0 * (127.0 - p["note_velocity"]) / 126.0 / 20.0)
    envelope = np.exp(-t / p["decay_time"]) * np.minimum(1.0, t / 0.005) * gain
    signal = saw * envelope.astype(np.float32)
    if any(name in values for name in _FILTER_PARAMS):
        padded = 2 * length
        spectrum = np.fft.rfft(signal, n=padded)
        spectrum *= _lowpass_gain(np.broadcast_to(p["filter_cutoff"], (count, 1)), p["filter_resonance"], padded)
        signal = np.fft.irfft(spectrum, n=padded)[:, :length]
    window = np.hanning(_N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(signal, _N_FFT, axis=1)[:, ::_HOP]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=2)) * np.float32(2.0 / window.sum())
    height, width = size
    resampled = (_time_matrix(magnitude.shape[1], width).astype(np.float32) @ magnitude
                 @ _frequency_matrix(height).T.astype(np.float32))
    decibels = 20.0 * np.log10(resampled + np.float32(1e-10))
    image = np.flip(np.swapaxes(decibels, 1, 2), axis=1)  # [B, H, W], low frequencies at the bottom
    scaled = np.clip((image - _DB_FLOOR) / (_DB_CEIL - _DB_FLOOR), 0.0, 1.0)
    pixels = np.round(scaled * 255.0).astype(np.uint8)[:, None]
    db_range = np.stack([decibels.min(axis=(1, 2)), decibels.max(axis=(1, 2))], axis=1).astype(np.float32)
    return pixels, db_range


def progress_bar(stream: TextIO, *, label: str = "generating", width: int = 30) -> Callable[[int, int], None]:
    """A minimal text progress display on ``stream``: call it with (done, total). A terminal gets
    a bar redrawn in place; a pipe or a log file a line at every tenth done."""
    interactive = stream.isatty()
    shown = -1  # tenths already written (pipe or file)

    def update(done: int, total: int) -> None:
        nonlocal shown
        if interactive:
            filled = width * done // total
            stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done >= total:
                stream.write("\n")
        elif 10 * done // total > shown:
            shown = 10 * done // total
            stream.write(f"{label}: {done}/{total}\n")
        stream.flush()

    return update


# 2 samples made 1 to train and 1 to test: no validation sample could be carved from the training
# pool, and the set could not be loaded
MIN_SAMPLES = 3
SAMPLES_RULE = f"an integer >= {MIN_SAMPLES} (two to train, one of them to validate, one to test)"


def generate_vimh(out: Path | str, *, samples: int, seed: int, params: Sequence[str] = DEFAULT_PARAMS,
                  size: tuple[int, int] = DEFAULT_VIMH_SIZE, fmt: Literal["binary", "pickle"] = "binary",
                  force: bool = False, progress: Callable[[int, int], None] | None = None) -> Path:
    """Synthesise ``samples`` sounds into a VIMH directory (80 % train_batch, 20 % test_batch).

    Deterministic for a seed. Refuses a non-empty ``out`` unless ``force`` (then the three VIMH
    files are replaced and nothing else is touched).
    """
    info = synth_info(params, size=size)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < MIN_SAMPLES:
        raise DataError(f"samples must be {SAMPLES_RULE}, but got {samples!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise DataError(f"output directory must be absent or empty (or pass --force), but got {out} "
                        f"with existing content")
    rng = np.random.default_rng(seed)
    values = {name: rng.uniform(info.ranges[name][0], info.ranges[name][1], size=samples) for name in params}
    images = np.empty((samples, 1, *size), dtype=np.uint8)
    db_range = np.empty((samples, 2), dtype=np.float32)
    for start in range(0, samples, _BATCH):
        part = slice(start, start + _BATCH)
        images[part], db_range[part] = render({name: v[part] for name, v in values.items()}, size=size)
        if progress is not None:
            progress(min(start + _BATCH, samples), samples)
    labels = {name: quantize(v, unit_range=info.ranges[name]) for name, v in values.items()}
    n_train = samples - max(1, round(samples * (1 - _TRAIN_FRACTION)))
    out.mkdir(parents=True, exist_ok=True)
    for name, part in zip(SPLIT_FILES, (slice(0, n_train), slice(n_train, samples))):
        batch = VimhBatch(images=images[part], labels={k: v[part] for k, v in labels.items()})
        write_vimh_batch(out / name, batch, info=info, fmt=fmt, spectrogram_range=db_range[part])
    descriptions = {name: {"description": SYNTH_PARAMETERS[name].description} for name in params}
    write_vimh_info(out, info=info, extra={
        "dataset_name": f"vimh-{size[0]}x{size[1]}_{SAMPLE_RATE}Hz_{DURATION_S:g}s_saw_{len(params)}p",
        "generator": {"model": "polyblep sawtooth, exponential decay, optional RBJ low-pass",
                      "seed": seed, "samples": samples, "train_samples": n_train,
                      "sample_rate": SAMPLE_RATE, "duration_s": DURATION_S,
                      "filter": any(name in params for name in _FILTER_PARAMS),
                      "fixed": {k: p.default for k, p in SYNTH_PARAMETERS.items()
                                if k not in params and (k not in _FILTER_PARAMS
                                                        or any(n in params for n in _FILTER_PARAMS))}},
        "parameter_mappings": descriptions,
    })
    return out


# ---------------------------------------------------------------- the embedded default data set

def check_complete(directory: Path) -> None:
    """DataError unless ``directory`` holds all three VIMH files."""
    missing = [name for name in (*SPLIT_FILES, INFO_FILE) if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory}: a VIMH directory must hold {', '.join((*SPLIT_FILES, INFO_FILE))}, "
                        f"but got no {', '.join(missing)} (an existing directory is never overwritten: "
                        f"remove it or point data.path elsewhere)")


def materialise(target: Path, build: Callable[[Path], object]) -> Path:
    """Create ``target`` by ``build``-ing into a fresh sibling temp dir and renaming it into place.

    The rename is atomic, so readers never see a half-written directory. If another process
    published ``target`` first, its result is kept and ours is discarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # a plain mkdir (not mkdtemp, which makes it 0700) so the published directory has normal permissions
    scratch = target.parent / f".{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        build(scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():
                raise
            check_complete(target)  # lost the race: use the winner's data
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    return target


def ensure_default_vimh(path: Path | str = DEFAULT_VIMH_PATH, *, samples: int = DEFAULT_VIMH_SAMPLES,
                        progress: Callable[[int, int], None] | None = None) -> Path:
    """The default data set at ``path``: generated there on first use, never overwritten.

    A directory that exists but lacks some of the VIMH files is a DataError, not regenerated.
    """
    target = Path(path)
    if target.exists():
        check_complete(target)
        return target

    def build(scratch: Path) -> None:
        generate_vimh(scratch, samples=samples, seed=DEFAULT_VIMH_SEED, params=DEFAULT_VIMH_PARAMS,
                      size=DEFAULT_VIMH_SIZE, force=True, progress=progress)

    return materialise(target, build)
