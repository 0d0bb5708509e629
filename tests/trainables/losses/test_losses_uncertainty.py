"""UncertaintyWeighting against the Kendall & Gal formula for several task counts."""

import math

import pytest
import torch
from torch import nn

from trainables.losses import UncertaintyWeighting


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_value_and_gradients_match_formula(num_tasks):
    weighting = UncertaintyWeighting(num_tasks=num_tasks).double()
    assert isinstance(weighting.log_vars, nn.Parameter)
    assert torch.equal(weighting.log_vars, torch.zeros(num_tasks, dtype=torch.float64))

    generator = torch.Generator().manual_seed(num_tasks)
    s = torch.randn(num_tasks, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        weighting.log_vars.copy_(s)
    values = torch.rand(num_tasks, generator=generator, dtype=torch.float64)
    losses = [value.clone().requires_grad_(True) for value in values]

    total = weighting(losses)
    expected = sum(0.5 * math.exp(-si) * li.item() + 0.5 * si for si, li in zip(s.tolist(), losses))
    assert total.item() == pytest.approx(expected, rel=1e-12)

    total.backward()
    grad_s = [-0.5 * math.exp(-si) * li.item() + 0.5 for si, li in zip(s.tolist(), losses)]
    assert weighting.log_vars.grad.tolist() == pytest.approx(grad_s, rel=1e-12)
    grad_losses = [0.5 * math.exp(-si) for si in s.tolist()]
    assert [li.grad.item() for li in losses] == pytest.approx(grad_losses, rel=1e-12)


def test_optimum_of_s_is_log_of_loss():
    # dL/ds = 0 at s = log L: the learned weight 0.5 exp(-s) is inversely proportional to L.
    weighting = UncertaintyWeighting(num_tasks=2)
    losses = [torch.tensor(4.0), torch.tensor(0.25)]
    optimiser = torch.optim.SGD(weighting.parameters(), lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        weighting(losses).backward()
        optimiser.step()
    assert weighting.log_vars.tolist() == pytest.approx([math.log(4.0), math.log(0.25)], abs=1e-3)


def test_errors():
    with pytest.raises(ValueError, match="num_tasks must be an int >= 1, but got 0"):
        UncertaintyWeighting(num_tasks=0)
    weighting = UncertaintyWeighting(num_tasks=2)
    with pytest.raises(ValueError, match="losses must have num_tasks=2 entries, but got 3"):
        weighting([torch.tensor(1.0)] * 3)
    message = r"every loss must be a 0-dim tensor, but got shapes \[\[\], \[2\]\]"
    with pytest.raises(ValueError, match=message):
        weighting([torch.tensor(1.0), torch.ones(2)])
