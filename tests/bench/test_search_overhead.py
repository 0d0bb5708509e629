"""bench/search_overhead.py's ``ray_tasks`` runner: the trials as Ray tasks on a local Ray instance
of its own process, 2 at a time, one completion time per trial (that the pool runs each config once
is checked through c2_breakdown's runner, which uses the same pool)."""

from __future__ import annotations

import json

BENCH = "search_overhead.py"


def test_ray_tasks_gives_a_completion_time_per_trial_from_a_process_of_its_own(bench, tmp_path):
    _, configs = bench.space_file(tmp_path, "short", 2, trials=3)
    summary = bench._loop(configs, 2, tmp_path, "ray_tasks")
    assert summary["trials"] == 3
    assert 0 < summary["first_trial_done_s"] < summary["wall_s"]
    assert len(summary["intervals_s"]) == 1 and summary["intervals_s"][0] > 0
    assert len(json.loads((tmp_path / "ray_tasks-done.json").read_text())) == 3
