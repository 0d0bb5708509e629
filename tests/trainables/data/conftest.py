"""Small VIMH fixtures written in the real format under tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainables.data.vimh import SPLIT_FILES, VimhBatch, VimhInfo, write_vimh_batch, write_vimh_info

PARAMS = ("pitch", "level")
RANGES = {"pitch": (36.0, 84.0), "level": (0.0, 1.0)}


def random_batch(rng: np.random.Generator, count: int, info: VimhInfo) -> VimhBatch:
    images = rng.integers(0, 256, size=(count, info.channels, info.height, info.width), dtype=np.uint8)
    labels = {name: rng.integers(0, 256, size=count).astype(np.uint8) for name in info.parameter_names}
    return VimhBatch(images=images, labels=labels)


@pytest.fixture
def make_vimh(tmp_path: Path):
    """make_vimh(channels=1, train=40, test=10, fmt="binary") -> (directory, info, train, test)."""
    def make(*, channels: int = 1, height: int = 6, width: int = 5, train: int = 40, test: int = 10,
             fmt: str = "binary", name: str = "vimh", seed: int = 0):
        directory = tmp_path / name
        directory.mkdir()
        info = VimhInfo(height=height, width=width, channels=channels, parameter_names=PARAMS, ranges=RANGES)
        rng = np.random.default_rng(seed)
        batches = [random_batch(rng, count, info) for count in (train, test)]
        for file_name, batch in zip(SPLIT_FILES, batches):
            write_vimh_batch(directory / file_name, batch, info=info, fmt=fmt)
        write_vimh_info(directory, info=info)
        return directory, info, batches[0], batches[1]
    return make
