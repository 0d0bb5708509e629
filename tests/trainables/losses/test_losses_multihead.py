"""MultiHeadLoss: weighted total, energy term, breakdown, head-name validation."""

import pytest
import torch
from torch import nn

from trainables.losses import (
    EnergyLoss,
    MultiHeadLoss,
    build_loss,
    cross_entropy_loss,
    ordinal_loss,
)
from trainables.metric_names import BREAKDOWN_TERMS

BREAKDOWN_KEYS = {
    "loss/pitch",
    "loss/velocity",
    "loss/task",
    "loss/energy",
    "loss/energy_weighted",
    "loss/energy_share",
    "loss/total",
}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(6, 8)
        self.pitch = nn.Linear(8, 5)
        self.velocity = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return {"pitch": self.pitch(h), "velocity": self.velocity(h)}


def make_batch():
    torch.manual_seed(0)
    net = Net()
    x = torch.randn(7, 6)
    targets = {
        "pitch": torch.tensor([0, 1, 4, -1, 2, 3, 3]),
        "velocity": torch.tensor([0, 2, 1, 1, -1, 0, 2]),
    }
    return net, x, targets


def make_loss(energy=None, energy_weight=0.0):
    return MultiHeadLoss(
        losses={
            "pitch": build_loss("ordinal", num_classes=5, alpha=0.2),
            "velocity": build_loss("ce", num_classes=3),
        },
        weights={"pitch": 2.0, "velocity": 0.5},
        energy=energy,
        energy_weight=energy_weight,
    )


def test_total_is_weighted_sum_with_energy_and_breakdown_is_right():
    net, x, targets = make_batch()
    with EnergyLoss(p=1).register(net) as energy:
        criterion = make_loss(energy, energy_weight=0.1)
        outputs = net(x)
        raw_energy = energy().detach()
        total, breakdown = criterion(outputs, targets)
        # read once and reset: nothing kept for the next step
        assert energy().item() == 0.0

    pitch = ordinal_loss(outputs["pitch"], targets["pitch"], num_classes=5, alpha=0.2)
    velocity = cross_entropy_loss(outputs["velocity"], targets["velocity"], num_classes=3)
    expected = 2.0 * pitch + 0.5 * velocity + 0.1 * raw_energy
    torch.testing.assert_close(total, expected)

    assert set(breakdown) == BREAKDOWN_KEYS
    for value in breakdown.values():
        assert isinstance(value, torch.Tensor) and value.shape == () and not value.requires_grad
    torch.testing.assert_close(breakdown["loss/pitch"], pitch.detach())
    torch.testing.assert_close(breakdown["loss/velocity"], velocity.detach())
    torch.testing.assert_close(breakdown["loss/energy"], raw_energy)
    torch.testing.assert_close(breakdown["loss/energy_weighted"], 0.1 * raw_energy)
    torch.testing.assert_close(breakdown["loss/energy_share"], 0.1 * raw_energy / expected.detach())
    torch.testing.assert_close(breakdown["loss/total"], expected.detach())
    torch.testing.assert_close(breakdown["loss/task"], (2.0 * pitch + 0.5 * velocity).detach())
    assert 0 < breakdown["loss/energy_share"] < 1

    total.backward()
    assert net.trunk.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("weights", [{"pitch": 1.0, "velocity": 0.5}, {"pitch": 1.0, "velocity": 1.0},
                                     {"pitch": 0.0, "velocity": 3.0}])
def test_total_and_its_gradient_are_the_weighted_sum_for_any_first_weight(weights):
    # a first weight of 1 skips its multiply and later heads are fused multiply-adds: same sum and gradient
    net, x, targets = make_batch()
    losses = {"pitch": build_loss("ordinal", num_classes=5, alpha=0.2), "velocity": build_loss("ce", num_classes=3)}
    outputs = net(x)
    total, breakdown = MultiHeadLoss(losses=losses, weights=weights)(outputs, targets)
    pitch = ordinal_loss(outputs["pitch"], targets["pitch"], num_classes=5, alpha=0.2)
    velocity = cross_entropy_loss(outputs["velocity"], targets["velocity"], num_classes=3)
    expected = weights["pitch"] * pitch + weights["velocity"] * velocity
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(breakdown["loss/task"], expected.detach())
    got = torch.autograd.grad(total, net.trunk.weight, retain_graph=True)[0]
    torch.testing.assert_close(got, torch.autograd.grad(expected, net.trunk.weight)[0])


