"""Auxiliary losses in training: each does what it is for, on digits, static and temporal."""

import pytest
import torch

from trainables.auxiliary import SupCon, TaskCorrelation
from trainables.losses import CrossEntropyLoss, MultiHeadLoss
from trainables.models import build_model
from trainables.train import train


def _flat(**overrides):
    return {
        "data.kind": "digits", "data.limit": 500, "model.kind": "mlp", "model.mlp.hidden": 32,
        "heads.digit.loss": "ce", "heads.thickness.loss": "symmetric_ce", "heads.smoothness.loss": "ce",
        "train.epochs": 4, "train.lr": 0.01, "train.threads": 1, "train.device": "cpu",
    } | overrides


def _auxiliary(reports):
    return [r["train/loss/auxiliary"] for r in reports]


@pytest.mark.parametrize("temporal", [{}, {"model.kind": "recurrent_cnn", "temporal.n_timesteps": 2,
                                           "temporal.pattern": "10"}])
def test_supcon_on_the_shared_embedding_falls_as_it_trains(temporal, one_thread):
    flat = _flat(**{"auxiliary.kind": "supcon", "auxiliary.supcon.head": "digit", "auxiliary.supcon.weight": 0.5,
                    **temporal})
    if temporal:
        flat = {k: v for k, v in flat.items() if not k.startswith("model.mlp.")}
    reports = []
    train(flat, report=reports.append)
    values = _auxiliary(reports)
    assert values[-1] < 0.9 * values[0] and all(v > 0 for v in values)


def test_the_correlation_regulariser_pulls_the_heads_toward_its_target(one_thread):
    reports = []
    train(_flat(**{"auxiliary.kind": "correlation", "auxiliary.correlation.head": "thickness",
                   "auxiliary.correlation.other": "smoothness", "auxiliary.correlation.target": -0.5,
                   "auxiliary.correlation.weight": 2.0}), report=reports.append)
    values = _auxiliary(reports)  # 2 * (corr - target)^2, epoch means
    assert values[-1] < 0.5 * values[0]


def test_without_an_auxiliary_loss_nothing_is_added(one_thread):
    reports = []
    train(_flat(**{"train.epochs": 1}), report=reports.append)
    assert "train/loss/auxiliary" not in reports[0]


def test_supcon_reads_the_embedding_of_this_training_step_only():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), head_outputs={"digit": 10}, hidden=8)
    criterion = MultiHeadLoss(losses={"digit": CrossEntropyLoss(num_classes=10)}, weights={"digit": 1.0})
    supcon = SupCon(head="digit", weight=1.0, temperature=0.5)
    supcon.on_start(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), criterion=criterion)
    x, y = torch.rand(6, 1, 8, 8), {"digit": torch.tensor([0, 0, 1, 1, 2, 2])}
    model.eval()
    model(x)
    assert supcon._taken == []  # an evaluation pass takes nothing
    model.train()
    model(x)  # a training forward no loss reads: the next forward starts afresh
    _, breakdown = criterion(model(x), y)
    assert breakdown["loss/auxiliary"].item() > 0 and supcon._taken == []
    with pytest.raises(RuntimeError, match="needs the embedding of this step's forward"):
        supcon({}, y)  # nothing taken since the last step


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (SupCon, {"head": "pitch"}, "auxiliary heads must be heads of the trial"),
    (TaskCorrelation, {"head": "digit", "other": "pitch"}, "auxiliary heads must be heads of the trial"),
])
def test_auxiliary_heads_must_be_heads_of_the_trial(cls, kwargs, message):
    model = build_model("mlp", input_shape=(1, 8, 8), head_outputs={"digit": 10}, hidden=8)
    criterion = MultiHeadLoss(losses={"digit": CrossEntropyLoss(num_classes=10)}, weights={"digit": 1.0})
    with pytest.raises(ValueError, match=message):
        cls(**kwargs).on_start(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), criterion=criterion)


def test_a_correlation_of_a_head_with_itself_is_refused():
    with pytest.raises(ValueError, match="other must be another head"):
        TaskCorrelation(head="digit", other="digit")


@pytest.mark.parametrize(("cls", "params", "message"), [
    (SupCon, {"head": "a", "temperature": -1.0}, r"temperature must be a number > 0, but got -1.0"),
    (SupCon, {"head": "a", "weight": -2.0}, r"weight must be a number >= 0, but got -2.0"),
    (TaskCorrelation, {"head": "a", "other": "b", "target": 5.0}, r"target must be a number in \[-1, 1\], but got 5.0"),
    (TaskCorrelation, {"head": "a", "other": "b", "weight": -1.0}, r"weight must be a number >= 0, but got -1.0"),
])
def test_an_auxiliary_loss_built_directly_checks_its_own_parameters(cls, params, message):
    # TaskCorrelation(weight=-1.0) pushed the correlation away from its target
    with pytest.raises(ValueError, match=message):
        cls(**params)
