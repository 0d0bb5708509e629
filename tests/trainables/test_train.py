import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

import trainables.train as train_module
from trainables.data import DataSpec, MultiheadDataset, Split, describe_dataset, load_dataset
from trainables.losses import MultiHeadLoss, build_loss
from trainables.metric_names import LAST_EPOCH_KEY
from trainables.metrics import metric_names
from trainables.models import SimpleCNN
from trainables.settings import SettingError
from trainables.train import CHECKPOINT_NAME, TrainingDiverged, train

BASE = {
    "data.kind": "digits",
    "data.limit": 400,
    "data.val_fraction": 0.2,
    "model.kind": "mlp",
    "model.hidden": 32,
    "model.dropout": 0.1,
    "train.epochs": 4,
    "train.batch_size": 32,
    "train.lr": 0.01,
    "train.patience": 10,
    "train.device": "cpu",
    "train.threads": 1,
    "heads.digit.loss": "ce",
    "heads.thickness.loss": "ordinal",
    "heads.thickness.weight": 0.5,
    "heads.smoothness.loss": "quantized",
    "heads.smoothness.weight": 0.5,
    "objective.metric": "val/acc_mean",
    "energy_weight": 1e-3,  # exercises the energy hooks in every run, resumes included
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(config, checkpoint_dir=None, *, stop_after=None):
    reports = []

    def report(metrics):
        reports.append(metrics)
        if stop_after is not None and metrics["epoch"] == stop_after:
            raise KeyboardInterrupt

    final = train(config, report=report, checkpoint_dir=checkpoint_dir)
    return reports, final


def _without_timings(metrics):
    """What a seed determines: no timings, and no device/... facts (the first report of every call
    says what it trains on, so a resumed run says it again)."""
    timings = ("epoch_time_s", "samples_per_s")
    return {k: v for k, v in metrics.items() if k not in timings and not k.startswith("device/")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _run(BASE, tmp_path_factory.mktemp("full"))


def test_thirty_steps_lower_the_multihead_loss():
    # Learnable toy problem: both labels are functions of the mean brightness of the image.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=gen) * torch.rand(64, 1, 1, 1, generator=gen)
    level = x.mean(dim=(1, 2, 3))
    y = {"coarse": (level * 6).long().clamp(max=2), "fine": (level * 20).long().clamp(max=9)}
    torch.manual_seed(0)
    model = SimpleCNN(input_shape=(1, 8, 8), head_outputs={"coarse": 3, "fine": 1}, hidden=32, channels=(8, 16))
    criterion = MultiHeadLoss(
        losses={"coarse": build_loss("ce", num_classes=3), "fine": build_loss("quantized", num_classes=10)},
        weights={"coarse": 1.0, "fine": 1.0},
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        total, _ = criterion(model(x), y)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_train_improves_the_objective_and_reports_every_metric(uninterrupted):
    reports, final = uninterrupted
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    heads = describe_dataset(DataSpec(kind="digits"))
    for r in reports:
        assert set(metric_names({h: heads[h] for h in ("digit", "thickness", "smoothness")})) <= set(r)
        assert {"train/loss/total", "train/loss/digit", "train/loss/energy_share", "epoch_time_s", "samples_per_s",
                "best/val/acc_mean"} <= set(r)
        # what the trial trains on comes once, as strings (MLflow tags); every other value is a number
        numbers = {k: v for k, v in r.items() if not k.startswith("device/")}
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers.values())
    assert {k: v for k, v in reports[0].items() if k.startswith("device/")} == {
        "device/type": "cpu", "device/name": "cpu", "device/gpu_id": "", "device/amp": "off"}
    assert not any(k.startswith(("device/", "gpu/")) for r in reports[1:] for k in r)
    accs = [r["val/acc_mean"] for r in reports]
    assert accs[-1] > accs[0] + 0.05
    assert reports[-1]["train/loss/total"] < reports[0]["train/loss/total"]
    # Digits has 10 balanced classes: chance is 0.1.
    assert final["test/digit/acc"] > 0.5
    assert final["best/val/acc_mean"] == max(accs)
    assert final["val/acc_mean"] == max(accs)
    assert final["best_epoch"] == 1 + accs.index(max(accs))
    # each epoch says its best epoch so far, where best/<objective> is from (a stopped trial's too)
    assert [r["best/epoch"] for r in reports] == [1 + accs.index(max(accs[:i + 1])) for i in range(len(accs))]
    assert [r["best/val/acc_mean"] for r in reports] == [max(accs[:i + 1]) for i in range(len(accs))]


def test_same_seed_gives_identical_metrics(uninterrupted):
    reports, final = _run(BASE)
    assert final == uninterrupted[1]
    assert [_without_timings(r) for r in reports] == [_without_timings(r) for r in uninterrupted[0]]
    _, other_seed = _run(BASE | {"train.seed": 1, "train.epochs": 1})
    assert other_seed["val/acc_mean"] != uninterrupted[0][0]["val/acc_mean"]


def test_resume_from_a_mid_run_checkpoint_is_bit_identical(uninterrupted, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(BASE, tmp_path, stop_after=2)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["progress"]["epoch"] == 2
    # Disturb every RNG the trial uses: the checkpoint must restore them.
    torch.manual_seed(12345)
    reports, final = _run(BASE, tmp_path)
    assert [r["epoch"] for r in reports] == [3, 4]
    assert reports[0]["device/type"] == "cpu" and "device/type" not in reports[1]  # said again after a resume
    assert [_without_timings(r) for r in reports] == [_without_timings(r) for r in uninterrupted[0][2:]]
    assert final == uninterrupted[1]


def test_checkpoint_is_written_before_report(tmp_path):
    seen = []

    def report(metrics):
        saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
        seen.append((metrics["epoch"], saved["progress"]["epoch"]))

    train(BASE | {"train.epochs": 2}, report=report, checkpoint_dir=tmp_path)
    assert seen == [(1, 1), (2, 2)]
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


@pytest.mark.parametrize(("part", "spoil", "cause"), [
    ("model", lambda state: {k: v for k, v in state.items() if not k.endswith("bias")}, "RuntimeError"),
    ("model", lambda state: {k: torch.zeros(3) for k in state}, "RuntimeError"),
    ("config", lambda config: "not a mapping", "AttributeError"),
    ("progress", lambda progress: {**progress, "stray": 1}, "TypeError"),
])
def test_a_checkpoint_whose_parts_do_not_fit_the_trial_is_a_checkpoint_error(part, spoil, cause, tmp_path):
    # the same config may build another model (a data set regenerated with another image size):
    # torch's RuntimeError was retried by Ray as a failure that may pass, and `search train` showed
    # a traceback instead of its exit 2
    with pytest.raises(KeyboardInterrupt):
        _run(BASE | {"train.epochs": 2}, tmp_path, stop_after=1)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    torch.save({**saved, part: spoil(saved[part])}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(train_module.CheckpointError, match=f"a checkpoint losstune wrote, but got {cause} where"):
        _run(BASE | {"train.epochs": 2}, tmp_path)


def test_resume_refuses_a_different_config(tmp_path):
    _run(BASE | {"train.epochs": 1}, tmp_path)
    with pytest.raises(ValueError, match=r"train\.lr"):
        _run(BASE | {"train.epochs": 1, "train.lr": 0.02}, tmp_path)


def test_resume_takes_a_config_that_spells_out_a_default(tmp_path):
    # the same training, refused: the checkpoint compared the flat keys as given
    with pytest.raises(KeyboardInterrupt):
        _run(BASE, tmp_path, stop_after=1)
    with pytest.raises(ValueError, match=r"heads\.thickness\.ordinal\.alpha"):  # another value differs
        _run(BASE | {"heads.thickness.ordinal.alpha": 0.5}, tmp_path)
    reports, _ = _run(BASE | {"heads.thickness.ordinal.alpha": 0.1}, tmp_path)
    assert [r["epoch"] for r in reports] == [2, 3, 4]


def test_hook_states_are_restored_by_section_name_from_a_list_or_a_mapping():
    from trainables.hooks import load_states

    class Hook:
        def __init__(self):
            self.state = None

        def load_state_dict(self, state):
            self.state = state

    # a plugin's section registered since the checkpoint: its hook comes first and has no state
    hooks = {"plugin": Hook(), "weighting": Hook(), "auxiliary": Hook()}
    load_states(hooks, {"weighting": {"history": [1]}, "auxiliary": None})
    assert [h.state for h in hooks.values()] == [None, {"history": [1]}, None]
    older = {"weighting": Hook(), "auxiliary": Hook()}  # a list, as older checkpoints hold: in order
    load_states(older, [{"history": [2]}, None])
    assert older["weighting"].state == {"history": [2]}


def test_a_loss_parameter_it_refuses_is_named_by_its_key():
    # `alpha` alone: ordinal's or focal's, of which head?
    with pytest.raises(SettingError) as error:
        _run(BASE | {"heads.thickness.ordinal.alpha": -1.0})
    assert error.value.key == "heads.thickness.ordinal.alpha" and error.value.value == -1.0


def test_a_static_model_refuses_a_time_step_it_would_ignore():
    with pytest.raises(SettingError, match=r"temporal\.dt must be 1\.0 with model\.kind mlp"):
        _run(BASE | {"temporal.dt": 5.0})


def test_early_stopping_after_patience():
    # a learning rate of 1e-12 moves no prediction across a class boundary: the accuracy never
    # improves after epoch 1
    config = BASE | {"train.epochs": 20, "train.patience": 2, "train.lr": 1e-12, "objective.metric": "val/acc_mean"}
    reports, final = _run(config)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert final["epoch"] == 3 and final["best_epoch"] == 1
    # each epoch says whether it is the last: a scheduler lets the trial finish there
    assert [r[LAST_EPOCH_KEY] for r in reports] == [0.0, 0.0, 1.0]
    reports, _ = _run(BASE | {"train.epochs": 2})
    assert [r[LAST_EPOCH_KEY] for r in reports] == [0.0, 1.0]


def test_nan_loss_raises_naming_epoch_and_step(monkeypatch):
    train_size = len(load_dataset(DataSpec(kind="digits", limit=400, val_fraction=0.2)).train)
    steps_per_epoch = math.ceil(train_size / BASE["train.batch_size"])

    class PoisonedLoss(MultiHeadLoss):
        calls = 0

        def forward(self, outputs, targets):
            total, breakdown = super().forward(outputs, targets)
            PoisonedLoss.calls += 1
            if PoisonedLoss.calls == steps_per_epoch + 5:
                total = total * float("nan")
                breakdown["loss/total"] = total.detach()
            return total, breakdown

    monkeypatch.setattr(train_module, "MultiHeadLoss", PoisonedLoss)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 5"):
        _run(BASE)


def test_the_epochs_training_loss_weights_each_step_by_its_batch_size(monkeypatch):
    train_size = len(load_dataset(DataSpec(kind="digits", limit=400, val_fraction=0.2)).train)
    batch_size = next(b for b in range(train_size // 3, 1, -1) if train_size % b <= b // 2)  # a small last batch
    steps = []

    class RecordingLoss(MultiHeadLoss):
        def forward(self, outputs, targets):
            total, breakdown = super().forward(outputs, targets)
            steps.append((len(next(iter(targets.values()))), float(breakdown["loss/total"])))
            return total, breakdown

    monkeypatch.setattr(train_module, "MultiHeadLoss", RecordingLoss)
    reports, _ = _run({**BASE, "train.epochs": 1, "train.batch_size": batch_size})

    sizes = [size for size, _ in steps]
    assert sum(sizes) == train_size and sizes[-1] < batch_size
    sample_mean = sum(size * loss for size, loss in steps) / train_size
    step_mean = sum(loss for _, loss in steps) / len(steps)
    assert abs(sample_mean - step_mean) > 1e-4  # the two means differ here
    assert reports[0]["train/loss/total"] == pytest.approx(sample_mean, rel=1e-6)


def test_heads_named_like_the_attributes_of_a_module_dict_train():
    # nn.ModuleDict refused them ("attribute 'type' already exists"): a VIMH data set with a
    # parameter `type` passed validation and failed every trial
    data = load_dataset(DataSpec(kind="digits", limit=400, val_fraction=0.2))
    names = {"digit": "type", "thickness": "training", "smoothness": "train"}

    def renamed(split):
        return Split(images=split.images, labels={names[h]: v for h, v in split.labels.items()})

    data = MultiheadDataset(train=renamed(data.train), val=renamed(data.val), test=renamed(data.test),
                            heads={names[h]: dataclasses.replace(info, name=names[h]) for h, info in data.heads.items()},
                            input_shape=data.input_shape)
    config = {}
    for key, value in {**BASE, "train.epochs": 2}.items():
        parts = key.split(".")
        if parts[0] == "heads":
            parts[1] = names[parts[1]]
        config[".".join(parts)] = value
    reports = []
    final = train(config, report=reports.append, data=data, checkpoint_dir=None)
    assert {"val/type/acc", "val/training/acc", "val/train/acc", "train/loss/type"} <= set(reports[-1])
    assert final["test/type/acc"] > 0.3  # it learns (chance: 0.1)


def test_energy_warning_when_weighted_energy_exceeds_task_loss():
    with pytest.warns(RuntimeWarning, match="weighted energy"):
        reports, _ = _run(BASE | {"train.epochs": 1, "energy_weight": 1e4})
    assert reports[0]["train/loss/energy_share"] > 0.5
    assert reports[0]["val/energy"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(BASE | {"train.epochs": 1, "energy_weight": 1e-6})


def test_objective_must_be_a_reported_metric():
    with pytest.raises(ValueError, match="objective.metric must be one of"):
        _run(BASE | {"objective.metric": "val/loss"})


class _Loaded(Exception):
    """Stops train() right after it loaded its data."""


def _loaded_dataset(monkeypatch, config):
    loaded = []

    def load(spec):
        loaded.append(load_dataset(spec))
        raise _Loaded

    monkeypatch.setattr(train_module, "load_dataset", load)
    with pytest.raises(_Loaded):
        _run(config)
    return loaded[0]


def test_validation_split_follows_data_seed_not_train_seed(monkeypatch):
    # digits with measured labels: data.seed picks the validation samples and the label cuts;
    # trials that differ in train.seed must still be scored on the same validation set.
    base = _loaded_dataset(monkeypatch, BASE)
    other_train_seed = _loaded_dataset(monkeypatch, BASE | {"train.seed": 1})
    other_data_seed = _loaded_dataset(monkeypatch, BASE | {"data.seed": 1})
    assert np.array_equal(base.val.images, other_train_seed.val.images)
    assert all(np.array_equal(base.val.labels[h], other_train_seed.val.labels[h]) for h in base.val.labels)
    assert not np.array_equal(base.val.images, other_data_seed.val.images)


def test_labels_outside_the_head_classes_are_refused_once(monkeypatch):
    data = load_dataset(DataSpec(kind="digits", limit=400, val_fraction=0.2))
    data.test.labels["thickness"][7] = 5  # thickness has 5 classes: 0..4
    monkeypatch.setattr(train_module, "load_dataset", lambda spec: data)
    with pytest.raises(ValueError, match=r"test labels of head 'thickness' must lie in \[0, 4\], but got \[5\]"):
        _run(BASE)


def test_no_forward_hooks_are_left_on_the_model(monkeypatch):
    # The energy term and the evaluation probe hook every layer; a hook left behind would keep
    # recording (and holding activations) in whatever uses the model next.
    models = []
    real_build_model = train_module.build_model

    def build(*args, **kwargs):
        models.append(real_build_model(*args, **kwargs))
        return models[-1]

    def hooks(model):
        return sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in model.modules())

    monkeypatch.setattr(train_module, "build_model", build)
    _run(BASE | {"train.epochs": 1})
    assert hooks(models[-1]) == 0

    class PoisonedLoss(MultiHeadLoss):
        def forward(self, outputs, targets):
            total, breakdown = super().forward(outputs, targets)
            breakdown["loss/total"] = breakdown["loss/total"] * float("nan")
            return total * float("nan"), breakdown

    monkeypatch.setattr(train_module, "MultiHeadLoss", PoisonedLoss)
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1"):
        _run(BASE | {"train.epochs": 1})
    assert len(models) == 2 and hooks(models[-1]) == 0


def test_a_subset_of_the_data_set_heads_trains_and_reports_only_those():
    config = {k: v for k, v in BASE.items() if not k.startswith(("heads.thickness", "heads.smoothness"))}
    config["train.epochs"] = 1
    reports, final = _run(config)
    assert "val/digit/acc" in reports[0]
    assert not any("thickness" in key or "smoothness" in key for key in [*reports[0], *final])


def test_key_order_of_the_config_does_not_change_the_metrics(uninterrupted):
    _, final = uninterrupted
    _, reordered = _run(dict(reversed(list(BASE.items()))))
    assert _without_timings(reordered) == _without_timings(final)


def test_evaluation_batches_follow_the_training_batch_and_do_not_change_the_metrics(monkeypatch):
    import trainables._evaluate as evaluate_module

    sizes = []
    batches = evaluate_module.iterate_batches

    def recording(split, *, batch_size, **kwargs):
        sizes.append(batch_size)
        return batches(split, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(evaluate_module, "iterate_batches", recording)
    config = {**BASE, "train.epochs": 1, "energy_weight": 0.0}
    small = train({**config, "train.batch_size": 4}, report=lambda m: None)
    assert set(sizes) == {4 * evaluate_module.TRAIN_BATCHES_PER_EVAL_BATCH}
    # the same trained weights evaluated in other batch sizes: the same metrics
    monkeypatch.setattr(evaluate_module, "TRAIN_BATCHES_PER_EVAL_BATCH", 100)
    large = train({**config, "train.batch_size": 4}, report=lambda m: None)
    assert 400 in sizes
    for key, value in small.items():
        if key.startswith(("test/", "val/")):
            assert large[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_training_split_scaled_once_trains_as_one_scaled_per_batch(monkeypatch):
    dtypes = []
    batches = train_module.iterate_batches

    def recording(split, **kwargs):
        dtypes.append(split.images.dtype)
        return batches(split, **kwargs)

    monkeypatch.setattr(train_module, "iterate_batches", recording)
    config = {**BASE, "train.epochs": 2}
    once = _run(config)
    assert dtypes == [torch.float32] * 2  # digits' training split is far below the budget
    monkeypatch.setattr(train_module, "SCALED_TRAIN_SPLIT_BYTES", 0)
    per_batch = _run(config)
    assert dtypes[2:] == [torch.uint8] * 2
    assert [_without_timings(r) for r in once[0]] == [_without_timings(r) for r in per_batch[0]]
    assert once[1] == per_batch[1]


def test_clearing_the_gradients_reaches_every_parameter_group():
    first, second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(first.parameters())
    optimizer.add_param_group({"params": list(second.parameters())})  # as a weighting strategy adds its own
    second(first(torch.ones(1, 2))).sum().backward()
    assert all(p.grad is not None for p in [*first.parameters(), *second.parameters()])
    train_module._clear_grads(optimizer)
    assert all(p.grad is None for p in [*first.parameters(), *second.parameters()])


def test_train_leaves_torchs_thread_count_as_it_found_it():
    # train.threads: null means torch's own count, also in a process that trained before
    before = torch.get_num_threads()
    seen = []
    train({**BASE, "train.epochs": 1, "train.threads": before + 1},
          report=lambda metrics: seen.append(torch.get_num_threads()))
    assert seen == [before + 1] and torch.get_num_threads() == before
    train({**BASE, "train.epochs": 1, "train.threads": None}, report=lambda metrics: seen.append(torch.get_num_threads()))
    assert seen[-1] == before and torch.get_num_threads() == before
