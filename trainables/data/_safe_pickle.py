"""A restricted unpickler: builtin containers, numbers, bytes and numpy arrays, nothing else.

``pickle.load`` runs any callable a file names (``os.system`` ...), so data files from elsewhere
are read with an allow-list of the globals that plain data needs. Every other global is refused
before it is imported or called.
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

_BUILTINS = ("bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "set",
             "slice", "str", "tuple", "bool")
_ALLOWED: dict[tuple[str, str], Any] = {
    **{("builtins", name): getattr(builtins, name) for name in _BUILTINS},
    ("__builtin__", "set"): set,  # Python 2 pickles (CIFAR-10 python batches)
    ("collections", "OrderedDict"): collections.OrderedDict,
    # protocol <= 2 stores bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"): _codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # array reconstruction, under the module names numpy 1.x and 2.x write
    **{(module, "_reconstruct"): _multiarray._reconstruct
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _multiarray.scalar
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _numeric._frombuffer
       for module in ("numpy.core.numeric", "numpy._core.numeric")},
}


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list (kept apart from corrupt-stream errors for the message)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"pickle may only reference builtin containers, numbers, bytes and numpy arrays, "
                f"but got global {module}.{name}") from None


def safe_load(path: Path, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``path`` with the allow-list; any refusal or corruption raises DataError.

    ``encoding`` is pickle's: "bytes" keeps Python 2 strings (CIFAR-10) as bytes.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: file must be readable, but got {exc}") from exc
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except _Refused as exc:
        raise DataError(f"{path}: refusing to unpickle: {exc}") from exc
    except Exception as exc:  # truncated or garbled streams raise many types (EOFError, ValueError ...)
        raise DataError(f"{path}: file must be a readable pickle, but got {type(exc).__name__}: {exc}") from exc
