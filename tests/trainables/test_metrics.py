import math

import pytest
import torch

from trainables.data import HeadInfo
from trainables.metrics import aggregate, head_metrics, metric_names, step_metrics


def test_head_metrics_by_hand():
    # C = 5 bins over units 0..10 (2 units per bin), k = 2; the last target is ignored.
    pred = torch.tensor([0.4, 1.6, 2.0, 3.7, 9.0, -3.0])
    target = torch.tensor([0, 2, 4, 1, 4, -1])
    got = head_metrics(pred, target, num_classes=5, ordinal=True, unit_range=(0.0, 10.0), k=2)
    # clamped p = [0.4, 1.6, 2, 3.7, 4]; rounded = [0, 2, 2, 4, 4]; |r - y| = [0, 0, 2, 3, 0]
    # |p - y| = [0.4, 0.4, 2.0, 2.7, 0.0] -> mae = 5.5 / 5 = 1.1
    expected = {"acc": 0.6, "mae": 1.1, "mae_units": 2.2, "within1": 0.6, "within2": 0.8, "mae_norm": 0.275}
    assert list(got) == list(expected)
    assert got == pytest.approx(expected)


def test_continuous_prediction_near_target_counts_as_correct():
    # The seed's ordinal "accuracy" compared float expectations for exact equality (~0 %).
    got = head_metrics(torch.tensor([2.999, 0.001, 6.51]), torch.tensor([3, 0, 7]), num_classes=10, ordinal=True, unit_range=None)
    assert got["acc"] == 1.0
    assert "mae_units" not in got
    assert got["within5"] == 1.0
    assert got["mae"] == pytest.approx((0.001 + 0.001 + 0.49) / 3)


def test_all_targets_ignored_gives_nan():
    got = head_metrics(torch.tensor([1.0, 2.0]), torch.tensor([-1, -1]), num_classes=7, ordinal=True, unit_range=(0.0, 1.0))
    assert set(got) == {"acc", "mae", "mae_units", "within1", "within5", "mae_norm"}
    assert all(math.isnan(v) for v in got.values())


def test_custom_ignore_index():
    got = head_metrics(torch.tensor([1.0, 0.0]), torch.tensor([1, 255]), num_classes=3, ordinal=True, unit_range=None, ignore_index=255)
    assert got["acc"] == 1.0 and got["mae"] == 0.0


def test_a_uint8_target_of_class_255_counts_as_a_target():
    # VIMH's levels are uint8: -1 compared with them wrapped to 255, and class 255 was ignored
    pred, target = torch.tensor([0.0, 254.0, 100.0]), torch.tensor([0, 254, 255])
    as_bytes = head_metrics(pred, target.to(torch.uint8), num_classes=256, ordinal=True, unit_range=None)
    assert as_bytes == head_metrics(pred, target, num_classes=256, ordinal=True, unit_range=None)
    assert as_bytes["acc"] == pytest.approx(2 / 3)
    steps = step_metrics(pred[:, None], target.to(torch.uint8), supervised=[True], dt=1.0, num_classes=256, ordinal=True,
                         unit_range=None)
    assert steps["acc"] == pytest.approx(2 / 3) and steps["reaction"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="target must hold integer class indices, but got dtype torch.float32"):
        head_metrics(pred, target.float(), num_classes=256, ordinal=True, unit_range=None)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="equal length"):
        head_metrics(torch.zeros(3), torch.zeros(2, dtype=torch.long), num_classes=3, ordinal=True, unit_range=None)


@pytest.mark.parametrize("k", [1, 0, True, 2.5])
def test_a_k_that_would_repeat_or_lose_a_metric_is_refused(k):
    # k = 1 named within1 twice, and head_metrics returned 4 metrics instead of 5
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        head_metrics(torch.zeros(2), torch.zeros(2, dtype=torch.long), num_classes=3, ordinal=True, unit_range=None, k=k)


def test_aggregate_means_over_heads():
    got = aggregate({"a": {"acc": 0.5, "mae_norm": 0.2, "mae": 3.0}, "b": {"acc": 1.0, "mae_norm": 0.0, "mae": 0.0}})
    assert got == pytest.approx({"acc_mean": 0.75, "mae_norm_mean": 0.1})


def test_within_j_is_reported_only_where_an_error_can_exceed_j_classes():
    # before, within5 of a 5-level head (errors of at most 4) was 1 whatever the model did
    pred, target = torch.tensor([0.0, 4.0, 2.0]), torch.tensor([4, 0, 2])
    assert "within5" not in head_metrics(pred, target, num_classes=5, ordinal=True, unit_range=None)
    assert "within1" not in head_metrics(pred[:1].clamp(max=1), target[:1].clamp(max=1), num_classes=2, ordinal=True,
                                         unit_range=None)
    seven = head_metrics(torch.tensor([0.0, 6.0]), torch.tensor([6, 6]), num_classes=7, ordinal=True, unit_range=None)
    assert seven["within5"] == 0.5 and seven["within1"] == 0.5


def test_a_categorical_head_reports_accuracy_and_no_distance_between_classes():
    # Before, a digit predicted 8 for a 9 scored mae 1 and within1, as if 8 were nearer 9 than 2 is;
    # and its mae_norm entered mae_norm_mean beside the ordinal heads'.
    pred, target = torch.tensor([8.0, 2.0, 3.0]), torch.tensor([9, 9, 3])
    digit = head_metrics(pred, target, num_classes=10, ordinal=False, unit_range=None)
    assert digit == pytest.approx({"acc": 1 / 3})
    ordinal = head_metrics(pred, target, num_classes=10, ordinal=True, unit_range=None)
    assert ordinal["acc"] == digit["acc"] and ordinal["mae"] == pytest.approx(8 / 3)


def test_the_means_over_heads_count_only_the_heads_that_report_the_metric():
    both = aggregate({"thickness": {"acc": 0.5, "mae_norm": 0.2}, "digit": {"acc": 1.0}})
    assert both == pytest.approx({"acc_mean": 0.75, "mae_norm_mean": 0.2})
    assert aggregate({"class": {"acc": 0.4}, "vehicle_or_animal": {"acc": 0.8}}) == pytest.approx({"acc_mean": 0.6})


def test_a_data_set_without_an_ordinal_head_offers_no_mae_norm_mean_objective():
    heads = {name: HeadInfo(name=name, num_classes=c, ordinal=False, param_name=name)
             for name, c in (("class", 10), ("vehicle_or_animal", 2))}
    assert metric_names(heads) == ["val/class/acc", "val/vehicle_or_animal/acc", "val/acc_mean", "val/energy",
                                   "val/energy_l1"]


def test_metric_names_match_head_metrics_keys():
    heads = {
        "pitch": HeadInfo(name="pitch", num_classes=256, ordinal=True, param_name="note", unit_range=(40.0, 80.0)),
        "digit": HeadInfo(name="digit", num_classes=10, ordinal=False, param_name="digit"),
    }
    names = metric_names(heads, split="test")
    pitch = head_metrics(torch.zeros(2), torch.zeros(2, dtype=torch.long), num_classes=256, ordinal=True, unit_range=(40.0, 80.0))
    digit = head_metrics(torch.zeros(2), torch.zeros(2, dtype=torch.long), num_classes=10, ordinal=False, unit_range=None)
    assert names == (
        [f"test/pitch/{k}" for k in pitch]
        + [f"test/digit/{k}" for k in digit]
        + ["test/acc_mean", "test/mae_norm_mean", "test/energy", "test/energy_l1"]
    )
    assert metric_names(heads)[0] == "val/pitch/acc"
