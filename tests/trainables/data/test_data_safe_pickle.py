import os
import pickle
import subprocess

import numpy as np
import pytest

from trainables.data import DataError
from trainables.data._safe_pickle import safe_load


class _SystemCall:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Popen:
    def __reduce__(self):
        return subprocess.Popen, (["true"],)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_before_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data": _SystemCall(f"touch {marker}")}, protocol=protocol))
    with pytest.raises(DataError, match=r"evil.pkl: refusing to unpickle: .*but got global (posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [_Popen(), eval, getattr])
def test_other_callables_are_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match="pickle may only reference builtin containers"):
        safe_load(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_numpy_arrays_load(tmp_path, protocol):
    value = {"a": [1, 2.5, b"xy", (3, None)], "b": {1, 2}, "arr": np.arange(12, dtype=np.uint8).reshape(3, 4),
             "f": np.float32(1.5), "i": np.int64(7)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    loaded = safe_load(path)
    assert loaded["a"] == value["a"] and loaded["b"] == {1, 2} and loaded["i"] == 7
    assert loaded["arr"].dtype == np.uint8 and (loaded["arr"] == value["arr"]).all()


def test_truncated_pickle_is_a_data_error(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"x": list(range(100))}, protocol=4)[:30])
    with pytest.raises(DataError, match="cut.pkl: file must be a readable pickle"):
        safe_load(path)
