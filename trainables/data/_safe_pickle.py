"""A restricted unpickler: builtin containers, numbers, bytes and numpy arrays, nothing else.

``pickle.load`` runs any callable a file names (``os.system`` ...), so data files from elsewhere
are read with an allow-list of the globals that plain data needs. Every other global is refused
before it is imported or called.

An allow-list of globals is not enough on its own: the BUILD opcode hands a file-chosen state to
the object's ``__setstate__``, and a numpy dtype whose state says "no object-array guard" makes
numpy read raw file bytes as object pointers (a crash, or worse). So the unpickler is the
pure-Python one with its BUILD handler replaced: only dtypes and arrays may be built, a dtype's
state may differ from numpy's own state for that dtype in the byte order alone, and object,
void and structured dtypes are refused wherever a dtype enters (constructor, array, scalar,
buffer). After loading, any object array left in the result is refused too.
"""

from __future__ import annotations

import _codecs
import builtins
import collections
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from ._types import DataError

# bool, int, uint, float, complex, bytes, str: fixed-size plain values, never object pointers
_DTYPE_KINDS = frozenset("biufcSU")
_BYTE_ORDERS = frozenset("<>|=")
_LATIN1 = frozenset({"latin1", "latin-1"})


class _Refused(pickle.UnpicklingError):
    """A construct outside the allow-list (kept apart from corrupt-stream errors for the message)."""


class _NdarrayRef:
    """Stands for ``numpy.ndarray`` in a file: only ``_reconstruct`` may use it, nothing can call it."""

    __slots__ = ()


_NDARRAY = _NdarrayRef()


def _checked_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.hasobject:
        raise _Refused(f"pickled numpy dtypes must be plain numbers, bytes or str (kinds "
                       f"{''.join(sorted(_DTYPE_KINDS))}), but got {dtype.str!r} (kind {dtype.kind!r})")
    return dtype


def _dtype(spec: Any, align: bool = False, copy: bool = True) -> np.dtype:
    # A type code only (lists/tuples/dicts describe structured dtypes), and always a copy: with
    # copy=False numpy returns its process-wide singleton, which a later BUILD would then modify.
    if not isinstance(spec, (str, bytes)):
        raise _Refused(f"pickled numpy dtypes must be given by a type code, but got {type(spec).__name__}")
    return _checked_dtype(np.dtype(spec, bool(align), True))


def _as_dtype(value: Any) -> np.dtype:
    return value if isinstance(value, np.dtype) else _dtype(value)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise _Refused(f"_reconstruct may only build numpy.ndarray, but got {type(subtype).__name__}")
    dtype = _checked_dtype(_as_dtype(dtype))
    # numpy writes an empty array here and its BUILD state fills it (from bytes in the file); any
    # other shape is an uninitialised buffer of a size the file chose: leftover memory as data, or
    # gigabytes asked for by a few bytes of pickle.
    if shape != (0,):
        raise _Refused(f"_reconstruct may only make the empty array numpy writes, of shape (0,), but got {shape!r}")
    return _multiarray._reconstruct(np.ndarray, shape, dtype)


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    # numpy pickles a scalar as (dtype, its raw bytes); a plain dtype makes the bytes plain values
    if not isinstance(dtype, np.dtype) or not isinstance(data, (bytes, str)) or len(data) != dtype.itemsize:
        raise _Refused(f"a pickled numpy scalar must be a dtype and its {getattr(dtype, 'itemsize', '?')} "
                       f"raw bytes, but got {type(dtype).__name__}, {type(data).__name__}")
    return _multiarray.scalar(_checked_dtype(dtype), data)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> np.ndarray:
    return _numeric._frombuffer(buf, _checked_dtype(_as_dtype(dtype)), shape, order, axis_order)


def _encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # protocol <= 2 stores bytes as _codecs.encode(str, "latin1"); other codecs are not data
    if not isinstance(text, str) or encoding not in _LATIN1:
        raise _Refused(f"_codecs.encode may only turn str into latin1 bytes, but got "
                       f"{type(text).__name__} with encoding {encoding!r}")
    return _codecs.encode(text, encoding, errors)


