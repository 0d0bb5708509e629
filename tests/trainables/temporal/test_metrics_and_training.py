"""Temporal metrics against hand-computed values, energy alarms, and short real training runs."""

import math

import pytest
import torch

from trainables.energy_alarm import ALARM_PREFIX, energy_alarms
from trainables.losses import IGNORE_INDEX
from trainables.metrics import metric_names, step_metrics
from trainables.temporal import last_onset
from trainables.train import train


def test_step_metrics_at_the_last_supervised_step_over_the_steps_and_reaction():
    # 3 samples, 5 steps, supervised steps 1, 2, 4 (step 3 masked, step 0 in the reaction window).
    supervised = [False, True, True, False, True]
    target = torch.tensor([2, 0, 1])
    pred = torch.tensor([
        [0.0, 2.0, 2.0, 9.0, 2.0],   # right at every supervised step, wrong at step 3: settles at 4
        [0.0, 3.0, 0.0, 0.0, 0.2],   # wrong at 1, then right: settles at 2
        [1.0, 1.0, 1.0, 1.0, 2.0],   # wrong at the last step: never settles, T = 5
    ])
    metrics = step_metrics(pred, target, supervised=supervised, dt=2.0, num_classes=4, ordinal=True, unit_range=None)
    assert metrics["acc"] == pytest.approx(2 / 3)                       # step 4: right, right, wrong
    assert metrics["mae"] == pytest.approx((0 + 0.2 + 1) / 3)
    assert metrics["acc_steps"] == pytest.approx(7 / 9)                  # over steps 1, 2, 4
    assert metrics["mae_norm_steps"] == pytest.approx((0 + 0 + 0 + 3 + 0 + 0.2 + 0 + 0 + 1) / 9 / 3)
    assert metrics["reaction"] == pytest.approx(2.0 * (4 + 2 + 5) / 3)  # in time units: steps x dt


@pytest.mark.parametrize(("pattern", "expected"), [("1111", 2.0), ("0011", 0.0), ("1011", 0.0), ("1100", 2.0)])
def test_the_reaction_is_timed_from_the_onset_of_the_last_stimulus(pattern, expected):
    # one sample right from step 2 on, dt 1; before: timed from step 0, so a pattern with a null
    # lead-in (0011) scored its length whatever the model did
    presented = [c == "1" for c in pattern]
    metrics = step_metrics(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1]), supervised=[True] * 4, dt=1.0,
                           num_classes=2, ordinal=True, unit_range=None, onset=last_onset(presented))
    assert metrics["reaction"] == pytest.approx(expected)
    never = step_metrics(torch.zeros(1, 4), torch.tensor([1]), supervised=[True] * 4, dt=1.0, num_classes=2, ordinal=True,
                         unit_range=None, onset=last_onset(presented))
    assert never["reaction"] == pytest.approx(4 - last_onset(presented))  # wrong at the end: T - onset