def test_one_head_of_weight_one_is_its_loss():
    net, x, targets = make_batch()
    outputs = net(x)
    total, breakdown = MultiHeadLoss(losses={"velocity": build_loss("ce", num_classes=3)},
                                     weights={"velocity": 1.0})({"velocity": outputs["velocity"]},
                                                                {"velocity": targets["velocity"]})
    expected = cross_entropy_loss(outputs["velocity"], targets["velocity"], num_classes=3)
    torch.testing.assert_close(total, expected)
    assert breakdown["loss/velocity"] == breakdown["loss/total"] == expected.detach()
    assert not breakdown["loss/total"].requires_grad


def test_energy_weight_changes_gradient_of_trunk():
    def trunk_grad(weight):
        net, x, targets = make_batch()
        with EnergyLoss().register(net) as energy:
            total, _ = make_loss(energy, energy_weight=weight)(net(x), targets)
            total.backward()
        return net.trunk.weight.grad

    assert not torch.allclose(trunk_grad(0.0), trunk_grad(1.0))


def test_without_energy_reports_zero_energy():
    net, x, targets = make_batch()
    total, breakdown = make_loss()(net(x), targets)
    assert set(breakdown) == BREAKDOWN_KEYS
    assert breakdown["loss/energy"].item() == 0.0
    assert breakdown["loss/energy_share"].item() == 0.0
    torch.testing.assert_close(breakdown["loss/total"], total.detach())


def test_all_ignored_total_zero_share_is_zero_not_nan():
    net, x, _ = make_batch()
    ignored = {"pitch": torch.full((7,), -1), "velocity": torch.full((7,), -1)}
    total, breakdown = make_loss()(net(x), ignored)
    total.backward()
    assert total.item() == 0.0 and breakdown["loss/energy_share"].item() == 0.0


def test_the_breakdown_s_own_terms_are_the_names_heads_may_not_take():
    # BREAKDOWN_TERMS (what the trial config refuses as head names) is the one list of them
    net, x, targets = make_batch()
    criterion = make_loss()
    criterion.auxiliary = type("Zero", (nn.Module,), {"forward": lambda self, o, t: torch.zeros(())})()
    _, breakdown = criterion(net(x), targets)
    assert set(breakdown) == {"loss/pitch", "loss/velocity", *(f"loss/{term}" for term in BREAKDOWN_TERMS)}


def test_a_head_named_like_a_term_of_the_breakdown_is_refused():
    with pytest.raises(ValueError, match=r"head names must differ from the breakdown's terms \[.*\], but got \['energy'\]"):
        MultiHeadLoss(losses={"energy": nn.Identity(), "pitch": nn.Identity()}, weights={"energy": 1.0, "pitch": 1.0})


def test_a_head_s_shape_error_names_the_head():
    net, x, targets = make_batch()
    outputs = net(x)
    with pytest.raises(ValueError, match=r"^head 'velocity': logits must have shape \[N, \d+\], but got \[7, 1\]"):
        make_loss()({**outputs, "velocity": outputs["velocity"][:, :1]}, targets)


class _PerSample(nn.Module):
    def forward(self, logits, target):
        return nn.functional.cross_entropy(logits, target, reduction="none", ignore_index=-1)


def test_a_head_loss_that_returns_more_than_a_scalar_is_named():
    # a plugin's loss with reduction="none": autograd would say "grad can be implicitly created
    # only for scalar outputs" at backward, naming no head and no loss
    net, x, targets = make_batch()
    criterion = make_loss()
    criterion.losses["pitch"] = _PerSample()
    with pytest.raises(ValueError, match=r"^head 'pitch': its loss \(_PerSample\) must return a scalar tensor "
                                         r"\(one value for the batch\), but got shape \[7\]"):
        criterion(net(x), targets)


def test_head_names_are_validated():
    net, x, targets = make_batch()
    criterion = make_loss()
    outputs = net(x)
    heads = r"\['pitch', 'velocity'\]"
    with pytest.raises(ValueError, match=rf"outputs must have the heads {heads}, but got \['p"):
        criterion({"pitch": outputs["pitch"]}, targets)
    with pytest.raises(
        ValueError,
        match=rf"targets must have the heads {heads}, but got \['pitch', 'timbre', 'velocity'\]",
    ):
        criterion(outputs, {**targets, "timbre": targets["pitch"]})
    with pytest.raises(ValueError, match=rf"weights must have the heads of losses {heads}, but"):
        MultiHeadLoss(losses=dict(criterion.losses), weights={"pitch": 1.0})
    with pytest.raises(ValueError, match="energy_weight > 0 needs an EnergyLoss, but got energy="):
        make_loss(energy_weight=0.1)
    with pytest.raises(ValueError, match=r"weights\['pitch'\] must be a finite number >= 0, but"):
        MultiHeadLoss(losses=dict(criterion.losses), weights={"pitch": -1, "velocity": 1.0})
