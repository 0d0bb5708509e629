import json

import pytest

from trainables.config import HeadConfig, TrainConfig, TrialConfig
from trainables.settings import SettingError

FULL = {
    "data.kind": "digits",
    "data.path": None,
    "data.val_fraction": 0.2,
    "data.limit": 400,
    "data.labels": "seed_map",
    "data.seed": 3,
    "model.kind": "mlp",
    "model.mlp.hidden": 32,
    "model.mlp.dropout": 0.1,
    "temporal.n_timesteps": 1,
    "temporal.pattern": "1",
    "temporal.dt": 1.0,
    "temporal.reaction_time": 0.0,
    "train.epochs": 3,
    "train.batch_size": 64,
    "train.lr": 0.01,
    "train.weight_decay": 1e-4,
    "train.grad_clip": 1.0,
    "train.patience": 2,
    "train.seed": 7,
    "train.threads": 1,
    "train.amp": "bf16",
    "train.device": "cpu",
    "energy.p": 2,
    "weighting.strategy": "fixed",
    "auxiliary.kind": "none",
    "objective.metric": "val/digit/acc",
    "objective.mode": "max",
    "heads.digit.loss": "focal",
    "heads.digit.weight": 1.0,
    "heads.digit.focal.gamma": 1.5,
    "heads.digit.focal.alpha": [0.1] * 10,
    "heads.thickness.loss": "ordinal",
    "heads.thickness.weight": 0.5,
    "heads.thickness.ordinal.distance": "huber",
    "heads.thickness.ordinal.alpha": 0.2,
    "energy_weight": 0.01,
}


def test_round_trip_is_exact_and_json_safe():
    cfg = TrialConfig.from_flat(FULL)
    assert cfg.train.lr == 0.01 and cfg.model.kind == "mlp" and cfg.energy.p == 2
    assert cfg.model.params == {"hidden": 32, "dropout": 0.1}
    assert cfg.heads["digit"] == HeadConfig(loss="focal", weight=1.0, params={"gamma": 1.5, "alpha": (0.1,) * 10})
    flat = cfg.to_flat()
    assert flat == FULL
    assert json.loads(json.dumps(flat)) == FULL
    assert TrialConfig.from_flat(flat) == cfg


def test_a_config_written_before_model_kinds_had_their_own_parameters_still_loads():
    # best_config.yaml files of earlier versions say model.hidden, not model.<kind>.hidden.
    old = {k: v for k, v in FULL.items() if not k.startswith("model.mlp.")}
    old.update({"model.hidden": 32, "model.dropout": 0.1})
    assert TrialConfig.from_flat(old) == TrialConfig.from_flat(FULL)
    assert TrialConfig.from_flat(old).to_flat() == FULL


@pytest.mark.parametrize(("old", "now"), [(True, "auto"), (False, "off")])
def test_train_amp_of_earlier_versions_a_bool_still_loads(old, now):
    # best_config.yaml files and checkpoints written when train.amp was a bool.
    cfg = TrialConfig.from_flat({**FULL, "train.amp": old})
    assert cfg.train.amp == now
    assert cfg.to_flat() == {**FULL, "train.amp": now}
    assert TrainConfig(amp=old) == TrainConfig(amp=now)


def test_a_model_kind_lists_every_parameter_of_its_own_defaults_included():
    flat = TrialConfig.from_flat({"heads.a.loss": "ce", "model.kind": "simple_cnn"}).to_flat()
    assert {k: v for k, v in flat.items() if k.startswith("model.")} == {
        "model.kind": "simple_cnn",
        "model.simple_cnn.hidden": 128,
        "model.simple_cnn.dropout": 0.25,
    }


def test_defaults_fill_everything_but_heads():
    cfg = TrialConfig.from_flat({"heads.digit.loss": "ce"})
    assert cfg.train == TrainConfig()
    assert cfg.train.threads is None and cfg.train.device == "auto" and cfg.train.amp == "auto"
    assert cfg.energy_weight == 0.0
    assert cfg.objective.metric == "val/acc_mean" and cfg.objective.mode == "max"
    flat = cfg.to_flat()
    assert flat["heads.digit.weight"] == 1.0 and flat["train.threads"] is None
    assert TrialConfig.from_flat(flat) == cfg
    with pytest.raises(ValueError, match="at least one head"):
        TrialConfig.from_flat({"train.lr": 0.1})


