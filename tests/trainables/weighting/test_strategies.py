"""The weighting strategies in training: what the papers claim, on toy problems and on digits."""

import math

import pytest
import torch
from torch import nn

from trainables.losses import CrossEntropyLoss, EnergyLoss, MultiHeadLoss
from trainables.train import train
from trainables.weighting import DWA, STRATEGIES, STRATEGY, GradNorm, Uncertainty, pcgrad


class _TwoRegressions(nn.Module):
    """A shared linear layer and two scalar heads (``heads``, as the strategies expect)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})
        self.last_shared = self.shared  # GradNorm's layer

    def forward(self, x):
        h = torch.relu(self.shared(x))
        return {name: layer(h)[:, 0] for name, layer in self.heads.items()}


class _Squared(nn.Module):
    def forward(self, pred, target):
        return ((pred - target) ** 2).mean()


def _attach(strategy, model):
    criterion = MultiHeadLoss(losses={"a": _Squared(), "b": _Squared()}, weights={"a": 1.0, "b": 1.0})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    strategy.on_start(model=model, optimizer=optimizer, criterion=criterion)
    return criterion, optimizer


def test_uncertainty_weighting_recovers_the_inverse_noise_ratio():
    # Two regression tasks with noise sigma 0.5 and 2: at the optimum s_i = log E[L_i], so the
    # weights 0.5 exp(-s_i) stand in the ratio sigma_b^2 / sigma_a^2 = 16.
    torch.manual_seed(0)
    x = torch.randn(4096, 4)
    clean = x @ torch.tensor([1.0, -2.0, 0.5, 1.0])
    targets = {"a": clean + 0.5 * torch.randn(4096), "b": -clean + 2.0 * torch.randn(4096)}
    model, strategy = _TwoRegressions(), Uncertainty()
    criterion, optimizer = _attach(strategy, model)
    for step in range(1500):
        index = torch.randint(0, 4096, (256,))
        total, _ = criterion(model(x[index]), {k: v[index] for k, v in targets.items()})
        optimizer.zero_grad()
        criterion.backward(total)
        optimizer.step()
    weights = strategy.weights()
    assert (weights[0] / weights[1]).item() == pytest.approx(16.0, rel=0.25)


def test_gradnorm_moves_the_heads_gradient_norms_toward_equality():
    # Head b's loss is 10x head a's: its gradient on the shared layer starts far larger; with
    # alpha = 0 GradNorm's target is equal norms.
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    y = x.sum(dim=1)
    model, strategy = _TwoRegressions(), GradNorm(alpha=0.0)
    criterion, optimizer = _attach(strategy, model)
    criterion.losses["b"] = _ScaledSquared(10.0)

    def norm_ratio() -> float:
        out = model(x)
        norms = [torch.cat([g.flatten() for g in torch.autograd.grad(
            w * criterion.losses[h](out[h], y), strategy.layer, retain_graph=True)]).norm()
            for h, w in zip(strategy.heads, strategy.weights())]
        return (norms[1] / norms[0]).item()

    before = norm_ratio()
    for _ in range(300):
        total, _ = criterion(model(x), {"a": y, "b": y})
        optimizer.zero_grad()
        criterion.backward(total)
        optimizer.step()
    after = norm_ratio()
    assert before > 3.0 and abs(after - 1.0) < 0.5 * abs(before - 1.0)
    assert strategy.weights().sum().item() == pytest.approx(2.0, rel=1e-5)  # renormalised to K
    assert strategy.weights()[0] > strategy.weights()[1]


class _ScaledSquared(_Squared):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, pred, target):
        return self.factor * super().forward(pred, target)


@pytest.mark.parametrize("name", ["dwa", "gradnorm", "pcgrad"])
def test_strategies_that_balance_heads_refuse_one_head(name):
    model = _TwoRegressions()
    criterion = MultiHeadLoss(losses={"a": CrossEntropyLoss(num_classes=2)}, weights={"a": 1.0})
    with pytest.raises(ValueError, match=f"weighting {name} needs at least 2 heads"):
        STRATEGY.build(name).on_start(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                    criterion=criterion)


def _flat(strategy: str, **params):
    return {
        "data.kind": "digits", "data.limit": 500, "model.kind": "mlp", "model.mlp.hidden": 16,
        "heads.digit.loss": "ce", "heads.thickness.loss": "ordinal", "heads.smoothness.loss": "ce",
        "heads.thickness.weight": 0.5, "energy_weight": 0.01, "train.epochs": 4, "train.batch_size": 64, "train.lr": 0.01,
        "train.threads": 1, "train.device": "cpu", "weighting.strategy": strategy,
        **{f"weighting.{strategy}.{k}": v for k, v in params.items()},
    }


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_trains_reports_its_weights_and_resumes_with_the_same_weights(name, one_thread, tmp_path,
                                                                                     resume_after):
    reports = []
    whole = train(_flat(name), report=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    weights = [[r[f"weights/{h}"] for h in ("digit", "thickness", "smoothness")] for r in reports]
    if name == "fixed" or name == "pcgrad":
        assert weights == [[1.0, 0.5, 1.0]] * 4
    elif name == "dwa":
        assert weights[0] == weights[1] == [1.0, 0.5, 1.0] and weights[2] != weights[1]
    else:  # learned: they move
        assert weights[-1] != weights[0]
    assert whole["val/acc_mean"] > max(0.3, reports[0]["val/acc_mean"])  # it learns (chance: about 0.2)

    resumed, final = resume_after(_flat(name), tmp_path, 2)
    assert final == whole
    assert [[r[f"weights/{h}"] for h in ("digit", "thickness", "smoothness")] for r in resumed] == weights[2:]


def test_gradnorm_s_gains_get_a_gradient_on_the_recurrent_model_with_one_step(one_thread):
    # its layer is the input projection: the recurrent weights see a zero state at one step
    flat = {k: v for k, v in _flat("gradnorm").items() if not k.startswith("model.mlp.")} | {
        "model.kind": "recurrent_cnn", "train.epochs": 2}
    reports = []
    train(flat, report=reports.append)
    assert [reports[-1][f"weights/{h}"] for h in ("digit", "thickness", "smoothness")] != [
        pytest.approx(w) for w in (1.2, 0.6, 1.2)]  # moved from w scaled to sum to K


@pytest.mark.parametrize("name", ["uncertainty", "gradnorm"])
def test_a_head_of_weight_zero_stays_out_of_a_learned_weighting(name):
    # Uncertainty: the head's 0.5 s_b alone drove s_b down (Adam, lr 0.5: -0.5 a step) until
    # exp(-s_b) overflowed and inf * 0 made the loss NaN. GradNorm: the head's gain rose from 0.
    torch.manual_seed(0)
    model, strategy = _TwoRegressions(), STRATEGY.build(name)
    criterion = MultiHeadLoss(losses={"a": _Squared(), "b": _Squared()}, weights={"a": 1.0, "b": 0.0})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    strategy.on_start(model=model, optimizer=optimizer, criterion=criterion)
    x = torch.randn(64, 4)
    targets = {"a": x.sum(dim=1), "b": -x.sum(dim=1)}
    for _ in range(300):
        total, _ = criterion(model(x), targets)
        optimizer.zero_grad()
        criterion.backward(total)
        optimizer.step()
        assert torch.isfinite(total)
    weights = strategy.weights()
    assert weights[1].item() == 0.0 and weights[0].item() > 0
    learned = strategy.uncertainty.log_vars if name == "uncertainty" else strategy.gains
    assert learned[1].item() == 0.0  # no gradient ever reached it


def test_gradnorm_s_weights_sum_to_the_number_of_heads_that_train():
    # as DWA's: a head of weight 0 scaled the others' weights up (to sum to 3 over 2 heads)
    torch.manual_seed(0)
    model, strategy = _TwoRegressions(), GradNorm(alpha=1.5)
    model.heads["c"] = nn.Linear(8, 1)
    criterion = MultiHeadLoss(losses={"a": _Squared(), "b": _Squared(), "c": _Squared()},
                              weights={"a": 1.0, "b": 3.0, "c": 0.0})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy.on_start(model=model, optimizer=optimizer, criterion=criterion)
    assert strategy.weights().tolist() == pytest.approx([0.5, 1.5, 0.0])  # w scaled to sum to 2
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    targets = {"a": x.sum(dim=1), "b": -x.sum(dim=1), "c": x[:, 0]}
    for _ in range(5):
        total, _ = criterion(model(x), targets)
        optimizer.zero_grad()
        criterion.backward(total)
        optimizer.step()
    weights = strategy.weights()
    assert weights.tolist() != pytest.approx([0.5, 1.5, 0.0])  # learned
    assert weights.sum().item() == pytest.approx(2.0) and weights[2].item() == 0.0


def test_dwa_shares_its_total_among_the_heads_that_train():
    # the softmax ran over a head of weight 0 too: its untrained loss rising took the others' share
    model, strategy = _TwoRegressions(), DWA(temperature=2.0)
    criterion = MultiHeadLoss(losses={"a": _Squared(), "b": _Squared(), "c": _Squared()},
                              weights={"a": 1.0, "b": 2.0, "c": 0.0})
    strategy.on_start(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), criterion=criterion)
    for epoch, losses in enumerate([(1.0, 1.0, 1.0), (0.8, 0.4, 50.0)], start=1):
        strategy.on_epoch_end(epoch=epoch, metrics={f"train/loss/{h}": v for h, v in zip("abc", losses)})
    ratios = [0.8, 0.4]
    exps = [math.exp(r / 2.0) for r in ratios]
    expected = [2 * e / sum(exps) for e in exps]  # K = 2 heads that train
    assert strategy.lambdas.tolist() == pytest.approx([*expected, 0.0])
    assert strategy.weights().tolist() == pytest.approx([expected[0], 2 * expected[1], 0.0])


def test_the_task_loss_leaves_out_the_uncertainty_terms():
    # 0.5 s_i makes the uncertainty total negative once the losses are small: the task loss stays
    # the heads' losses at their effective weights, for the energy alarm and the logs
    model, strategy = _TwoRegressions(), Uncertainty()
    criterion, _ = _attach(strategy, model)
    with torch.no_grad():
        strategy.uncertainty.log_vars.fill_(-3.0)
    x, y = torch.zeros(4, 4), torch.zeros(4)
    total, breakdown = criterion(model(x), {"a": y, "b": y})
    values = torch.stack([breakdown["loss/a"], breakdown["loss/b"]])
    assert breakdown["loss/task"].item() == pytest.approx((strategy.weights() * values).sum().item())
    assert total.item() == pytest.approx((strategy.weights() * values).sum().item() - 3.0)


def test_the_energy_share_is_of_the_task_loss_and_energy_without_the_uncertainty_terms():
    # weighted energy / total went negative once the 0.5 s_i terms did
    model, strategy = _TwoRegressions(), Uncertainty()
    criterion = MultiHeadLoss(losses={"a": _Squared(), "b": _Squared()}, weights={"a": 1.0, "b": 1.0},
                              energy=EnergyLoss(p=1), energy_weight=0.1)
    strategy.on_start(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01), criterion=criterion)
    with torch.no_grad():
        strategy.uncertainty.log_vars.fill_(-3.0)
    x = torch.randn(4, 4)
    with torch.no_grad():
        near = {name: out + 0.1 for name, out in model(x).items()}  # small losses
    with criterion.energy.register(model):
        total, breakdown = criterion(model(x), near)
    weighted, task = breakdown["loss/energy_weighted"].item(), breakdown["loss/task"].item()
    assert weighted > 0 and total.item() < 0  # the uncertainty terms: -3 in all
    assert breakdown["loss/energy_share"].item() == pytest.approx(weighted / (task + weighted))


def test_pcgrad_in_training_projects_the_shared_gradients_and_leaves_the_rest_plain():
    torch.manual_seed(0)
    model, strategy = _TwoRegressions(), STRATEGY.build("pcgrad")
    criterion, optimizer = _attach(strategy, model)
    x = torch.randn(64, 4)
    with torch.no_grad():  # head b reads the features negated, for the same target: they conflict
        model.heads["b"].weight.copy_(-model.heads["a"].weight)
        model.heads["b"].bias.copy_(model.heads["a"].bias)
    targets = {"a": 3 * x.sum(dim=1), "b": 3 * x.sum(dim=1)}
    shared = [model.shared.weight, model.shared.bias]
    own = list(model.heads.parameters())

    out = model(x)
    losses = [criterion.losses[h](out[h], targets[h]) for h in ("a", "b")]
    per_head = [torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared, retain_graph=True)])
                for loss in losses]
    plain_own = torch.autograd.grad(sum(losses), own, retain_graph=True)
    replay = torch.Generator()
    replay.set_state(strategy.generator.get_state())
    expected = torch.stack(pcgrad(per_head, generator=replay)).sum(0)
    assert torch.dot(per_head[0], per_head[1]) < 0  # they do conflict

    total, _ = criterion(out, targets)
    optimizer.zero_grad()
    criterion.backward(total)
    got = torch.cat([p.grad.flatten() for p in shared])
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, sum(per_head), atol=1e-3)  # projected, not the plain sum
    assert all(torch.allclose(p.grad, g) for p, g in zip(own, plain_own))


def test_pcgrad_leaves_a_shared_parameter_no_loss_reaches_without_a_gradient():
    model = _TwoRegressions()
    model.spare = nn.Linear(2, 2)  # shared (outside the heads) but unused by forward
    strategy = STRATEGY.build("pcgrad")
    criterion, optimizer = _attach(strategy, model)
    x = torch.randn(8, 4)
    total, _ = criterion(model(x), {"a": x.sum(dim=1), "b": x.sum(dim=1)})
    criterion.backward(total)
    assert model.spare.weight.grad is None and model.shared.weight.grad is not None


class _ZeroAtFirst(_Squared):
    """Loss 0 on its first call (a batch whose targets were all ignored), then the squared error."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, pred, target):
        self.calls += 1
        return super().forward(pred, target) * (0.0 if self.calls == 1 else 1.0)


