"""Regression guard for bench/weighting.py's cheapest figure: ``train()``'s training throughput with
the ``dwa`` weighting strategy vs ``fixed``, on the benchmark's VIMH CNN (all VIMH heads, ce) with a
smaller subset. DWA weights the head losses by a K-vector set once an epoch, so it costs a few
tensor ops per step on top of the same single backward pass; the benchmark measures about 1.0x.
The margin is generous because a shared CI machine is noisy: this only catches a large slowdown
(e.g. a strategy that starts taking extra backward passes; not a sync per step, which costs
nothing on the CPU this runs on), on a smaller subset than the benchmark's (320 samples against
its 640), so its ratio is not the committed figure. The CPU-time ratio is the gate (other
processes stretch wall time, not this thread's CPU time). Also checks that the
benchmark's configs select the strategy they name and train every VIMH head with ce, so the
ratio compares what it says."""

from __future__ import annotations

BENCH = "weighting.py"


def test_configs_select_the_strategy_on_every_vimh_head(bench):
    from trainables.config import TrialConfig
    from trainables.data._vimh_synth import DEFAULT_VIMH_PARAMS

    for strategy in bench.STRATEGIES:
        cfg = TrialConfig.from_flat(bench._config(strategy, 2))
        assert cfg.weighting.strategy == strategy
        assert sorted(cfg.heads) == sorted(DEFAULT_VIMH_PARAMS)
        assert {head.loss for head in cfg.heads.values()} == {"ce"}
        assert (cfg.model.kind, cfg.data.kind, cfg.train.threads, cfg.train.device) == ("simple_cnn", "vimh", 1, "cpu")


def test_dwa_throughput_stays_near_fixed(bench):
    # 320 samples (288 train, 4.5 batches of 64); after an untimed train() call, 3 interleaved
    # repeats of 3 epochs per strategy
    case = {**bench.CASE, "data.limit": 320}
    result = bench.measure(strategies=("fixed", "dwa"), repeats=3, epochs=3, case=case, with_breakdown=False)
    ratio = result["ratios"]["dwa"]["cpu_throughput"]
    assert ratio >= 0.8, f"train() with weighting dwa vs fixed must be >= 0.8x, but got {ratio:.2f}x"
