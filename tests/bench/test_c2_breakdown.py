"""bench/c2_breakdown.py's Ray runners on short digits trials (3 epochs): its Tune-like actor hands
each epoch over and trains on only when asked, as Tune's function API does; both Ray runners run
every trial to its end."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "c2_breakdown.py"


@pytest.fixture(scope="module")
def bench():
    # bench/ is not a package: load the script by path
    spec = importlib.util.spec_from_file_location("bench_c2_breakdown", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    from ray import cloudpickle

    # Ray's workers cannot import the script by that name: send its functions by value, as Ray
    # does for a script run as __main__
    cloudpickle.register_pickle_by_value(module)
    yield module
    cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="module")
def configs(bench, tmp_path_factory):
    _, configs = bench.space_file(tmp_path_factory.mktemp("c2"), "short", 1, trials=3)
    return configs


def test_handoff_trains_the_next_epoch_only_when_asked(bench, configs):
    runner = bench._HandoffRunner()
    runner.start(configs[0])
    first = runner.next()
    assert first > 0
    time.sleep(1.0)  # several epochs' time: a runner that trained on would have queued the next result
    assert runner.results.empty()
    epochs = [runner.next(), runner.next()]
    assert all(e > 0 for e in epochs)
    assert runner.next() is None  # 3 epochs, then the end of the trial


@pytest.mark.parametrize("runner", ["_ray_tasks", "_ray_actor_handoff"])
def test_ray_runners_run_every_trial_to_its_end(bench, configs, ray_session, runner):
    done = getattr(bench, runner)(configs)
    assert len(done) == len(configs)
    assert all(len(epochs) == 3 and all(e > 0 for e in epochs) for _, epochs in done)
    ends = [end for end, _ in done]
    assert ends == sorted(ends)  # in the order the driver saw them end
