"""Errors a trial raises reach the driver through Ray, which copies and pickles them: each must come
back whole (type, message and fields), or the driver shows Ray's TypeError instead of the reason."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from trainables._checkpoint import CheckpointError
from trainables.data import DataError
from trainables.data._types import DataSettingError
from trainables.device import DeviceOutOfMemory
from trainables.flat_keys import FlatKeyError
from trainables.plugins import PluginError
from trainables.settings import SettingError
from trainables.train import TrainingDiverged

ERRORS = [
    (PluginError("mine", "FileNotFoundError: rx_enabled.txt"), ("plugin", "reason")),
    (SettingError("train.lr", "a number > 0", -1), ("key", "rule", "value")),
    (DataSettingError("data.limit", "an integer >= 1", 0), ("key", "rule", "value")),
    (CheckpointError(Path("/runs/c.pt"), "no checkpoint"), ("path", "reason")),
    (FlatKeyError("heads..x"), ("key",)),
    (DeviceOutOfMemory(device="GPU", fraction=0.5, cap_mb=10.0, peak_mb=9.0, held_by_others_mb=1.0),
     ("device", "fraction", "cap_mb", "peak_mb", "held_by_others_mb")),
    (DataError("train split empty"), ()),
    (TrainingDiverged("training loss must stay finite, but got nan"), ()),
]


@pytest.mark.parametrize(("error", "fields"), ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
@pytest.mark.parametrize("how", [copy.copy, lambda e: pickle.loads(pickle.dumps(e))], ids=["copy", "pickle"])
def test_an_error_comes_back_whole_from_a_copy_and_a_pickle(error, fields, how):
    again = how(error)
    assert type(again) is type(error) and str(again) == str(error)
    assert [getattr(again, f) for f in fields] == [getattr(error, f) for f in fields]