def test_ints_accepted_for_floats():
    cfg = TrialConfig.from_flat({"heads.a.loss": "ce", "heads.a.weight": 2, "train.lr": 1})
    assert cfg.heads["a"].weight == 2.0 and isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    "key",
    ["train.learning_rate", "optimizer.lr", "heads.digit.temperature", "energy", "heads.digit.focal.beta", "a.b.c.d.e"],
)
def test_unknown_key_is_named(key):
    flat = {"heads.digit.loss": "focal", key: 1.0}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        TrialConfig.from_flat(flat)


def test_loss_params_must_belong_to_the_chosen_loss():
    with pytest.raises(SettingError) as error:
        TrialConfig.from_flat({"heads.digit.loss": "ce", "heads.digit.ordinal.alpha": 0.3})
    assert error.value.key == "heads.digit.ordinal.alpha"
    # what to set to use it, and the value given (before: the option's name, `but got 'ordinal'`)
    assert error.value.rule == "a parameter of the chosen heads.digit.loss (ce; it needs heads.digit.loss: ordinal)"
    assert error.value.value == 0.3


@pytest.mark.parametrize(
    ("key", "value", "error_key", "rule"),
    [
        ("train.epochs", 0, "train.epochs", "an integer in [1, 100000]"),
        ("train.epochs", 2.5, "train.epochs", "an integer in [1, 100000]"),
        ("train.amp", 1, "train.amp", "one of [off, fp16, bf16, auto]"),  # 1 == True, but no bool
        ("train.amp", "fp32", "train.amp", "one of [off, fp16, bf16, auto]"),
        ("train.lr", True, "train.lr", "a number > 0"),
        ("train.device", "gpu", "train.device", "one of [auto, cpu, cuda]"),
        ("objective.mode", "maximize", "objective.mode", "one of [min, max]"),
        ("heads.digit.loss", "hinge", "heads.digit.loss", "one of [ce, ordinal, quantized, weighted_ce, focal, soft_ordinal, symmetric_ce]"),
        ("heads.digit.weight", -1.0, "heads.digit.weight", "a number >= 0"),
        ("energy_weight", -0.1, "energy_weight", "a number >= 0"),
        ("data.val_fraction", 1.5, "data.val_fraction", "a number in (0, 1)"),
        ("data.seed", -1, "data.seed", "an integer >= 0"),
        ("data.kind", "imagenet", "data.kind", "one of [vimh, digits, mnist, cifar10]"),
        ("model.kind", "resnet", "model.kind", "one of [simple_cnn, mlp, recurrent_cnn]"),
        ("model.dropout", 1.0, "model.simple_cnn.dropout", "a number in [0, 1)"),
        # unchecked before: torch's error (or "not enough values to unpack") once the data had loaded
        ("model.channels", [0, 64], "model.simple_cnn.channels", "a list of 2 integers in [1, 65536]"),
        ("model.channels", [32], "model.simple_cnn.channels", "a list of 2 integers in [1, 65536]"),
        ("model.channels", "abc", "model.simple_cnn.channels", "a list of 2 integers in [1, 65536]"),
    ],
)
def test_invalid_values_raise_the_setting_its_rule_and_the_value(key, value, error_key, rule):
    with pytest.raises(SettingError) as error:
        TrialConfig.from_flat({"heads.digit.loss": "ce", key: value})
    assert (error.value.key, error.value.rule, error.value.value) == (error_key, rule, value)
    assert str(error.value) == f"{error_key} must be {rule}, but got {value!r}"


@pytest.mark.parametrize(
    ("flat", "error_key", "rule", "value"),
    [
        ({"heads.task.loss": "ce"}, "heads", "head names other than the loss terms task, energy, energy_weighted, "
         "energy_share, auxiliary, total", "task"),
        ({"auxiliary.kind": "supcon", "auxiliary.supcon.head": "pitch"}, "auxiliary.supcon.head",
         "a head of the trial (one of: digit, thickness)", "pitch"),
        ({"auxiliary.kind": "correlation", "auxiliary.correlation.head": "digit", "auxiliary.correlation.other": "digit"},
         "auxiliary.correlation.head", "another head than other", "digit"),
    ],
)
def test_head_names_a_trial_cannot_train_are_refused_naming_the_key(flat, error_key, rule, value):
    # before: a head `task` lost its loss to the breakdown's own term; an auxiliary head was
    # refused only when training started, without its key
    with pytest.raises(SettingError) as error:
        TrialConfig.from_flat({"heads.digit.loss": "ce", "heads.thickness.loss": "ce", **flat})
    assert (error.value.key, error.value.rule, error.value.value) == (error_key, rule, value)
