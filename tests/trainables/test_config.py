import json

import pytest

from trainables.config import HeadConfig, TrainConfig, TrialConfig

FULL = {
    "data.kind": "digits",
    "data.path": None,
    "data.val_fraction": 0.2,
    "data.limit": 400,
    "data.labels": "seed_map",
    "data.seed": 3,
    "model.kind": "mlp",
    "model.hidden": 32,
    "model.dropout": 0.1,
    "train.epochs": 3,
    "train.batch_size": 64,
    "train.lr": 0.01,
    "train.weight_decay": 1e-4,
    "train.grad_clip": 1.0,
    "train.patience": 2,
    "train.seed": 7,
    "train.threads": 1,
    "train.amp": False,
    "train.device": "cpu",
    "energy.p": 2,
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
    assert cfg.heads["digit"] == HeadConfig(loss="focal", weight=1.0, params={"gamma": 1.5, "alpha": (0.1,) * 10})
    flat = cfg.to_flat()
    assert flat == FULL
    assert json.loads(json.dumps(flat)) == FULL
    assert TrialConfig.from_flat(flat) == cfg


def test_defaults_fill_everything_but_heads():
    cfg = TrialConfig.from_flat({"heads.digit.loss": "ce"})
    assert cfg.train == TrainConfig()
    assert cfg.train.threads is None and cfg.train.device == "auto" and cfg.train.amp is False
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
    with pytest.raises(ValueError, match=r"heads\.digit\.ordinal\.alpha must name the chosen loss"):
        TrialConfig.from_flat({"heads.digit.loss": "ce", "heads.digit.ordinal.alpha": 0.3})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.epochs", 0, "train.epochs must be >= 1, but got 0"),
        ("train.epochs", 2.5, "train.epochs must be int, but got 2.5"),
        ("train.amp", 1, "train.amp must be bool, but got 1"),
        ("train.lr", True, "train.lr must be float, but got True"),
        ("train.device", "gpu", "train.device must be one of"),
        ("objective.mode", "maximize", "objective.mode must be one of"),
        ("heads.digit.loss", "hinge", "loss must be one of"),
        ("heads.digit.weight", -1.0, "head weight must be >= 0"),
        ("energy_weight", -0.1, "energy_weight must be >= 0"),
        ("data.val_fraction", 1.5, "val_fraction"),
        ("data.seed", -1, "data.seed must be an integer >= 0, but got -1"),
        ("data.kind", "imagenet", "data.kind must be one of"),
        ("model.kind", "resnet", "model.kind must be one of"),
        ("model.dropout", 1.0, r"model.dropout must be in \[0, 1\)"),
    ],
)
def test_invalid_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        TrialConfig.from_flat({"heads.digit.loss": "ce", key: value})
