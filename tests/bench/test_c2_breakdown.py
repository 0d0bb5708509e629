"""bench/c2_breakdown.py on short digits trials (3 epochs): its Tune-like actor hands each epoch
over and trains on only when asked, as Tune's function API does, and passes a failure on; both Ray
runners run every trial once, to its end; the search's epoch times come from Tune's result files."""

from __future__ import annotations

import json
import time

import pytest

BENCH = "c2_breakdown.py"


@pytest.fixture(scope="module")
def bench(bench):
    from ray import cloudpickle

    # Ray's workers cannot import the script by that name: send its functions by value, as Ray
    # does for a script run as __main__
    cloudpickle.register_pickle_by_value(bench)
    yield bench
    cloudpickle.unregister_pickle_by_value(bench)


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


def test_handoff_raises_what_the_trial_raised(bench, configs):
    from trainables.settings import SettingError

    runner = bench._HandoffRunner()
    runner.start({**configs[0], "train.lr": -1.0})
    with pytest.raises(SettingError, match="train.lr"):
        runner.next()


@pytest.mark.parametrize("runner", ["_ray_tasks", "_ray_actor_handoff"])
def test_ray_runners_run_every_trial_once_to_its_end(bench, configs, ray_session, runner):
    done = getattr(bench, runner)(configs)
    assert sorted(lr for _, _, lr in done) == sorted(c["train.lr"] for c in configs)
    assert all(len(epochs) == 3 for _, epochs, _ in done)


def test_search_epoch_times_are_the_epoch_results_of_every_trial(bench, tmp_path):
    for trial, epochs in (("trial_a", [1.5, 2.5]), ("trial_b", [3.5])):
        directory = tmp_path / "search-1" / trial
        directory.mkdir(parents=True)
        rows = [{"epoch": k + 1, "epoch_time_s": e} for k, e in enumerate(epochs)] + [{"final": 1, "epoch": 2}]
        (directory / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert sorted(bench.search_epoch_times(tmp_path)) == [1.5, 2.5, 3.5]


def test_rounds_alternate_their_order_so_each_runner_runs_as_often_before_as_after_each_other(bench):
    orders = [bench.round_order(r) for r in range(bench.ROUNDS)]
    assert all(sorted(order) == sorted(bench.RUNNERS) for order in orders)
    for a in bench.RUNNERS:
        for b in bench.RUNNERS:
            if a != b:
                before = sum(order.index(a) < order.index(b) for order in orders)
                assert before == bench.ROUNDS / 2, (a, b, orders)
