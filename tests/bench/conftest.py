"""The benchmark scripts' tests: each test module names its script in ``BENCH`` and gets it, loaded
by path (bench/ is not a package), from the ``bench`` fixture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench(request):
    """The requesting module's ``bench/<BENCH>``, as the module ``bench_<its stem>``."""
    path = BENCH_DIR / request.module.BENCH
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
