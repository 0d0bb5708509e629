"""EnergyLoss: value against a hand computation, autograd, hook lifecycle."""

import numpy as np
import pytest
import torch
from torch import nn

from trainables.losses import EnergyLoss


class TwoLayerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3)  # [B, 1, 5, 5] -> [B, 2, 3, 3]: 18 units
        self.act = nn.ReLU()
        self.fc = nn.Linear(18, 4)  # 4 units

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


def make_net_and_input(dtype=torch.float32):
    torch.manual_seed(0)
    net = TwoLayerNet().to(dtype)
    x = torch.randn(3, 1, 5, 5, dtype=dtype)
    return net, x


def hand_energy(net, inputs, p):
    """sum over calls and modules of mean_b ||a_b||_p / units, divided by (modules x calls)."""
    total = 0.0
    for x in inputs:
        with torch.no_grad():
            conv = net.conv(x).numpy().reshape(len(x), -1)
            fc = net.fc(torch.relu(net.conv(x)).flatten(1)).numpy()
        for activation in (conv, fc):
            norms = [np.sum(np.abs(row) ** p) ** (1 / p) for row in activation]
            total += np.mean(norms) / activation.shape[1]
    return total / (2 * len(inputs))


@pytest.mark.parametrize("p", [1, 2, 3, 5, 64])
@pytest.mark.parametrize("calls", [1, 3])
def test_energy_equals_hand_computed_value(p, calls):
    net, x = make_net_and_input(torch.float64)
    inputs = [x * (t + 1) for t in range(calls)]  # distinct "timesteps"
    with EnergyLoss(p=p).register(net) as energy:
        for step_input in inputs:
            net(step_input)
        value = energy()
    assert value.item() == pytest.approx(hand_energy(net, inputs, p), rel=1e-12)


@pytest.mark.parametrize("p", [2, 5])
def test_energy_is_differentiable_and_gradchecks(p):
    net, x = make_net_and_input(torch.float64)
    x.requires_grad_(True)
    with EnergyLoss(p=p).register(net) as energy:

        def value(inp):
            energy.reset()
            net(inp)
            return energy()

        assert torch.autograd.gradcheck(value, (x,))
        energy.reset()
        net(x)
        energy().backward()
    assert net.conv.weight.grad.abs().sum() > 0 and net.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("p", "scale"), [(32, 30.0), (64, 10.0), (64, 0.1), (64, 0.0)])
def test_a_large_p_neither_overflows_nor_underflows_in_float32(p, scale):
    # |a|^p in float32: inf from |a| = 16 at p = 32, 0 below 0.25 at p = 64
    torch.manual_seed(0)
    rows = torch.randn(4, 16, dtype=torch.float64) * scale

    def energy_and_grad(dtype):
        a = rows.to(dtype).clone().requires_grad_(True)
        with EnergyLoss(p=p).register([nn.Identity()]) as energy:
            energy._record(0, nn.Identity(), (), a)
            value = energy()
            value.backward()
        return value.double(), a.grad.double()

    value, grad = energy_and_grad(torch.float32)
    reference, reference_grad = energy_and_grad(torch.float64)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-30)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-6)
    if scale:
        expected = np.mean([np.sum(np.abs(row) ** p) ** (1 / p) for row in rows.numpy()]) / rows.shape[1]
        assert reference.item() == pytest.approx(expected, rel=1e-12)


def test_reset_and_no_calls_give_zero():
    net, x = make_net_and_input()
    with EnergyLoss().register(net) as energy:
        assert energy().item() == 0.0
        net(x)
        assert energy().item() > 0
        energy.reset()
        zero = energy()
        assert zero.item() == 0.0 and zero.grad_fn is None  # no graph kept after reset


def test_hooks_removed_by_remove_and_by_with_block():
    net, x = make_net_and_input()
    energy = EnergyLoss().register(net)
    assert len(net.conv._forward_hooks) == 1 and len(net.fc._forward_hooks) == 1
    energy.remove()
    assert not net.conv._forward_hooks and not net.fc._forward_hooks
    net(x)
    assert energy().item() == 0.0

    with pytest.raises(RuntimeError, match="boom"):
        with EnergyLoss().register(net):
            assert len(net.fc._forward_hooks) == 1
            raise RuntimeError("boom")
    assert not net.conv._forward_hooks and not net.fc._forward_hooks


def test_register_given_modules_only_and_types_filter():
    net, x = make_net_and_input(torch.float64)
    with EnergyLoss(p=1).register([net.fc]) as energy:
        net(x)
        assert not net.conv._forward_hooks
        with torch.no_grad():
            fc = net(x).numpy()
        # two calls of one module -> mean over both
        assert energy().item() == pytest.approx(np.abs(fc).sum(axis=1).mean() / 4, rel=1e-12)
    with EnergyLoss(module_types=(nn.Conv2d,)).register(net):
        assert len(net.conv._forward_hooks) == 1 and not net.fc._forward_hooks


def test_a_module_listed_twice_is_hooked_once():
    net, x = make_net_and_input(torch.float64)
    with EnergyLoss().register([net.fc, net.fc]) as energy:  # before: hooked twice, counted twice
        assert len(net.fc._forward_hooks) == 1
        out = net(x)
        torch.testing.assert_close(energy(), out.detach().abs().sum(dim=1).mean() / 4)


def test_module_that_did_not_run_does_not_dilute():
    net, x = make_net_and_input(torch.float64)
    unused = nn.Linear(2, 2)
    with EnergyLoss().register([net.fc, unused]) as energy:
        out = net(x)
        value = energy()
    torch.testing.assert_close(value, out.detach().abs().sum(dim=1).mean() / 4)


def test_an_lstm_cell_s_activity_is_its_hidden_state():
    torch.manual_seed(0)
    cell, x = nn.LSTMCell(3, 5).double(), torch.randn(4, 3, dtype=torch.float64)
    with EnergyLoss(p=2).register(nn.Sequential(cell)) as energy:
        h, _ = cell(x)
        value = energy()
    torch.testing.assert_close(value, torch.linalg.vector_norm(h.detach(), dim=1).mean() / 5)


def test_register_errors():
    net, _ = make_net_and_input()
    energy = EnergyLoss().register(net)
    with pytest.raises(RuntimeError, match="call remove\\(\\) first\\), but got 2 hooks"):
        energy.register(net)
    energy.remove()
    with pytest.raises(ValueError, match="must contain a module of types .*but got ReLU"):
        EnergyLoss().register(nn.ReLU())
    with pytest.raises(ValueError, match="but got an empty iterable"):
        EnergyLoss().register([])
    with pytest.raises(ValueError, match=r"p must be an int >= 1, but got 0"):
        EnergyLoss(p=0)
    with pytest.raises(ValueError, match="module_types must be a non-empty sequence"):
        EnergyLoss(module_types=())
