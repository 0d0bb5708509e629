"""Head losses: one template over LOSSES, then limit cases against independent formulas."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.settings import SettingError
from trainables.losses import (
    LOSSES,
    build_loss,
    FocalLoss,
    OrdinalLoss,
    QuantizedLoss,
    SoftOrdinalLoss,
    cross_entropy_loss,
    focal_loss,
    ordinal_loss,
    quantized_loss,
    soft_ordinal_loss,
    symmetric_ce_loss,
    weighted_ce_loss,
)

C = 5

FUNCTIONS = {
    "ce": cross_entropy_loss,
    "ordinal": ordinal_loss,
    "quantized": quantized_loss,
    "weighted_ce": weighted_ce_loss,
    "focal": focal_loss,
    "soft_ordinal": soft_ordinal_loss,
    "symmetric_ce": symmetric_ce_loss,
}

# Non-default parameter sets, so the templates exercise more than the defaults.
VARIANTS = {
    "ce": [{}, {"label_smoothing": 0.2}],
    "ordinal": [
        {},
        {"distance": "l2", "alpha": 0.5},
        {"distance": "huber", "delta": 0.7, "normalize": False},
    ],
    "quantized": [{}, {"distance": "l2"}, {"distance": "huber", "delta": 0.5}],
    "weighted_ce": [{}, {"distance_power": 1.5, "weight": 0.7, "base": 0.3}],
    "focal": [{}, {"gamma": 0.5, "alpha": (0.1, 0.2, 0.3, 0.2, 0.2)}],
    "soft_ordinal": [{}, {"sigma": 0.6}],
    "symmetric_ce": [{}, {"alpha": 1.0, "beta": 0.5, "log_zero": -2.0}],
}
CASES = [(name, params) for name in LOSSES for params in VARIANTS[name]]
CASE_IDS = [f"{name}-{i}" for name in LOSSES for i in range(len(VARIANTS[name]))]

# One invalid value per tunable parameter rule, with the expected message.
BAD_PARAMS = [
    ("ce", {"label_smoothing": 1.5}, "label_smoothing must be a number in [0, 1), but got 1.5"),
    ("ce", {"label_smoothing": 1.0}, "label_smoothing must be a number in [0, 1), but got 1.0"),
    ("ce", {"label_smoothing": -0.1}, "label_smoothing must be a finite number >= 0"),
    ("ordinal", {"distance": "cos"}, "distance must be one of ['l1', 'l2', 'huber'], but got 'co"),
    ("ordinal", {"alpha": -1.0}, "alpha must be a finite number >= 0, but got -1.0"),
    ("ordinal", {"delta": 0.0}, "delta must be a finite number > 0, but got 0.0"),
    ("ordinal", {"normalize": 1}, "normalize must be a bool, but got 1"),
    ("quantized", {"distance": "l3"}, "distance must be one of"),
    ("quantized", {"delta": -1.0}, "delta must be a finite number > 0"),
    ("weighted_ce", {"distance_power": -2.0}, "distance_power must be a finite number >= 0"),
    ("weighted_ce", {"weight": float("nan")}, "weight must be a finite number >= 0, but got nan"),
    ("weighted_ce", {"base": -0.5}, "base must be a finite number >= 0"),
    ("focal", {"gamma": -1.0}, "gamma must be a finite number >= 0"),
    ("focal", {"alpha": (1.0, 2.0)}, f"alpha must be a sequence of num_classes={C} entries, but got (1.0, 2.0)"),
    ("focal", {"alpha": (1.0, -1.0, 1.0, 1.0, 1.0)}, "alpha must be a sequence of finite numbers >= 0"),
    ("focal", {"alpha": (0.0,) * C}, "alpha must be a sequence of finite numbers >= 0, one of them > 0"),
    ("soft_ordinal", {"sigma": 0.0}, "sigma must be a finite number >= 0.001, but got 0.0"),
    ("soft_ordinal", {"sigma": 1e-4}, "sigma must be a finite number >= 0.001, but got 0.0001"),
    ("symmetric_ce", {"beta": -1.0}, "beta must be a finite number >= 0, but got -1.0"),
    ("symmetric_ce", {"log_zero": 0.0}, "log_zero must be a finite number < 0, but got 0.0"),
]


def make_inputs(name, *, n=8, num_classes=C, dtype=torch.float32, seed=0, ignore=()):
    generator = torch.Generator().manual_seed(seed)
    outputs = LOSSES[name].outputs(num_classes)
    logits = torch.randn(n, outputs, generator=generator, dtype=dtype)
    target = torch.randint(0, num_classes, (n,), generator=generator)
    target[list(ignore)] = -1
    return logits, target


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- template over every loss


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_smoke_random_input(name, params):
    loss_fn = build_loss(name, num_classes=C, **params)
    logits, target = make_inputs(name, n=16)
    logits.requires_grad_(True)
    loss = loss_fn(logits, target)
    assert loss.shape == () and loss.dtype == torch.float32
    assert torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0

    prediction = loss_fn.predict(logits.detach())
    assert prediction.shape == (16,) and prediction.is_floating_point()
    assert ((prediction >= 0) & (prediction <= C - 1)).all()


@pytest.mark.parametrize("name", LOSSES)
def test_contract_class_attributes(name):
    cls = LOSSES[name].implementation()
    assert LOSSES[name].outputs(7) == cls.outputs(7)
    assert cls.outputs(7) == (1 if name == "quantized" else 7)
    assert cls.ordinal_prediction is (name in {"ordinal", "quantized"})


@pytest.mark.parametrize("name", LOSSES)
def test_wrong_shapes_and_dtypes(name):
    loss_fn = build_loss(name, num_classes=C)
    logits, target = make_inputs(name)
    k = logits.shape[1]
    rule = rf"logits must have shape \[N, {k}\], but got"
    with pytest.raises(ValueError, match=rf"{rule} \[8, {k}, 1\]"):
        loss_fn(logits[..., None], target)
    with pytest.raises(ValueError, match=rf"{rule} \[8, {k + 1}\]"):
        loss_fn(torch.randn(8, k + 1), target)
    with pytest.raises(ValueError, match=r"target must have shape \[8\] .*but got \[7\]"):
        loss_fn(logits, target[:7])
    with pytest.raises(ValueError, match=r"target must have shape \[8\] .*but got \[8, 1\]"):
        loss_fn(logits, target[:, None])
    with pytest.raises(ValueError, match="target must be an int64 tensor, but got torch.float32"):
        loss_fn(logits, target.float())
    with pytest.raises(ValueError, match="logits must be a floating-point tensor, but got torch"):
        loss_fn(logits.long(), target)
    with pytest.raises(ValueError, match="logits must have shape"):
        loss_fn.predict(logits[:, :0])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [C, 7, -2])
def test_target_out_of_range(name, bad):
    loss_fn = build_loss(name, num_classes=C)
    logits, target = make_inputs(name)
    target[3] = bad
    message = rf"targets must lie in \[0, {C - 1}\] or equal ignore_index=-1, but got \[{bad}\]"
    with pytest.raises(ValueError, match=message):
        loss_fn(logits, target)


@pytest.mark.parametrize(("name", "params", "message"), BAD_PARAMS)
def test_wrong_parameter(name, params, message):
    with pytest.raises(SettingError, match=re.escape(message)) as error:
        LOSSES[name].implementation()(num_classes=C, **params)
    # The parameter, the rule and the value as data, for the space validator.
    (param,) = params
    assert error.value.key == param
    given = params[param]
    assert (math.isnan(error.value.value) if isinstance(given, float) and math.isnan(given)
            else error.value.value == given)
    logits, target = make_inputs(name)
    with pytest.raises(ValueError, match=re.escape(message)):
        FUNCTIONS[name](logits, target, num_classes=C, **params)


@pytest.mark.parametrize("name", LOSSES)
def test_wrong_num_classes_or_ignore_index(name):
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, but got 1"):
        build_loss(name, num_classes=1)
    with pytest.raises(ValueError, match=r"ignore_index must lie outside \[0, 4\], but got 2"):
        build_loss(name, num_classes=C, ignore_index=2)
    # the pure functions too: C - 1 = 0 divided, a real class was skipped
    logits, target = make_inputs(name)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2, but got 1"):
        FUNCTIONS[name](logits[:, :LOSSES[name].outputs(1)], target.clamp(max=0), num_classes=1)
    with pytest.raises(ValueError, match=r"ignore_index must lie outside \[0, 4\], but got 2"):
        FUNCTIONS[name](logits, target, num_classes=C, ignore_index=2)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_gradcheck_float64(name, params):
    logits, target = make_inputs(name, n=4, dtype=torch.float64, seed=1, ignore=[2])
    logits.requires_grad_(True)

    def loss(z):
        return FUNCTIONS[name](z, target, num_classes=C, **params)

    assert torch.autograd.gradcheck(loss, (logits,))


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_module_equals_function(name, params):
    logits, target = make_inputs(name, ignore=[0, 5])
    module = build_loss(name, num_classes=C, **params)
    expected = FUNCTIONS[name](logits, target, num_classes=C, **params)
    torch.testing.assert_close(module(logits, target), expected, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("ignore_index", [-1, -100, C])
def test_ignored_targets_contribute_nothing(name, params, ignore_index):
    loss_fn = build_loss(name, num_classes=C, ignore_index=ignore_index, **params)
    logits, target = make_inputs(name, n=10, seed=3)
    ignored = torch.tensor([1, 4, 5, 9])
    target[ignored] = ignore_index
    keep = torch.ones(10, dtype=torch.bool)
    keep[ignored] = False
    # Garbage in ignored rows must not leak into the value (not even as NaN through 0 * inf).
    logits[ignored] = 1e6
    logits.requires_grad_(True)

    loss = loss_fn(logits, target)
    loss.backward()
    expected = loss_fn(logits.detach()[keep], target[keep])
    torch.testing.assert_close(loss, expected)
    assert (logits.grad[ignored] == 0).all()
    assert logits.grad[keep].abs().sum() > 0


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_all_ignored_is_connected_zero(name, params):
    loss_fn = build_loss(name, num_classes=C, **params)
    logits, _ = make_inputs(name)
    logits.requires_grad_(True)
    loss = loss_fn(logits, torch.full((8,), -1))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_half_precision_logits_are_computed_in_float32(name, params, dtype):
    # Logits of a few hundred: computed in 16 bits, every loss here is off by 6e-6 (relative) or
    # more, quantized l2 overflows to inf in float16; in float32 all stay within 1.1e-7.
    logits, target = make_inputs(name, n=64, seed=4)
    half = (logits * 300).to(dtype)
    loss_fn = build_loss(name, num_classes=C, **params)
    loss = loss_fn(half, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), loss_fn(half.double(), target), rtol=2e-6, atol=0)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_a_loss_and_its_prediction_under_autocast_are_those_in_float32(name, params):
    # the expected class's matmul ran in bf16 again under autocast: predictions came out rounded
    logits, target = make_inputs(name, n=16, seed=5)
    logits = logits * 3
    loss_fn = build_loss(name, num_classes=C, **params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, prediction = loss_fn(logits, target), loss_fn.predict(logits)
    assert loss.dtype == prediction.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(logits, target), rtol=1e-6, atol=0)
    torch.testing.assert_close(prediction, loss_fn.predict(logits), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_check_targets_false_skips_only_the_range_check(name, params):
    logits, target = make_inputs(name, ignore=[2])
    checked = build_loss(name, num_classes=C, **params)
    unchecked = build_loss(name, num_classes=C, **params)
    unchecked.check_targets = False
    expected = checked(logits, target)
    assert torch.equal(unchecked(logits, target), expected)
    assert torch.equal(FUNCTIONS[name](logits, target, num_classes=C, check_targets=False, **params), expected)
    target[3] = C
    with pytest.raises(ValueError, match="targets must lie in"):
        checked(logits, target)
    try:  # unchecked: whatever torch does with the bad index, but not the range check
        unchecked(logits, target)
    except (IndexError, RuntimeError):
        pass
    with pytest.raises(ValueError, match="target must be an int64 tensor"):
        unchecked(logits, target.float())


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_check_targets_false_still_checks_every_new_input_shape(name, params):
    unchecked = build_loss(name, num_classes=C, **params)
    unchecked.check_targets = False
    logits, target = make_inputs(name)
    unchecked(logits, target)
    wider = torch.cat([logits, logits[:, :1]], dim=1)
    with pytest.raises(ValueError, match=r"logits must have shape \[N, \d+\], but got \[8, \d+\]"):
        unchecked(wider, target)
    with pytest.raises(ValueError, match=r"target must have shape \[8\]"):
        unchecked(logits, target[:5])
    unchecked(logits, target)  # the first signature still passes


def test_ce_without_empty_batches_is_the_fused_mean_and_honours_ignore_index():
    logits, target = make_inputs("ce", n=16, ignore=[2, 5, 11])
    logits.requires_grad_(True)
    fused = build_loss("ce", num_classes=C, label_smoothing=0.1)
    fused.empty_batches = False
    loss = fused(logits, target)
    kept = target != -1
    independent = F.cross_entropy(logits[kept], target[kept], label_smoothing=0.1)
    torch.testing.assert_close(loss, independent)
    torch.testing.assert_close(loss, build_loss("ce", num_classes=C, label_smoothing=0.1)(logits, target))
    loss.backward()
    assert torch.all(logits.grad[~kept] == 0) and torch.all(logits.grad[kept].abs().sum(1) > 0)


def test_ce_promised_a_target_is_nan_on_an_all_ignored_batch_and_zero_by_default():
    logits, target = make_inputs("ce", ignore=range(8))
    safe = build_loss("ce", num_classes=C)
    promised = build_loss("ce", num_classes=C)
    promised.empty_batches = False
    assert safe(logits, target).item() == 0.0
    assert math.isnan(promised(logits, target).item())


def test_focal_tensor_alpha_is_checked_like_a_sequence():
    logits, target = make_inputs("focal")
    for alpha in ([1.0, -1.0, 1.0, 1.0, 1.0], [1.0, float("nan"), 1.0, 1.0, 1.0], [1.0, float("inf"), 1.0, 1.0, 1.0],
                  [0.0] * 5):
        with pytest.raises(ValueError, match=r"every entry of alpha must be a finite number >= 0, one of them > 0, but got \["):
            focal_loss(logits, target, num_classes=C, alpha=torch.tensor(alpha))
    with pytest.raises(ValueError, match=r"alpha must have shape \[5\], but got \[4\]"):
        focal_loss(logits, target, num_classes=C, alpha=torch.ones(4))


# ---------------------------------------------------------------- limit cases and formulas


def test_ce_matches_torch_with_label_smoothing():
    logits, target = make_inputs("ce", n=12)
    for smoothing in (0.0, 0.1, 0.99):
        torch.testing.assert_close(
            cross_entropy_loss(logits, target, num_classes=C, label_smoothing=smoothing),
            F.cross_entropy(logits, target, label_smoothing=smoothing),
        )


def test_focal_gamma_zero_equals_ce_exactly():
    logits, target = make_inputs("focal", n=12, ignore=[3])
    focal = focal_loss(logits, target, num_classes=C, gamma=0.0)
    assert torch.equal(focal, cross_entropy_loss(logits, target, num_classes=C))
    torch.testing.assert_close(focal, F.cross_entropy(logits, target, ignore_index=-1))


def test_focal_against_loop_formula():
    logits, target = make_inputs("focal", n=6, dtype=torch.float64, ignore=[2])
    alpha = (0.5, 1.0, 2.0, 0.25, 1.5)
    p = softmax(logits.numpy())
    terms = [
        -alpha[y] * (1 - p[i, y]) ** 1.7 * math.log(p[i, y])
        for i, y in enumerate(target.tolist())
        if y != -1
    ]
    value = focal_loss(logits, target, num_classes=C, gamma=1.7, alpha=alpha)
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    # Focusing: a well-classified sample loses more relative weight than a badly classified one.
    easy = torch.tensor([[8.0, 0, 0, 0, 0]])
    hard = torch.tensor([[0.0, 0, 0, 0, 8.0]])
    y = torch.tensor([0])
    ratio = lambda z: (focal_loss(z, y, num_classes=C) / cross_entropy_loss(z, y, num_classes=C))
    assert ratio(easy) < 1e-4 < 0.9 < ratio(hard)


def test_weighted_ce_weight_zero_equals_ce():
    logits, target = make_inputs("weighted_ce", n=12, ignore=[0])
    torch.testing.assert_close(
        weighted_ce_loss(logits, target, num_classes=C, weight=0.0, base=0.4),
        cross_entropy_loss(logits, target, num_classes=C),
        rtol=1e-6,  # the same terms; CE sums them in one fused kernel, in another order
        atol=0,
    )


@pytest.mark.parametrize(
    ("power", "weight", "base"), [(2.0, 1.0, 0.0), (0.5, 0.3, 0.2), (1.0, 2.0, 1.0)]
)
def test_weighted_ce_against_loop_formula(power, weight, base):
    num_classes = 7
    logits, target = make_inputs(
        "weighted_ce", n=6, num_classes=num_classes, dtype=torch.float64, ignore=[4]
    )
    p = softmax(logits.numpy())
    terms = []
    for i, y in enumerate(target.tolist()):
        if y == -1:
            continue
        penalty = sum(
            p[i, j] * (base + (abs(j - y) / (num_classes - 1)) ** power)
            for j in range(num_classes)
            if j != y
        )
        terms.append(-math.log(p[i, y]) + weight * penalty)
    value = weighted_ce_loss(
        logits, target, num_classes=num_classes, distance_power=power, weight=weight, base=base
    )
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)


def test_weighted_ce_penalises_distant_mass_more():
    target = torch.tensor([0])
    near = torch.tensor([[2.0, 4.0, 0, 0, 0]])
    far = torch.tensor([[2.0, 0, 0, 0, 4.0]])
    loss = lambda z: weighted_ce_loss(z, target, num_classes=C)
    assert loss(far) > loss(near)


def numpy_ordinal(z, y, *, num_classes, distance, alpha, normalize, delta):
    p = softmax(z)
    scale = num_classes - 1 if normalize else 1
    terms = []
    for i, t in enumerate(y):
        if t == -1:
            continue
        expectation = sum(p[i, j] * j for j in range(num_classes))
        d = abs(expectation - t) / scale
        d_delta = delta / scale
        if distance == "l1":
            term = d
        elif distance == "l2":
            term = d * d
        else:
            term = 0.5 * d * d / d_delta if d <= d_delta else d - 0.5 * d_delta  # smooth L1
        terms.append(term - alpha * math.log(p[i, t]))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("distance", ["l1", "l2", "huber"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("delta", [0.5, 3.0])
def test_ordinal_against_numpy_formula(distance, normalize, delta):
    num_classes = 9
    logits, target = make_inputs(
        "ordinal", n=10, num_classes=num_classes, dtype=torch.float64, ignore=[7]
    )
    logits = logits * 3  # spread the expectations so huber uses both branches
    params = dict(distance=distance, alpha=0.3, normalize=normalize, delta=delta)
    expected = numpy_ordinal(logits.numpy(), target.tolist(), num_classes=num_classes, **params)
    value = ordinal_loss(logits, target, num_classes=num_classes, **params)
    assert value.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("distance", ["l1", "l2", "huber"])
def test_ordinal_confident_correct_logit_has_zero_distance(distance):
    target = torch.tensor([0, 3, 4, 2])
    logits = F.one_hot(target, C).double() * 60.0
    loss = ordinal_loss(logits, target, num_classes=C, distance=distance, alpha=0.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    wrong = ordinal_loss(logits, (target + 1) % C, num_classes=C, distance=distance, alpha=0.0)
    assert wrong.item() > 0.01


@pytest.mark.parametrize("distance", ["l1", "l2", "huber"])
@pytest.mark.parametrize("num_classes", [2, 5, 256])
def test_ordinal_normalised_distance_stays_in_unit_interval(distance, num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(64, num_classes, generator=generator, dtype=torch.float64) * 20
    target = torch.randint(0, num_classes, (64,), generator=generator)
    # worst cases: all mass on one end, target on the other
    logits[:2] = -100.0
    logits[0, -1] = logits[1, 0] = 100.0
    target[0], target[1] = 0, num_classes - 1
    # delta far beyond the class range: huber must still stay within [0, 1]
    for delta in (1.0, 10.0 * num_classes):
        loss_fn = OrdinalLoss(num_classes=num_classes, distance=distance, alpha=0.0, delta=delta)
        per_sample = torch.stack([loss_fn(logits[i : i + 1], target[i : i + 1]) for i in range(64)])
        assert (per_sample >= 0).all() and (per_sample <= 1).all()
    worst_l1 = ordinal_loss(logits[:1], target[:1], num_classes=num_classes, alpha=0.0)
    assert worst_l1.item() == pytest.approx(1.0, abs=1e-9)


def test_ordinal_predict_is_softmax_expectation():
    logits, _ = make_inputs("ordinal", dtype=torch.float64)
    expected = softmax(logits.numpy()) @ np.arange(C)
    prediction = OrdinalLoss(num_classes=C).predict(logits).numpy()
    np.testing.assert_allclose(prediction, expected, rtol=1e-12)


@pytest.mark.parametrize(("num_classes", "sigma"), [(3, 1.0), (5, 1.5), (256, 4.0)])
def test_soft_ordinal_s_perfect_fit_predicts_every_target_exactly(num_classes, sigma):
    # p = q, the loss's minimum: before, its expectation (0.5, 1, 1.5 for 3 classes at sigma 1)
    # moved inward at the edges, where q is cut off, so a perfect model scored an accuracy of 1/3
    classes = torch.arange(num_classes, dtype=torch.float64)
    target = torch.arange(num_classes)
    log_q = F.log_softmax(-((classes[None, :] - target[:, None]) ** 2) / (2 * sigma**2), 1)
    loss_fn = SoftOrdinalLoss(num_classes=num_classes, sigma=sigma)
    assert loss_fn(log_q, target).item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(loss_fn.predict(log_q), target.double())


def test_huber_weighs_large_errors_as_l1_does():
    # before: Huber's own form on scaled values, about C - 1 times weaker than l1 (1/255 on VIMH)
    num_classes = 256
    target = torch.tensor([0])
    logits = torch.full((1, num_classes), -50.0, dtype=torch.float64)
    logits[0, 30] = 50.0  # confident, 30 classes off
    l1 = ordinal_loss(logits, target, num_classes=num_classes, distance="l1", alpha=0.0)
    huber = ordinal_loss(logits, target, num_classes=num_classes, distance="huber", alpha=0.0, delta=1.0)
    assert huber.item() == pytest.approx(l1.item() - 0.5 / 255, rel=1e-9)  # |d| - delta / 2, scaled


def numpy_soft_ordinal(z, y, *, num_classes, sigma):
    p = softmax(z)
    terms = []
    for i, t in enumerate(y):
        if t == -1:
            continue
        q = np.array([math.exp(-((j - t) ** 2) / (2 * sigma**2)) for j in range(num_classes)])
        q /= q.sum()
        terms.append(float(np.sum(q * np.log(q / p[i]))))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_soft_ordinal_against_formula(sigma):
    logits, target = make_inputs("soft_ordinal", n=9, dtype=torch.float64, ignore=[1])
    expected = numpy_soft_ordinal(logits.numpy(), target.tolist(), num_classes=C, sigma=sigma)
    value = soft_ordinal_loss(logits, target, num_classes=C, sigma=sigma)
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_soft_ordinal_minimised_at_log_q():
    sigma = 1.3
    target = torch.tensor([0, 2, 4])
    centres = torch.arange(C, dtype=torch.float64)
    log_q = torch.log_softmax(-((centres - target[:, None]) ** 2) / (2 * sigma**2), dim=1)
    logits = (log_q + 0.7).requires_grad_(True)  # softmax is shift-invariant
    loss = soft_ordinal_loss(logits, target, num_classes=C, sigma=sigma)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert logits.grad.abs().max() < 1e-12
    noise = 0.1 * torch.randn(3, C, dtype=torch.float64)
    perturbed = soft_ordinal_loss(logits.detach() + noise, target, num_classes=C, sigma=sigma)
    assert perturbed.item() > 0


def test_soft_ordinal_tiny_sigma_many_classes_is_finite():
    logits, target = make_inputs("soft_ordinal", n=4, num_classes=256)
    logits.requires_grad_(True)
    loss = soft_ordinal_loss(logits, target, num_classes=256, sigma=0.05)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # q is (numerically) one-hot: the loss is the cross-entropy
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))


def test_quantized_rejects_more_than_one_output():
    logits = torch.randn(4, C)
    with pytest.raises(ValueError, match=r"logits must have shape \[N, 1\], but got \[4, 5\]"):
        quantized_loss(logits, torch.tensor([0, 1, 2, 3]), num_classes=C)
    with pytest.raises(ValueError, match=r"logits must have shape \[N, 1\], but got \[4, 5\]"):
        QuantizedLoss(num_classes=C).predict(logits)


@pytest.mark.parametrize("distance", ["l1", "l2", "huber"])
def test_quantized_against_formula_and_unclamped(distance):
    num_classes = 11
    target = torch.tensor([10, 0, 5, 2])
    logits = torch.tensor([[1.5], [-0.5], [0.3], [0.2]], dtype=torch.float64, requires_grad=True)
    loss = quantized_loss(logits, target, num_classes=num_classes, distance=distance, delta=2.0)
    d = (logits.detach()[:, 0] - target / 10).abs()
    if distance == "l1":
        expected = d
    elif distance == "l2":
        expected = d**2
    else:
        expected = torch.where(d <= 0.2, 0.5 * d**2 / 0.2, d - 0.1)  # smooth L1 with beta 2 / 10
    torch.testing.assert_close(loss, expected.mean())
    loss.backward()
    # outside [0, 1] the gradient still pulls the output back into range
    assert logits.grad[0, 0] > 0 and logits.grad[1, 0] < 0
    prediction = QuantizedLoss(num_classes=num_classes).predict(logits.detach())
    torch.testing.assert_close(prediction, torch.tensor([10.0, 0.0, 3.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("name", ["ce", "weighted_ce", "focal"])
def test_classification_predict_is_argmax(name):
    logits, _ = make_inputs(name)
    prediction = build_loss(name, num_classes=C).predict(logits)
    assert torch.equal(prediction, logits.argmax(dim=1).float())


def test_focal_alpha_buffer_follows_dtype_and_matches_function():
    alpha = (0.1, 0.2, 0.3, 0.2, 0.2)
    module = FocalLoss(num_classes=C, alpha=[*alpha])
    assert module.alpha == alpha
    logits, target = make_inputs("focal", dtype=torch.float64)
    torch.testing.assert_close(
        module.double()(logits, target),
        focal_loss(logits, target, num_classes=C, alpha=alpha),
    )


@pytest.mark.parametrize("log_zero", [None, -2.0, -6.0])  # None: the default, -4
def test_symmetric_ce_with_beta_zero_is_scaled_ce_and_matches_the_loop_formula(log_zero):
    logits, target = make_inputs("symmetric_ce", n=12, ignore=[2])
    torch.testing.assert_close(symmetric_ce_loss(logits, target, num_classes=C, alpha=1.0, beta=0.0),
                               cross_entropy_loss(logits, target, num_classes=C), rtol=1e-6, atol=0)
    p = softmax(logits.double().numpy())
    a = -(log_zero if log_zero is not None else -4.0)
    terms = [0.3 * -math.log(p[i, y]) + 0.7 * a * (1 - p[i, y]) for i, y in enumerate(target.tolist()) if y != -1]
    given = {} if log_zero is None else {"log_zero": log_zero}
    value = symmetric_ce_loss(logits.double(), target, num_classes=C, alpha=0.3, beta=0.7, **given)
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)


def test_symmetric_ce_bounds_the_cost_of_a_confident_wrong_label():
    # RCE is at most -A: a mislabelled, confidently predicted sample cannot dominate as in CE.
    logits = torch.tensor([[20.0, 0, 0, 0, 0]])
    wrong = torch.tensor([3])
    rce = symmetric_ce_loss(logits, wrong, num_classes=C, alpha=0.0, beta=1.0)
    assert rce.item() == pytest.approx(4.0, rel=1e-6)
    assert cross_entropy_loss(logits, wrong, num_classes=C).item() > 19.0