def test_gradnorm_takes_a_heads_first_loss_above_zero_as_its_initial_loss():
    # With the first step's loss 0 as L_b(0), every rate after it was inf, every target NaN, and
    # head b's gain never got a gradient.
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    targets = {"a": x.sum(dim=1), "b": -x.sum(dim=1)}
    model, strategy = _TwoRegressions(), GradNorm(alpha=1.5)
    criterion, optimizer = _attach(strategy, model)
    criterion.losses["b"] = _ZeroAtFirst()
    seen, b_grads = [], []
    for _ in range(20):
        total, parts = criterion(model(x), targets)
        seen.append({head: float(parts[f"loss/{head}"]) for head in ("a", "b")})
        optimizer.zero_grad()
        criterion.backward(total)
        b_grads.append(strategy.gains.grad[1].item())
        optimizer.step()
        assert torch.isfinite(strategy.weights()).all()
    assert seen[0]["b"] == 0.0 < seen[1]["b"]
    assert any(g != 0 for g in b_grads[1:])
    assert strategy.initial.tolist() == pytest.approx([seen[0]["a"], seen[1]["b"]])


def test_gradnorm_resumes_from_a_state_that_still_holds_the_old_started_flag():
    model, strategy = _TwoRegressions(), GradNorm()
    _attach(strategy, model)
    state = {**strategy.state_dict(), "initial": torch.tensor([2.0, 3.0]), "_extra_state": {"started": True}}
    resumed = GradNorm()
    _attach(resumed, _TwoRegressions())
    resumed.load_state_dict(state)
    assert resumed.initial.tolist() == [2.0, 3.0]
    with pytest.raises(RuntimeError, match="Unexpected key"):  # any other unknown key is still refused
        resumed.load_state_dict({**state, "stray": torch.zeros(1)})


@pytest.mark.parametrize(("name", "params", "message"), [
    ("gradnorm", {"alpha": -3.0}, r"alpha must be a number in \[0, 10\], but got -3.0"),
    ("gradnorm", {"alpha": float("nan")}, r"alpha must be a number in \[0, 10\], but got nan"),
    ("dwa", {"temperature": -1.0}, r"temperature must be a number > 0, but got -1.0"),
])
def test_a_strategy_built_directly_checks_its_own_parameters(name, params, message):
    # DWA(temperature=-1.0) failed only after two epochs; GradNorm(alpha=-3.0) trained
    with pytest.raises(ValueError, match=message):
        STRATEGY.build(name, **params)
