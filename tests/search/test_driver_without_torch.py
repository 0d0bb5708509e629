"""The search driver validates spaces, plans a search and loads its data set without importing
torch (about 180 MB and a second of start-up): only the trial workers train. Nor does it import
Ray Tune for that: ``search run`` imports it in a thread while Ray starts."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_DRIVER = """
import sys
from pathlib import Path
from search.commands import run, validate  # the CLI modules a search goes through
from search.driver import SearchOptions, plan_search, prepare_data
from search.space import load_space
from trainables.config import TrialConfig

for path in sorted(Path("spaces").glob("*.yaml")):
    space = load_space(path)
    TrialConfig.from_flat(space.sample(seed=0))  # a trial's config, as the driver's resolver makes it
space = load_space("spaces/digits.yaml")
plan_search(space, SearchOptions(storage=sys.argv[1]))
data = prepare_data(space)
print(type(data.train.images).__module__,
      sorted(m for m in ("torch", "matplotlib", "ray.tune") if m in sys.modules))
"""


def test_the_driver_plans_without_torch_matplotlib_or_ray_tune(tmp_path):
    out = subprocess.run([sys.executable, "-c", _DRIVER, str(tmp_path / "runs")], cwd=ROOT, capture_output=True,
                         text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["numpy", "[]"]


def test_an_import_that_fails_in_the_background_is_raised_by_the_callers_own_import(monkeypatch, tmp_path):
    import sys
    import threading

    import search.driver

    (tmp_path / "losstune_boom.py").write_text("raise RuntimeError('boom')\n")  # exists, and fails to import
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(search.driver, "_RUN_MODULE", "losstune_boom")
    monkeypatch.setitem(search.driver._LAZY, "run_search", "losstune_boom")
    escaped: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    thread = search.driver.import_run_in_background()
    thread.join(timeout=60)
    assert not thread.is_alive() and escaped == []  # the thread kept the error to itself and ended
    assert "losstune_boom" not in sys.modules  # so the caller's import runs it again...
    with pytest.raises(RuntimeError, match="boom"):  # ...and raises the error where it is seen
        search.driver.run_search
