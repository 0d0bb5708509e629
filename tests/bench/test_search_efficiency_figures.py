"""bench/search_efficiency.py's figures from its rows: a seed where our driver missed the target
is no win, and the 1.3x target is against the strictest Optuna baseline."""

from __future__ import annotations

BENCH = "search_efficiency.py"


def _outcome(epochs: int, reached: bool = True) -> dict:
    return {"epochs": epochs, "wall_s": float(epochs), "reached": reached}


def test_a_seed_where_ours_missed_the_target_is_a_loss_or_a_tie(bench):
    # ours gives up after the few epochs ASHA let it train: that counted as reaching it sooner
    assert bench.seed_ratio(_outcome(40), _outcome(8, reached=False), "epochs") == 0.0
    assert bench.seed_ratio(_outcome(270, reached=False), _outcome(8, reached=False), "epochs") == 1.0
    # a baseline cut off at its budget: its budget is a lower bound of its cost
    assert bench.seed_ratio(_outcome(270, reached=False), _outcome(30), "epochs") == 9.0
    assert bench.seed_ratio(_outcome(40), _outcome(10), "wall_s") == 4.0


def test_the_optuna_target_is_against_the_baseline_with_the_lowest_median_ratio(bench):
    # by median epochs, hyperband (30) would be the best baseline; by median ratio, median (2x) is
    rows = [{"tpe_asha": _outcome(ours), "tpe_asha_warm": _outcome(ours), "random": _outcome(100),
             "optuna_median": _outcome(median), "optuna_hyperband": _outcome(hyperband), "optuna_gp": _outcome(100)}
            for ours, median, hyperband in ((10, 20, 30), (20, 40, 29), (40, 80, 200))]
    ratios, per_seed = bench._figures(rows, "vimh")
    assert per_seed["vimh_epochs_to_target_optuna_median_vs_tpe_asha"] == [2.0, 2.0, 2.0]
    assert ratios["vimh_epochs_to_target_optuna_median_vs_tpe_asha"]["target"] == bench.EPOCHS_VS_OPTUNA_TARGET
    assert ratios["vimh_epochs_to_target_optuna_hyperband_vs_tpe_asha"]["target"] == 1.0
    assert ratios["vimh_epochs_to_target_optuna_hyperband_vs_tpe_asha"]["value"] == 3.0
