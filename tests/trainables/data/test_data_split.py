import dataclasses

import numpy as np
import pytest

from trainables.data import DataError, DataSpec, stratified_choice
from trainables.data._split import plan_splits


@pytest.mark.parametrize("field,value", [("val_fraction", 0.0), ("val_fraction", 1.0), ("limit", 1),
                                         ("labels", "fixed"), ("seed", -1), ("kind", "")])
def test_spec_rejects_bad_values(field, value):
    with pytest.raises(DataError, match=f"data.{field} must .*but got"):
        DataSpec(**{field: value})


def test_stratified_choice_keeps_class_proportions_exactly():
    strata = np.repeat([0, 1, 2], [50, 30, 20])
    picked = stratified_choice(100, count=10, strata=strata, rng=np.random.default_rng(0))
    assert np.bincount(strata[picked]).tolist() == [5, 3, 2]
    assert len(np.unique(picked)) == 10 and (np.diff(picked) > 0).all()


def test_stratified_choice_largest_remainders_get_the_spare_picks():
    strata = np.repeat([0, 1, 2], [46, 34, 20])  # quotas 4.6, 3.4, 2.0: the one spare goes to class 0
    for seed in range(5):
        picked = stratified_choice(100, count=10, strata=strata, rng=np.random.default_rng(seed))
        assert np.bincount(strata[picked]).tolist() == [5, 3, 2]
    tied = np.repeat([0, 1, 2], [45, 35, 20])  # quotas 4.5, 3.5, 2.0: a random one of 0 and 1 gets it
    outcomes = {tuple(np.bincount(tied[stratified_choice(100, count=10, strata=tied,
                                                             rng=np.random.default_rng(seed))]))
                for seed in range(20)}
    assert outcomes == {(5, 3, 2), (4, 4, 2)}


def test_stratified_choice_is_seeded_and_falls_back_to_random_with_many_classes():
    strata = np.arange(50)  # 50 classes, 10 picks: proportions cannot be kept
    a = stratified_choice(50, count=10, strata=strata, rng=np.random.default_rng(1))
    b = stratified_choice(50, count=10, strata=strata, rng=np.random.default_rng(1))
    c = stratified_choice(50, count=10, strata=strata, rng=np.random.default_rng(2))
    assert len(a) == 10 and (a == b).all() and not (a == c).all()


def test_plan_splits_sizes_disjoint_and_stratified():
    strata = np.repeat(np.arange(4), [400, 300, 200, 100])
    plan = plan_splits(pool_strata=strata, test_strata=None, pool_size=1000, test_size=300,
                       spec=DataSpec(val_fraction=0.1))
    assert len(plan.val) == 100 and len(plan.train) == 900
    assert not set(plan.train) & set(plan.val)
    assert sorted([*plan.train, *plan.val]) == list(range(1000))
    assert (plan.test == np.arange(300)).all()  # never touched without a limit
    assert np.bincount(strata[plan.val]).tolist() == [40, 30, 20, 10]


def test_plan_splits_limit_subsets_pool_and_test_with_seed():
    strata = np.repeat(np.arange(2), [600, 400])
    spec = DataSpec(val_fraction=0.25, limit=200, seed=5)
    plan = plan_splits(pool_strata=strata, test_strata=None, pool_size=1000, test_size=500, spec=spec)
    assert len(plan.train) + len(plan.val) == 200 and len(plan.val) == 50 and len(plan.test) == 200
    assert np.bincount(strata[np.concatenate([plan.train, plan.val])]).tolist() == [120, 80]
    again = plan_splits(pool_strata=strata, test_strata=None, pool_size=1000, test_size=500, spec=spec)
    assert (again.train == plan.train).all() and (again.test == plan.test).all()
    other = plan_splits(pool_strata=strata, test_strata=None, pool_size=1000, test_size=500,
                        spec=DataSpec(val_fraction=0.25, limit=200, seed=6))
    assert not np.array_equal(other.train, plan.train)


def test_plan_splits_refuses_a_pool_too_small_for_validation():
    with pytest.raises(DataError, match="training pool must keep >= 1 sample"):
        plan_splits(pool_strata=None, test_strata=None, pool_size=1, test_size=3, spec=DataSpec())


def test_a_data_set_with_an_empty_split_is_refused_when_it_loads(monkeypatch):
    # A plugin's data set kind may give an empty split: refused before a trial trains on it.
    from trainables.data import load_dataset
    from trainables.data._registry import DatasetKind
    from trainables.data._types import DATASETS

    digits = DATASETS["digits"]

    def load(spec):
        data = digits.load(spec)
        return dataclasses.replace(data, test=dataclasses.replace(data.test, images=data.test.images[:0],
                                                                  labels={k: v[:0] for k, v in data.test.labels.items()}))

    monkeypatch.setitem(DATASETS, "digits", DatasetKind(load=load, describe=digits.describe))
    with pytest.raises(DataError, match=r"every split \(train, val, test\) must hold at least one sample, but got none "
                                        r"in test$"):
        load_dataset(DataSpec(kind="digits", limit=100))
