"""A temporal model's batch through the losses: masked head losses, energy over every step."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.losses import CrossEntropyLoss, EnergyLoss, MultiHeadLoss, OrdinalLoss, RecurrentState
from trainables.losses._energy import DEFAULT_MODULE_TYPES
from trainables.models import build_model
from trainables.temporal import Presenter

SHAPE = (1, 8, 8)


def _model(**params):
    torch.manual_seed(0)
    return build_model("recurrent_cnn", input_shape=SHAPE, head_outputs={"digit": 10, "level": 5},
                       hidden=12, dropout=0.0, **params)


def test_masked_ce_equals_ce_over_the_supervised_steps_only():
    model = _model()
    x, y = torch.rand(6, *SHAPE), {"digit": torch.randint(0, 10, (6,)), "level": torch.randint(0, 5, (6,))}
    presenter = Presenter(presented=(True, False, True, True), supervised=(False, False, True, True))
    rows, labels = presenter.for_loss(model, x, y)
    loss = CrossEntropyLoss(num_classes=10)(rows["digit"], labels["digit"])

    outputs = model(x, presenter.presented)["digit"]  # [N, T, K], same weights, no dropout
    by_hand = torch.stack([F.cross_entropy(outputs[:, t], y["digit"], reduction="none") for t in (2, 3)])
    assert loss.item() == pytest.approx(by_hand.mean().item(), rel=1e-6)
    # the unsupervised steps get ignore_index; the supervised ones the sample's label
    assert labels["digit"].view(6, 4)[:, :2].eq(-1).all()
    assert torch.equal(labels["digit"].view(6, 4)[:, 2], y["digit"])


def test_an_all_masked_batch_gives_a_zero_connected_to_the_graph():
    model = _model()
    x, y = torch.rand(3, *SHAPE), {"digit": torch.randint(0, 10, (3,)), "level": torch.randint(0, 5, (3,))}
    presenter = Presenter(presented=(True, True), supervised=(False, False))
    rows, labels = presenter.for_loss(model, x, y)
    criterion = MultiHeadLoss(losses={"digit": CrossEntropyLoss(num_classes=10), "level": OrdinalLoss(num_classes=5)},
                              weights={"digit": 1.0, "level": 1.0})
    total, _ = criterion(rows, labels)
    assert total.item() == 0.0 and total.requires_grad
    total.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def _energy_by_hand(model: nn.Module, run, steps: int, p: int):
    """(sum over hooked modules m and calls t of mean_b ||a_b||_p / n_units, / (M * T), what
    ``run()`` returned), recorded by hooks of our own during ``run()``."""
    records: dict[int, list[float]] = {}
    handles = []
    hooked = (nn.Conv2d, nn.Linear, nn.RNNCellBase, RecurrentState)  # a recurrent cell's output is its state
    for index, module in enumerate(m for m in model.modules() if isinstance(m, hooked)):
        def hook(module, args, out, index=index):
            flat = out.detach().double().reshape(out.shape[0], -1)
            value = (flat.abs() ** p).sum(dim=1) ** (1 / p) / flat.shape[1]
            records.setdefault(index, []).append(value.mean().item())
        handles.append(module.register_forward_hook(hook))
    result = run()
    for handle in handles:
        handle.remove()
    calls = {len(v) for v in records.values()}
    assert calls == {steps}  # every hooked module ran once per step
    return math.fsum(v for values in records.values() for v in values) / (len(records) * steps), result


@pytest.mark.parametrize(("cell", "p"), [("leaky", 1), ("gru", 2)])
def test_energy_over_the_steps_equals_the_hand_formula_and_resets_between_steps(cell, p):
    model = _model(cell=cell)
    presented = (True, False, True)
    criterion = MultiHeadLoss(losses={"digit": CrossEntropyLoss(num_classes=10), "level": CrossEntropyLoss(num_classes=5)},
                              weights={"digit": 1.0, "level": 1.0}, energy=EnergyLoss(p=p), energy_weight=0.5)
    presenter = Presenter(presented=presented, supervised=(True, False, True))
    with criterion.energy.register(model):  # once, as for a training epoch
        for seed in (1, 2):  # two optimiser steps: the second sees its own batch only
            x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(seed))
            y = {"digit": torch.zeros(4, dtype=torch.long), "level": torch.ones(4, dtype=torch.long)}
            expected, (total, breakdown) = _energy_by_hand(
                model, lambda: criterion(*presenter.for_loss(model, x, y)), len(presented), p)
            assert breakdown["loss/energy"].item() == pytest.approx(expected, rel=1e-5)
            total.backward()


def test_the_energy_of_the_leaky_cell_is_its_state():
    # before: a Linear U of its own was hooked, and the energy counted U h_{t-1} (0 at the first
    # step) instead of the state h_t, which the GRU cell's output is
    model = _model(cell="leaky")
    recorded, states = [], []
    model.recurrent.register_forward_hook(lambda module, args, out: recorded.append(out.detach()))
    encoded = []
    model.encoder.register_forward_hook(lambda module, args, out: encoded.append(out.detach()))
    model(torch.rand(3, *SHAPE), (True, False, True))
    leak, u, state = model.recurrent.leak, model.recurrent.weight.detach(), torch.zeros(3, model.heads_features)
    for f in encoded:  # the cell's formula, by hand
        state = (1 - leak) * state + leak * torch.relu(f + state @ u.T)
        states.append(state)
    assert len(recorded) == 3 and recorded[0].abs().sum() > 0
    for got, expected in zip(recorded, states):
        torch.testing.assert_close(got, expected)
    hooked = [m for m in model.modules() if isinstance(m, DEFAULT_MODULE_TYPES)]
    assert model.recurrent in hooked and not any(isinstance(m, nn.Linear) and m.in_features == m.out_features
                                                 == model.heads_features for m in hooked)


def test_null_steps_feed_a_zero_image_and_the_state_carries_over():
    model = _model()
    seen = []
    model.encoder[0].register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    x = torch.rand(2, *SHAPE) + 0.5
    out = model(x, (True, False, True))
    assert [bool(s.any()) for s in seen] == [True, False, True]
    assert torch.equal(seen[0], x) and torch.equal(seen[2], x)
    # The same image at steps 0 and 2 gives different outputs: the recurrent state differs.
    assert not torch.allclose(out["digit"][:, 0], out["digit"][:, 2])


def test_the_presenter_refuses_masks_of_another_length():
    with pytest.raises(ValueError, match="one bool per step"):
        Presenter(presented=(True, True), supervised=(True,))


def test_with_every_step_supervised_each_label_is_repeated_over_the_steps():
    model = _model()
    x, y = torch.rand(5, *SHAPE), {"digit": torch.randint(0, 10, (5,)), "level": torch.randint(0, 5, (5,))}
    rows, labels = Presenter(presented=(True, False, True), supervised=(True, True, True)).for_loss(model, x, y)
    assert rows["digit"].shape == (15, 10) and rows["level"].shape == (15, 5)
    for name in y:
        assert torch.equal(labels[name].view(5, 3), y[name][:, None].expand(5, 3))