def _copying(constructor: type) -> Any:
    """``constructor`` (bytes, bytearray) that copies data but makes no zeroed buffer of a size: a
    few bytes of pickle would otherwise ask for gigabytes."""

    def build(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise _Refused(f"builtins.{constructor.__name__} may only copy data, but got a size of {args[0]!r}")
        return constructor(*args)

    return build


_BUILTINS = ("bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "set",
             "slice", "str", "tuple", "bool")
_CONSTRUCTORS = {name: _copying(getattr(builtins, name)) if name in ("bytes", "bytearray") else getattr(builtins, name)
                 for name in _BUILTINS}  # fmt: skip
_ALLOWED: dict[tuple[str, str], Any] = {
    # __builtin__: Python 2's name, which Python 3 also writes at protocol 2 (CIFAR-10 python batches)
    **{(module, name): value for module in ("builtins", "__builtin__") for name, value in _CONSTRUCTORS.items()},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    # under the module names numpy 1.x and 2.x write
    **{(module, "_reconstruct"): _reconstruct for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _scalar for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _frombuffer for module in ("numpy.core.numeric", "numpy._core.numeric")},
}


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """Only the byte order may differ from the state numpy itself gives this dtype."""
    if not (isinstance(state, tuple) and len(state) == 8):
        raise _Refused(f"a numpy dtype state must be numpy's 8-tuple, but got {state!r}")
    order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
    expected = np.dtype(dtype.str).__reduce__()[2]
    if order not in _BYTE_ORDERS or state[:1] + state[2:] != expected[:1] + expected[2:]:
        raise _Refused(f"a numpy dtype state must match numpy's own for {dtype.str!r} up to the byte order "
                       f"{expected!r}, but got {state!r}")


def _check_array_state(state: Any) -> None:
    """ndarray state: ([version,] shape, dtype, is_fortran, raw bytes); never a list of objects."""
    if not (isinstance(state, tuple) and len(state) in (4, 5) and isinstance(state[-3], np.dtype)
            and isinstance(state[-1], (bytes, bytearray, str))):
        raise _Refused(f"a numpy array state must hold a dtype and raw bytes, but got "
                       f"{tuple(type(part).__name__ for part in state) if isinstance(state, tuple) else state!r}")
    _checked_dtype(state[-3])


class _RestrictedUnpickler(pickle._Unpickler):  # the Python one: its opcode handlers can be replaced
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"pickle may only reference builtin containers, numbers, bytes and numpy arrays, "
                f"but got global {module}.{name}") from None

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif type(inst) is np.ndarray:
            _check_array_state(state)
        else:
            raise _Refused(f"only numpy dtypes and arrays may take a pickled state, but got {type(inst).__name__}")
        inst.__setstate__(self.stack.pop())
        if isinstance(inst, np.dtype):
            _checked_dtype(inst)

    dispatch[pickle.BUILD[0]] = load_build


def _refuse_object_arrays(value: Any) -> None:
    """Walk the loaded containers (cycles included) for arrays whose items are Python objects."""
    seen: set[int] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            _checked_dtype(item.dtype)
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, slice):
            todo.extend((item.start, item.stop, item.step))


def safe_load(path: Path, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``path`` with the allow-list; any refusal or corruption raises DataError.

    ``encoding`` is pickle's: "bytes" keeps Python 2 strings (CIFAR-10) as bytes.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: file must be readable, but got {exc}") from exc
    try:
        value = _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
        _refuse_object_arrays(value)
        return value
    except _Refused as exc:
        raise DataError(f"{path}: refusing to unpickle: {exc}") from exc
    except Exception as exc:  # truncated or garbled streams raise many types (EOFError, ValueError ...)
        raise DataError(f"{path}: file must be a readable pickle, but got {type(exc).__name__}: {exc}") from exc
