"""LOSSES, build_loss and loss_parameters: the surface the search-space validator reads."""

import dataclasses
import inspect
import subprocess
import sys
from typing import Literal

import pytest

from trainables.settings import SettingError

import trainables.losses as losses_package
from trainables.losses import LOSSES, FocalLoss, build_loss, loss_parameters

DISTANCE = Literal["l1", "l2", "huber"]

# The contract's table: name -> {param: (annotation, default)}.
DOCUMENTED = {
    "ce": {"label_smoothing": (float, 0.0)},
    "ordinal": {
        "distance": (DISTANCE, "l1"),
        "alpha": (float, 0.1),
        "normalize": (bool, True),
        "delta": (float, 1.0),
    },
    "quantized": {"distance": (DISTANCE, "l1"), "delta": (float, 1.0)},
    "weighted_ce": {
        "distance_power": (float, 2.0),
        "weight": (float, 1.0),
        "base": (float, 0.0),
    },
    "focal": {"gamma": (float, 2.0), "alpha": (tuple[float, ...] | None, None)},
    "soft_ordinal": {"sigma": (float, 1.0)},
    "symmetric_ce": {"alpha": (float, 0.1), "beta": (float, 1.0), "log_zero": (float, -4.0)},
}


def test_registry_names():
    assert list(LOSSES) == ["ce", "ordinal", "quantized", "weighted_ce", "focal", "soft_ordinal", "symmetric_ce"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_loss_parameters_are_exactly_the_documented_ones(name):
    parameters = loss_parameters(name)
    got = {key: (p.annotation, p.default) for key, p in parameters.items()}
    assert got == DOCUMENTED[name]
    for parameter in parameters.values():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert not isinstance(parameter.annotation, str)  # runtime objects, not postponed strings


@pytest.mark.parametrize("name", LOSSES)
def test_build_loss_defaults_and_params(name):
    loss = build_loss(name, num_classes=6)
    assert isinstance(loss, LOSSES[name].implementation()) and loss.num_classes == 6 and loss.ignore_index == -1
    for key, parameter in loss_parameters(name).items():
        assert getattr(loss, key) == parameter.default
    assert build_loss(name, num_classes=6, ignore_index=-100).ignore_index == -100


def test_build_loss_unknown_name_lists_allowed():
    with pytest.raises(ValueError) as error:
        build_loss("hinge", num_classes=3)
    message = str(error.value)
    assert "hinge" in message
    assert all(name in message for name in LOSSES)


def test_build_loss_unknown_param_lists_allowed():
    with pytest.raises(SettingError) as error:
        build_loss("ordinal", num_classes=3, gamma=1.0)
    assert error.value.key == "ordinal.gamma"
    assert error.value.rule == "among the parameters of `ordinal` [distance, alpha, normalize, delta]"
    with pytest.raises(SettingError, match=r"soft_ordinal.label_smoothing must be among the parameters of "
                       r"`soft_ordinal` \[sigma\], but got 'label_smoothing'"):
        build_loss("soft_ordinal", num_classes=3, sigma=1.0, label_smoothing=0.1, num_class=3)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ordinal", {"alpha": "0.1"}, "ordinal.alpha must be a number, but got '0.1'"),
        ("ordinal", {"normalize": "yes"}, "ordinal.normalize must be true or false, but got 'yes'"),
        ("ordinal", {"distance": "l3"}, "ordinal.distance must be one of [l1, l2, huber], but got 'l3'"),
        ("focal", {"alpha": "a"}, "focal.alpha must be a list of numbers or null, but got 'a'"),
        ("ce", {"label_smoothing": True}, "ce.label_smoothing must be a number, but got True"),
        ("ce", {"label_smoothing": 2.0}, "label_smoothing must be a number in [0, 1), but got 2.0"),
        ("focal", {"alpha": [1]}, "alpha must be a sequence of num_classes=3 entries, but got (1.0,)"),
    ],
)
def test_build_loss_invalid_values(name, params, message):
    with pytest.raises(SettingError) as error:
        build_loss(name, num_classes=3, **params)
    assert str(error.value) == message


def test_build_loss_coerces_search_values():
    focal = build_loss("focal", num_classes=3, gamma=1, alpha=[1, 2, 0.5])  # YAML/Optuna shapes
    assert isinstance(focal, FocalLoss)
    assert focal.gamma == 1.0 and isinstance(focal.gamma, float)
    assert focal.alpha == (1.0, 2.0, 0.5)


