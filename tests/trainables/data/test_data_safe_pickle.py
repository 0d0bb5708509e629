import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numpy._core import multiarray

from trainables.data import DataError
from trainables.data._safe_pickle import _refuse_object_arrays, _Refused, safe_load


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


# Hostile numpy payloads: a dtype whose pickled state (BUILD) drops numpy's object-array guard or
# lies about its item size makes numpy read raw file bytes as pointers or past the buffer. Before
# the fix the first two crashed the interpreter (SIGSEGV), so they run in a child process: a
# regression fails this test instead of killing pytest.
_HOSTILE = textwrap.dedent("""
    import json, pickle, sys
    from pathlib import Path
    import numpy as np
    from numpy._core import multiarray
    from trainables.data import DataError
    from trainables.data._safe_pickle import safe_load

    class Dtype:
        def __init__(self, spec, state): self.spec, self.state = spec, state
        def __reduce__(self): return np.dtype, (self.spec, False, True), self.state

    class Array:
        def __init__(self, dtype): self.dtype = dtype
        def __reduce__(self):
            return multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), self.dtype, False, b"AAAAAAAA")

    class Scalar:
        def __init__(self, dtype): self.dtype = dtype
        def __reduce__(self): return multiarray.scalar, (self.dtype, b"AAAAAAAA")

    object_no_guard = Dtype("O8", (3, "|", None, None, None, -1, -1, 0))
    huge_items = Dtype("u8", (3, "<", None, None, None, 1 << 20, 1, 0))
    object_flags = Dtype("u8", (3, "<", None, None, None, -1, -1, 63))
    payloads = {"array_object": Array(object_no_guard), "scalar_object": Scalar(object_no_guard),
                "array_itemsize": Array(huge_items), "scalar_flags": Scalar(object_flags)}
    for name, payload in payloads.items():
        path = Path(sys.argv[1]) / name
        path.write_bytes(pickle.dumps(payload, protocol=2))
        try:
            safe_load(path)
            outcome = "loaded"
        except DataError as exc:
            outcome = str(exc)
        print(json.dumps([name, outcome]), flush=True)
""")


def test_hostile_numpy_dtype_states_are_refused_without_crashing(tmp_path):
    child = subprocess.run([sys.executable, "-c", _HOSTILE, str(tmp_path)], capture_output=True, text=True,
                           timeout=120, cwd=os.getcwd())
    assert child.returncode == 0, child.stderr[-2000:]
    outcomes = dict(json.loads(line) for line in child.stdout.splitlines())
    assert set(outcomes) == {"array_object", "scalar_object", "array_itemsize", "scalar_flags"}
    for name in ("array_object", "scalar_object"):
        assert f"{name}: refusing to unpickle: pickled numpy dtypes must be plain" in outcomes[name]
        assert "but got '|O'" in outcomes[name]
    for name in ("array_itemsize", "scalar_flags"):
        assert f"{name}: refusing to unpickle: a numpy dtype state must match numpy's own" in outcomes[name]


class _Reduce:
    """Pickles as ``func(*args)`` with an optional BUILD ``state``."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@pytest.mark.parametrize(("payload", "message"), [
    (_Reduce(np.dtype, ([("a", "O")], False, True)), "dtypes must be given by a type code, but got list"),
    (_Reduce(np.dtype, ("V8", False, True)), "but got '|V8'"),
    (_Reduce(np.ndarray, ((2,), "O")), "object is not callable"),
    (_Reduce(multiarray._reconstruct, (np.ndarray, (2,), "O")), "but got '|O'"),
    (_Reduce(multiarray.scalar, (np.dtype("f4"), b"AAAAAAAA")), "a dtype and its 4 raw bytes"),
    (_Reduce(np.dtype, ("u1", False, True), (None, {"x": 1})), "a numpy dtype state must be numpy's 8-tuple"),
    (_Reduce(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype("u1"), False, [1])),
     "a numpy array state must hold a dtype and raw bytes"),
    # no state follows: 300,000 CIFAR images of leftover memory from a file of a few hundred bytes
    (_Reduce(multiarray._reconstruct, (np.ndarray, (300_000, 3072), b"B")),
     "_reconstruct may only make the empty array numpy writes, of shape (0,), but got (300000, 3072)"),
    (_Reduce(multiarray._reconstruct, (np.ndarray, (4,), b"B"), (1, (4,), np.dtype("u1"), False, b"\x01\x02\x03\x04")),
     "but got (4,)"),
])
def test_unsafe_numpy_constructions_are_refused(tmp_path, payload, message):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match=r"evil.pkl: (refusing to unpickle|file must be a readable pickle)") as info:
        safe_load(path)
    assert message in str(info.value)


def test_state_may_only_be_set_on_numpy_objects(tmp_path):
    # BUILD on an allowed callable would rewrite it (e.g. its __defaults__) for every later load
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02cnumpy\ndtype\n(}X\x0c\x00\x00\x00__defaults__(\x88\x89tstb.")
    with pytest.raises(DataError, match="only numpy dtypes and arrays may take a pickled state, but got function"):
        safe_load(path)


def test_codecs_encode_is_latin1_only(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Reduce(__import__("_codecs").encode, (b"x" * 10, "zlib")), protocol=2))
    with pytest.raises(DataError, match="_codecs.encode may only turn str into latin1 bytes"):
        safe_load(path)


def test_python2_cifar_style_array_loads(tmp_path):
    # what a Python 2 numpy writes (byte strings for the dtype code, byte order and pixels)
    path = tmp_path / "py2.pkl"
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85U\x01b"
                     b"\x87Rq\x02(K\x01K\x03\x85cnumpy\ndtype\nU\x02u1\x89\x88\x87R(K\x03U\x01|NNN"
                     b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03\x00\x01\x02tb.")
    loaded = safe_load(path, encoding="bytes")
    assert loaded.dtype == np.uint8 and loaded.tolist() == [0, 1, 2]


def test_object_arrays_left_in_the_result_are_refused():
    nested = {"ok": [np.zeros(2)], "deep": [(1, {b"k": np.array([None, 1], dtype=object)})]}
    nested["ok"].append(nested)  # cycles must not loop forever
    with pytest.raises(_Refused, match="but got '|O'"):
        _refuse_object_arrays(nested)
    _refuse_object_arrays({"ok": [np.zeros(2), np.array([b"a"])]})


@pytest.mark.parametrize("constructor", ["bytes", "bytearray"])
def test_a_pickle_may_not_ask_for_a_buffer_of_a_size(tmp_path, constructor):
    # 32 bytes of pickle made a 2 GiB zeroed buffer: builtins.bytearray(2**31)
    path = tmp_path / "big.pkl"
    path.write_bytes(b"\x80\x04cbuiltins\n" + constructor.encode() + b"\n\x8a\x05\x00\x00\x00\x80\x00\x85R.")
    with pytest.raises(DataError, match=f"builtins.{constructor} may only copy data, but got a size of 2147483648"):
        safe_load(path)


def test_builtins_under_python_2_s_name_load_as_python_3_writes_them_at_protocol_2(tmp_path):
    path = tmp_path / "py3-protocol2.pkl"
    value = {"empty": b"", "frozen": frozenset({1}), "buffer": bytearray(b"ab")}
    path.write_bytes(pickle.dumps(value, protocol=2))
    assert b"__builtin__" in path.read_bytes()
    assert safe_load(path) == value
