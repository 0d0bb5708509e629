"""The ``vimh`` data set kind: a VIMH directory, or the embedded default generated on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainables.shell import python_command

from ._split import assemble, plan_splits
from ._types import DataError, DataSpec, HeadInfo, MultiheadDataset
from ._vimh_format import SPLIT_FILES, read_vimh_batch, read_vimh_info
from ._vimh_synth import (DEFAULT_VIMH_PATH, DEFAULT_VIMH_SAMPLES, DEFAULT_VIMH_SEED, check_complete,
                          default_vimh_heads, ensure_default_vimh)

_DEFAULT_PARTS = Path(DEFAULT_VIMH_PATH).parts


def _directory(spec: DataSpec) -> tuple[Path, bool]:
    """The VIMH directory of ``spec`` and whether it is the embedded default.

    A path ending in data/vimh-default counts as the default wherever it is rooted, so a driver
    that makes paths absolute (trial processes may run in another cwd) still gets generation.
    """
    path = Path(spec.path if spec.path is not None else DEFAULT_VIMH_PATH)
    return path, path.parts[-len(_DEFAULT_PARTS):] == _DEFAULT_PARTS


def _missing(path: Path) -> DataError:
    generate = python_command("-m", "trainables.data.vimh", "generate", "--out", str(path),
                              "--samples", str(DEFAULT_VIMH_SAMPLES), "--seed", str(DEFAULT_VIMH_SEED))
    return DataError(f"{path}: a VIMH directory must exist, but got nothing there; create one with `{generate}`")


def describe_vimh(spec: DataSpec) -> dict[str, HeadInfo]:
    """Heads from the JSON metadata only; the default data set is described without generating it."""
    path, is_default = _directory(spec)
    if not path.exists():
        if is_default:
            return default_vimh_heads()
        raise _missing(path)
    check_complete(path)
    return read_vimh_info(path).heads()


def prepare_vimh(spec: DataSpec, progress: Callable[[int, int], None] | None) -> None:
    """Generate the embedded default data set if it is not there yet, reporting (done, total) sounds."""
    path, is_default = _directory(spec)
    if is_default:
        ensure_default_vimh(path, progress=progress)


def load_vimh(spec: DataSpec) -> MultiheadDataset:
    """Read train_batch (-> train + val) and test_batch; stratify on the first parameter's levels."""
    path, is_default = _directory(spec)
    if is_default:
        ensure_default_vimh(path)
    elif not path.exists():
        raise _missing(path)
    else:
        check_complete(path)
    info = read_vimh_info(path)
    train, test = (read_vimh_batch(path / name, info=info) for name in SPLIT_FILES)
    first = info.parameter_names[0]
    plan = plan_splits(pool_strata=train.labels[first], test_strata=test.labels[first],
                       pool_size=len(train.images), test_size=len(test.images), spec=spec)
    return assemble(pool=(train.images, train.labels), test=(test.images, test.labels), plan=plan,
                    heads=info.heads())
