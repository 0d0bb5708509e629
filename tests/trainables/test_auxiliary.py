"""Auxiliary losses in training: each does what it is for, on digits, static and temporal."""

import numpy as np
import pytest
import torch

from trainables.auxiliary import VARIANCE_FLOOR, SupCon, TaskCorrelation
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
    # Against the same loss given almost no weight (so it barely shapes the embedding): the CE
    # heads alone take it from 1 to about 0.91 of its first epoch, which a bare "it fell" let pass.
    falls = {}
    for weight in (0.5, 1e-6):
        flat = _flat(**{"auxiliary.kind": "supcon", "auxiliary.supcon.head": "digit",
                        "auxiliary.supcon.weight": weight, **temporal})
        if temporal:
            flat = {k: v for k, v in flat.items() if not k.startswith("model.mlp.")}
        reports = []
        train(flat, report=reports.append)
        values = _auxiliary(reports)
        assert all(v > 0 for v in values)
        falls[weight] = values[-1] / values[0]
    assert falls[0.5] < falls[1e-6] - 0.04, falls


def _expected_over_classes(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (p * np.arange(logits.shape[1])).sum(axis=1) / (logits.shape[1] - 1)


def test_the_correlation_loss_is_the_weighted_squared_gap_of_pearson_s_r_to_its_target():
    # independent: numpy's covariance and variances of the heads' softmax expectations (a one-unit
    # head: its value), each variance with the floor added; with spreads well above the floor's
    # 0.01 that is Pearson's r within 1 %
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(9, 5)), rng.normal(size=(9, 3)), rng.normal(size=(9, 1))
    outputs = {"a": torch.tensor(a), "b": torch.tensor(b), "c": torch.tensor(c)}
    for other, values in (("b", _expected_over_classes(b)), ("c", c[:, 0])):
        loss = TaskCorrelation(head="a", other=other, target=-0.5, weight=2.0)(outputs, {})
        (var_a, cov), (_, var_b) = np.cov(_expected_over_classes(a), values, bias=True)
        r = cov / np.sqrt((var_a + VARIANCE_FLOOR) * (var_b + VARIANCE_FLOOR))
        assert loss.item() == pytest.approx(2.0 * (r + 0.5) ** 2, rel=1e-6)
        assert r == pytest.approx(np.corrcoef(_expected_over_classes(a), values)[0, 1], rel=0.01)


def test_a_head_whose_predictions_collapse_gets_a_bounded_correlation_gradient():
    # before, r's 1 / spread: 1.8e4 on the collapsed head's outputs at a spread of 1e-6
    torch.manual_seed(0)
    collapsed = (1e-6 * torch.randn(64, 5, dtype=torch.float64)).requires_grad_()
    other = torch.randn(64, 5, dtype=torch.float64, requires_grad=True)
    TaskCorrelation(head="a", other="b", target=0.5, weight=1.0)({"a": collapsed, "b": other}, {}).backward()
    assert collapsed.grad.abs().max() < 1.0 and torch.isfinite(other.grad).all()


def test_the_correlation_loss_gradchecks():
    torch.manual_seed(0)
    a = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 1, dtype=torch.float64, requires_grad=True)
    loss = TaskCorrelation(head="a", other="b", target=0.3, weight=1.0)
    assert torch.autograd.gradcheck(lambda x, y: loss({"a": x, "b": y}, {}), (a, b))


def _trained_model(flat, folder):
    """The model ``train(flat)`` ended with, from its checkpoint."""
    from trainables.config import TrialConfig

    train(flat, report=lambda metrics: None, checkpoint_dir=str(folder))
    cfg = TrialConfig.from_flat(flat)
    model = build_model(cfg.model.kind, input_shape=(1, 8, 8), head_outputs={"digit": 10, "thickness": 5,
                                                                             "smoothness": 3}, **cfg.model.params)
    model.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=True)["model"])
    return model.eval()


def _validation_images(flat):
    from trainables.config import TrialConfig
    from trainables.data import load_dataset

    return load_dataset(TrialConfig.from_flat(flat).data).val.images.astype(np.float32) / 255.0


def test_the_correlation_regulariser_pulls_the_heads_toward_its_target(one_thread, tmp_path):
    # the correlation itself, measured apart from the loss, moves toward -0.5 (a loss pulling it
    # toward +0.5 also fell, and passed the check of the loss alone)
    correlations = {}
    for weight in (0.0, 2.0):
        flat = _flat(**{"auxiliary.kind": "correlation", "auxiliary.correlation.head": "thickness",
                        "auxiliary.correlation.other": "smoothness", "auxiliary.correlation.target": -0.5,
                        "auxiliary.correlation.weight": weight})
        model = _trained_model(flat, tmp_path / f"w{weight}")
        with torch.no_grad():
            out = model(torch.from_numpy(_validation_images(flat)))
        correlations[weight] = np.corrcoef(_expected_over_classes(out["thickness"].double().numpy()),
                                           _expected_over_classes(out["smoothness"].double().numpy()))[0, 1]
    # here: 0.95 without it, -0.59 with it (+0.51 with the loss pulling toward +0.5)
    assert abs(correlations[0.0] + 0.5) > 1.0 and abs(correlations[2.0] + 0.5) < 0.2, correlations


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