def test_step_metrics_leave_out_ignored_targets_in_the_reaction_too():
    supervised = [False, True, True]
    pred = torch.tensor([[0.0, 1.0, 1.0], [2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    metrics = step_metrics(pred, torch.tensor([1, 2, IGNORE_INDEX]), supervised=supervised, dt=1.0, num_classes=3, ordinal=True,
                           unit_range=None)  # fmt: skip
    alone = step_metrics(pred[:2], torch.tensor([1, 2]), supervised=supervised, dt=1.0, num_classes=3, ordinal=True, unit_range=None)
    assert metrics == alone and metrics["reaction"] == pytest.approx((1 + 0) / 2)
    none = step_metrics(pred, torch.full((3,), IGNORE_INDEX), supervised=supervised, dt=1.0, num_classes=3, ordinal=True, unit_range=None)
    assert math.isnan(none["reaction"]) and math.isnan(none["acc"])


def test_step_metrics_refuse_a_mask_of_another_length():
    with pytest.raises(ValueError, match="pred must be"):
        step_metrics(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), supervised=[True, True], dt=1.0,
                     num_classes=3, ordinal=True, unit_range=None)


def test_temporal_trials_add_the_step_metrics_to_the_objectives():
    from trainables.data import HeadInfo

    heads = {"digit": HeadInfo(name="digit", num_classes=10, ordinal=False, param_name="digit"),
             "thickness": HeadInfo(name="thickness", num_classes=5, ordinal=True, param_name="thickness")}
    static, temporal = metric_names(heads), metric_names(heads, temporal=True)
    # mae_norm_steps: of the ordinal head only, as its mae_norm
    assert set(temporal) - set(static) == {
        "val/digit/acc_steps", "val/digit/reaction",
        "val/thickness/acc_steps", "val/thickness/mae_norm_steps", "val/thickness/reaction",
        "val/acc_steps_mean", "val/mae_norm_steps_mean", "val/reaction_mean",
    }
    categorical = step_metrics(torch.tensor([[1.0, 2.0]]), torch.tensor([2]), supervised=[True, True], dt=1.0,
                               num_classes=10, ordinal=False, unit_range=None)
    assert set(categorical) == {"acc", "acc_steps", "reaction"}


@pytest.mark.parametrize(
    ("energies", "weighted", "task", "expected"),
    [
        ([1.0] * 9 + [2.0, 2.1, 2.1, 2.1], 0.1, 1.0, set()),               # rises, then plateaus
        ([1.0] * 9 + [2.0, 2.1, 2.3, 2.5], 0.1, 1.0, {"energy_growing"}),  # keeps growing after epoch 10
        ([1.0] * 9 + [2.0, 2.1, 2.3], 0.1, 1.0, set()),                    # too early to tell
        ([1.0] * 9 + [2.0, 2.1, 2.2, 2.201], 0.1, 1.0, set()),             # last rise below 1 %
        ([0.3] * 9 + [0.4, 0.5, 0.6, 0.7], 0.1, 1.0, set()),               # growing, at most 1.0 (seed 001)
        # seed 001's healthy curve (0.05 at epoch 1, 0.12 at 10, 0.15 at 20), and one rising from
        # 0.39 past 1.0 by epoch 5 that levels off: both raised it at epoch 5 before
        ([0.05 + 0.0078 * e for e in range(10)] + [0.123, 0.126, 0.129, 0.132], 0.1, 1.0, set()),
        ([0.39, 0.967, 1.218, 1.413, 1.55, 1.65, 1.72, 1.77, 1.80, 1.82, 1.835, 1.845, 1.85], 0.1, 1.0, set()),
        ([1.0], 1.5, 1.0, {"energy_exceeds_task"}),
    ],
)
def test_energy_alarms(energies, weighted, task, expected):
    assert set(energy_alarms(energies=energies, weighted=weighted, task=task)) == expected


def _flat(**overrides):
    return {
        "data.kind": "digits", "data.limit": 600, "model.kind": "recurrent_cnn",
        "model.recurrent_cnn.hidden": 16, "model.recurrent_cnn.dropout": 0.0,
        "temporal.n_timesteps": 2, "heads.digit.loss": "ce", "train.epochs": 3, "train.batch_size": 32,
        "train.lr": 5e-3, "train.threads": 1, "train.device": "cpu", "objective.metric": "val/acc_mean",
    } | overrides


def test_a_larger_energy_weight_lowers_the_measured_energy(one_thread):
    free = train(_flat(energy_weight=0.0), report=lambda m: None)
    penalised = train(_flat(energy_weight=1.0), report=lambda m: None)
    assert penalised["val/energy"] < 0.6 * free["val/energy"]
    assert penalised["test/energy"] < 0.6 * free["test/energy"]


def test_a_temporal_trial_reports_step_metrics_and_raises_an_alarm_once(one_thread):
    reports = []
    with pytest.warns(RuntimeWarning, match="exceeds the task loss"):
        final = train(_flat(**{"energy_weight": 50.0, "temporal.n_timesteps": 4, "temporal.pattern": "1011",
                               "temporal.reaction_time": 1.0}), report=reports.append)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    alarms = [[k for k in r if k.startswith(ALARM_PREFIX)] for r in reports]
    assert alarms == [[f"{ALARM_PREFIX}energy_exceeds_task"], [], []]
    # supervised steps of 1011 with one reaction step: 3 only
    # timed from the last chunk's onset (step 2 of 1011, dt 1): at most the 2 steps from there on
    assert 0 <= final["val/reaction_mean"] <= 2 and math.isfinite(final["test/acc_steps_mean"])
    assert final["val/digit/acc_steps"] == final["val/digit/acc"]  # one supervised step: the same


def test_a_static_model_refuses_more_than_one_step(one_thread):
    flat = {k: v for k, v in _flat(**{"model.kind": "mlp"}).items() if not k.startswith("model.recurrent_cnn")}
    with pytest.raises(ValueError, match="temporal.n_timesteps must be 1 with model.kind mlp"):
        train(flat, report=lambda m: None)


def test_a_temporal_trial_resumes_bit_identically(one_thread, tmp_path, resume_after):
    flat = _flat(**{"energy_weight": 0.1, "temporal.pattern": "10", "temporal.n_timesteps": 4})
    whole = train(flat, report=lambda m: None)
    _, final = resume_after(flat, tmp_path, 2)
    assert final == whole


def test_the_l1_energy_is_reported_beside_the_trials_own_norm(one_thread):
    # energy.p may be searched: energy_l1 compares trials whatever norm their energy term uses.
    l2 = train(_flat(**{"energy.p": 2, "energy_weight": 0.1, "train.epochs": 1}), report=lambda m: None)
    l1 = train(_flat(**{"energy.p": 1, "energy_weight": 0.1, "train.epochs": 1}), report=lambda m: None)
    assert l1["val/energy_l1"] == l1["val/energy"]
    assert l2["val/energy_l1"] != l2["val/energy"] and l2["val/energy_l1"] > 0
    # the L1 norm of a per-sample activation is at least its L2 norm
    assert l2["val/energy_l1"] >= l2["val/energy"]
