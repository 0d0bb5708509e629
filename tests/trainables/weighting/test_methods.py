"""The pure balancing rules against the papers' formulas and claims."""

import math

import pytest
import torch

from trainables.weighting import dwa_weights, gradnorm_targets, pcgrad


def test_dwa_gives_equal_weights_for_the_first_two_epochs():
    assert dwa_weights([[2.0, 1.0, 0.5]], temperature=2.0) == [1.0, 1.0, 1.0]


def test_dwa_follows_the_formula_on_a_scripted_history():
    history = [[4.0, 2.0], [3.0, 2.0], [2.0, 1.8]]  # only the last two epochs count
    r = [2.0 / 3.0, 1.8 / 2.0]
    t = 2.0
    expected = [2 * math.exp(x / t) / (math.exp(r[0] / t) + math.exp(r[1] / t)) for x in r]
    assert dwa_weights(history, temperature=t) == pytest.approx(expected, rel=1e-12)
    # the head whose loss fell less gets more weight; the weights sum to K
    weights = dwa_weights(history, temperature=t)
    assert weights[1] > weights[0] and math.fsum(weights) == pytest.approx(2.0)


def test_dwa_temperature_limits():
    history = [[1.0, 1.0], [0.5, 1.0]]
    assert dwa_weights(history, temperature=1e6) == pytest.approx([1.0, 1.0], abs=1e-6)  # hot: equal
    assert dwa_weights(history, temperature=1e-3) == pytest.approx([0.0, 2.0], abs=1e-6)  # cold: the slowest


def test_dwa_gives_a_head_whose_older_loss_is_zero_the_rate_one():
    # before, a head whose epoch-mean loss was 0 failed the trial (no ratio)
    t = 2.0
    r = [1.0, 0.5, 0.0]  # head 0: 0 then 3 (no rate); head 1: halved; head 2: from 2 to 0
    expected = [3 * math.exp(x / t) / math.fsum(math.exp(y / t) for y in r) for x in r]
    assert dwa_weights([[0.0, 2.0, 2.0], [3.0, 1.0, 0.0]], temperature=t) == pytest.approx(expected, rel=1e-12)
    assert dwa_weights([[0.0, 0.0], [0.0, 0.0]], temperature=t) == [1.0, 1.0]


@pytest.mark.parametrize(("history", "temperature", "message"), [
    ([[1.0, 2.0], [1.0]], 2.0, "same number of heads"),
    ([[1.0], [1.0]], 0.0, "temperature must be"),
    ([[-1.0], [1.0]], 2.0, "finite and >= 0"),
    ([[math.nan], [1.0]], 2.0, "finite and >= 0"),
    ([], 2.0, "history must hold"),
])
def test_dwa_refuses_bad_input(history, temperature, message):
    with pytest.raises(ValueError, match=message):
        dwa_weights(history, temperature=temperature)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_pcgrad_update_does_not_conflict_with_either_of_two_conflicting_gradients():
    # the paper's theorem (two tasks): the update has a non-negative inner product with each
    for seed in range(20):
        g1, g2 = torch.randn(6, generator=_generator(seed)).double(), torch.randn(6, generator=_generator(seed + 100)).double()
        if torch.dot(g1, g2) >= 0:
            g2 = g2 - 2 * torch.dot(g1, g2) / torch.dot(g1, g1) * g1  # make them conflict
        assert torch.dot(g1, g2) < 0
        projected = pcgrad([g1, g2], generator=_generator(seed))
        update = projected[0] + projected[1]
        assert torch.dot(update, g1) >= -1e-12 and torch.dot(update, g2) >= -1e-12
        # each projected gradient is orthogonal to the one it was projected against
        assert abs(torch.dot(projected[0], g2).item()) < 1e-12
        assert abs(torch.dot(projected[1], g1).item()) < 1e-12


def test_pcgrad_projects_against_the_others_in_the_generators_order():
    grads = [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64),
             torch.tensor([-1.0, -0.5, 1.0], dtype=torch.float64)]
    projected = pcgrad(grads, generator=_generator(3))
    replay = _generator(3)
    for i, g in enumerate(projected):
        order = [j for j in torch.randperm(3, generator=replay).tolist() if j != i]
        # replay the projections to find the last gradient g_i was projected against
        current, last = grads[i].clone(), None
        for j in order:
            dot = torch.dot(current, grads[j])
            if dot < 0:
                current = current - dot / torch.dot(grads[j], grads[j]) * grads[j]
                last = j
        assert torch.allclose(g, current)
        if last is not None:
            assert abs(torch.dot(g, grads[last]).item()) < 1e-12


def test_pcgrad_changes_nothing_without_conflicts():
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.1]), torch.tensor([2.0, 0.0])]
    projected = pcgrad(grads, generator=_generator())
    assert all(torch.equal(p, g) for p, g in zip(projected, grads))
    assert torch.equal(torch.stack(projected).sum(0), torch.stack(grads).sum(0))


def test_pcgrad_refuses_gradients_of_different_lengths():
    with pytest.raises(ValueError, match="flat tensors of one length"):
        pcgrad([torch.zeros(2), torch.zeros(3)], generator=_generator())


def test_gradnorm_targets_follow_the_relative_inverse_training_rates():
    norms = torch.tensor([1.0, 3.0])
    ratios = torch.tensor([0.5, 1.0])  # L_i(t) / L_i(0); their mean 0.75, so the relative rates are 2/3, 4/3
    targets = gradnorm_targets(norms, ratios, alpha=2.0)
    assert targets.tolist() == pytest.approx([2.0 * (2 / 3) ** 2, 2.0 * (4 / 3) ** 2])
    assert gradnorm_targets(norms, ratios, alpha=0.0).tolist() == pytest.approx([2.0, 2.0])
