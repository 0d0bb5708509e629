"""bench/scheduler_replay.py's figures: a seed where no configuration reaches the target counts in
no ratio (every rule gives up there; one that gave up sooner was not faster to the target)."""

from __future__ import annotations

BENCH = "scheduler_replay.py"


def test_seeds_no_configuration_reaches_count_in_no_ratio(bench):
    target = bench.TASKS["vimh"].target
    bad = target + 1 if bench.TASKS["vimh"].mode == "min" else target - 1
    good = target - 0.01 if bench.TASKS["vimh"].mode == "min" else target + 0.01
    reaching = {"configurations": [{"curve": [bad, good]}],
                "epochs": {rule: 10 for rule in bench.RULES} | {"random": 40},
                "driver_random_search": dict.fromkeys(bench.CHECKED_RULES, 10)}
    unreachable = {"configurations": [{"curve": [bad, bad]}],
                   "epochs": {rule: 3 for rule in bench.RULES} | {"random": 270}}
    assert bench.reachable(reaching, "vimh") and not bench.reachable(unreachable, "vimh")
    ratios = bench.figures({"vimh": {"seed_0": reaching, "seed_1": unreachable, "seed_2": reaching}})
    for rule in bench.RULES[1:]:
        assert ratios[f"vimh_epochs_to_target_random_vs_{rule}"]["value"] == 4.0  # 90 with the seed that none reaches
