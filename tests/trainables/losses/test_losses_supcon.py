"""The supervised contrastive (InfoNCE) loss against a loop formula, and its masked rows."""

import math

import pytest
import torch

from trainables.losses import supcon_loss


def _by_loop(features, labels, temperature, ignore_index=-1):
    u = torch.nn.functional.normalize(features.double(), dim=1)
    n = len(labels)
    rows = []
    for i in range(n):
        if labels[i] == ignore_index:
            continue
        others = [a for a in range(n) if a != i and labels[a] != ignore_index]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(u[i] @ u[a]) / temperature) for a in others)
        rows.append(-sum(float(u[i] @ u[j]) / temperature - math.log(denominator) for j in positives) / len(positives))
    return sum(rows) / len(rows)


def test_supcon_matches_the_loop_formula_and_skips_rows_without_a_positive():
    torch.manual_seed(0)
    features = torch.randn(9, 5, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, -1, 1])  # 2 and 3 have no positive, 7 is ignored
    value = supcon_loss(features, labels, temperature=0.5)
    assert value.item() == pytest.approx(_by_loop(features, labels, 0.5), rel=1e-10)


def test_rows_without_positives_are_finite_and_backpropagate():
    features = torch.randn(4, 3, requires_grad=True)
    value = supcon_loss(features, torch.tensor([0, 1, 2, 3]), temperature=0.07)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert torch.isfinite(features.grad).all()
    one = torch.randn(1, 3, requires_grad=True)
    supcon_loss(one, torch.tensor([0])).backward()  # a batch of one
    assert torch.isfinite(one.grad).all()


def test_same_label_features_that_align_cost_less():
    labels = torch.tensor([0, 0, 1, 1])
    aligned = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]])
    mixed = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.1], [-1.0, -0.1]])
    assert supcon_loss(aligned, labels) < supcon_loss(mixed, labels)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"labels": torch.zeros(3, dtype=torch.long)}, r"features must be \[N, F\] and labels \[N\]"),
])
def test_supcon_refuses_bad_input(kwargs, message):
    args = {"features": torch.randn(4, 2), "labels": torch.zeros(4, dtype=torch.long)} | kwargs
    with pytest.raises(ValueError, match=message):
        supcon_loss(args.pop("features"), args.pop("labels"), **args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_supcon_under_autocast_computes_in_float32(dtype):
    # the similarities ran in 16 bits again: fp16 could not hold the -1e9 of excluded pairs
    torch.manual_seed(0)
    features, labels = torch.randn(8, 5), torch.tensor([0, 0, 1, 1, 2, 2, 3, -1])
    with torch.autocast("cpu", dtype=dtype):
        value = supcon_loss(features, labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(supcon_loss(features, labels).item(), rel=1e-6)