def test_declarations_check_without_torch():
    """The driver validates losses through the declarations: no torch imported."""
    code = ("import sys\nfrom trainables.losses import LOSS, check_loss\n"
            "check_loss('focal', num_classes=3, gamma=1.0, alpha=[1, 2, 3])\n"
            "try:\n    check_loss('soft_ordinal', num_classes=3, sigma=0.0)\n"
            "except ValueError as error:\n    print(error.key)\n"
            "print(LOSS.options['quantized'].outputs(5), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sigma", "1", "False"]


@pytest.mark.parametrize("name", LOSSES)
def test_declaration_and_module_take_the_same_keywords(name):
    module = build_loss(name, num_classes=4)
    declared = LOSSES[name](num_classes=4)
    for field in dataclasses.fields(declared):
        assert getattr(module, field.name) == getattr(declared, field.name)
    assert type(module).Params is LOSSES[name]


def test_a_plugin_subclass_of_a_builtin_loss_keeps_its_parameters(monkeypatch):
    class Tempered(losses_package.OrdinalLoss):
        """A plugin's variant: the inherited constructor, so the parameters of OrdinalParams."""

    monkeypatch.setitem(LOSSES, "tempered", Tempered)
    assert loss_parameters("tempered").keys() == loss_parameters("ordinal").keys()
    loss = build_loss("tempered", num_classes=4, alpha=0.3)
    assert isinstance(loss, Tempered) and loss.alpha == 0.3


def test_focal_takes_per_class_weights_as_a_tensor_as_its_function_does():
    import torch

    assert FocalLoss(num_classes=3, alpha=torch.tensor([1.0, 2.0, 3.0])).alpha == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match=r"alpha must have shape \[3\]"):
        FocalLoss(num_classes=3, alpha=torch.tensor([1.0, 2.0]))


def test_public_api():
    assert set(losses_package.__all__) == {
        "IGNORE_INDEX",
        "LOSS",
        "LOSSES",
        "CrossEntropyLoss",
        "EnergyLoss",
        "FocalLoss",
        "RecurrentState",
        "HeadLoss",
        "MultiHeadLoss",
        "OrdinalLoss",
        "QuantizedLoss",
        "SoftOrdinalLoss",
        "SymmetricCrossEntropyLoss",
        "UncertaintyWeighting",
        "WeightedCrossEntropyLoss",
        "build_loss",
        "check_fits_head",
        "check_loss",
        "CrossEntropyParams",
        "FocalParams",
        "HeadLossParams",
        "OrdinalParams",
        "QuantizedParams",
        "SoftOrdinalParams",
        "SymmetricCrossEntropyParams",
        "WeightedCrossEntropyParams",
        "cross_entropy_loss",
        "focal_loss",
        "loss_parameters",
        "ordinal_loss",
        "quantized_loss",
        "soft_ordinal_loss",
        "supcon_loss",
        "symmetric_ce_loss",
        "weighted_ce_loss",
    }
    assert all(hasattr(losses_package, name) for name in losses_package.__all__)


@pytest.mark.parametrize(("name", "ordinal", "fits"), [
    ("ce", False, True), ("focal", False, True), ("ordinal", True, True), ("quantized", True, True),
    ("quantized", False, False),  # one output: the class index regressed, meaningless on a categorical head
])
def test_a_loss_that_regresses_the_class_index_fits_only_an_ordinal_head(name: str, ordinal: bool, fits: bool):
    def check() -> None:
        losses_package.check_fits_head(name, num_classes=10, ordinal=ordinal, head="digit", key="heads.digit.loss")

    if fits:
        check()
        return
    with pytest.raises(SettingError) as error:
        check()
    assert error.value.key == "heads.digit.loss" and error.value.value == name
    assert error.value.rule.startswith("a loss with one output per class on a categorical head")


@pytest.mark.parametrize("name", ["ordinal", "soft_ordinal", "weighted_ce"])
def test_a_loss_that_weighs_errors_by_class_distance_fits_only_an_ordinal_head(name: str):
    # before, `ordinal` on digits' digit trained: a softmax expectation over arbitrary class numbers
    losses_package.check_fits_head(name, num_classes=10, ordinal=True, head="pitch", key="heads.pitch.loss")
    with pytest.raises(SettingError) as error:
        losses_package.check_fits_head(name, num_classes=10, ordinal=False, head="digit", key="heads.digit.loss")
    assert error.value.key == "heads.digit.loss" and error.value.value == name
    assert error.value.rule.startswith("a loss without distances between classes on a categorical head")


def test_every_loss_that_uses_the_class_index_as_a_quantity_says_so():
    # the built-in ones whose math has |j - y| or regresses y (each module's formula)
    distance = {name for name in losses_package.LOSSES
                if getattr(losses_package.LOSS.declaration(name), "uses_class_distance", False)}
    assert distance == {"ordinal", "quantized", "soft_ordinal", "weighted_ce"}
