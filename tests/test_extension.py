"""Extending losstune from this file alone, with no change to search/: a new loss, a new model kind
with a parameter of its own, and a new search dimension (a section whose switch has two options,
each with its own parameters, acting on training through the train loop's hooks). A space that
searches them validates (its errors name YAML paths), trains with ``train()``, and their flat
values reach MLflow's params and the columns of ``search report``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Annotated, Any

import pytest
import torch
from mlflow import MlflowClient
from torch import Tensor, nn

from search.report import load_search, open_store, trial_table
from search.space import SpaceError, load_space
from search.tracking import SearchTracker, TrackingSettings
from trainables import config as trial_schema
from trainables.config import TrialConfig, check_section
from trainables.data import DATASETS
from trainables.losses import LOSSES, HeadLoss
from trainables.models import MODELS
from trainables.plugins import Registry
from trainables.settings import Rule
from trainables.switches import Switch
from trainables.train import train


class ExpectedCostLoss(HeadLoss):
    """Expected distance of the prediction: mean over valid samples of sum_j p_j |j - y|^power,
    p = softmax(logits)."""

    def __init__(
        self,
        *,
        num_classes: int,
        ignore_index: int = -1,
        power: Annotated[float, Rule(minimum=0.5, maximum=4.0, searchable=True)] = 1.0,
    ) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)
        self.power = power

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        classes = torch.arange(logits.shape[1], device=logits.device)
        cost = (classes[None, :] - target[:, None]).abs().to(logits.dtype) ** self.power
        per_sample = (torch.softmax(logits, dim=1) * cost).sum(dim=1)
        return (per_sample * valid).sum() / valid.sum().clamp(min=1)


class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``hidden`` units, then one linear head per task."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        head_outputs: Mapping[str, int],
        hidden: Annotated[int, Rule(minimum=1, maximum=1024, searchable=True)] = 32,
        depth: Annotated[int, Rule(minimum=1, maximum=4, searchable=True)] = 2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.backbone = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, n) for name, n in head_outputs.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.backbone(x)
        return {name: head(features) for name, head in self.heads.items()}


class StepDecay:
    """Multiplies the learning rate by ``gamma`` every ``every`` epochs."""

    def __init__(self, *, every: Annotated[int, Rule(minimum=1, searchable=True)] = 1,
                 gamma: Annotated[float, Rule(minimum=0.0, maximum=1.0, min_open=True, searchable=True)] = 0.5) -> None:
        self.every, self.gamma = every, gamma

    def on_start(self, *, optimizer: torch.optim.Optimizer, **context: Any) -> None:
        self.optimizer = optimizer

    def on_epoch_end(self, *, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
        if epoch % self.every == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.gamma
        return {"lr": self.optimizer.param_groups[0]["lr"]}


class WarmRestart(StepDecay):
    """Sets the learning rate back to ``peak`` times its start every ``period`` epochs, decaying
    between; counts its restarts (state a checkpoint keeps)."""

    def __init__(self, *, period: Annotated[int, Rule(minimum=1, searchable=True)] = 2,
                 peak: Annotated[float, Rule(minimum=0.0, min_open=True, searchable=True)] = 1.0) -> None:
        super().__init__(every=1, gamma=0.5)
        self.period, self.peak, self.restarts = period, peak, 0

    def on_start(self, *, optimizer: torch.optim.Optimizer, **context: Any) -> None:
        super().on_start(optimizer=optimizer)
        self.start = optimizer.param_groups[0]["lr"]

    def on_epoch_end(self, *, epoch: int, metrics: Mapping[str, float]) -> dict[str, float]:
        if epoch % self.period == 0:
            self.restarts += 1
            for group in self.optimizer.param_groups:
                group["lr"] = self.start * self.peak
            return {"lr": self.optimizer.param_groups[0]["lr"], "restarts": self.restarts}
        return {**super().on_epoch_end(epoch=epoch, metrics=metrics), "restarts": self.restarts}

    def state_dict(self) -> dict[str, int]:
        return {"restarts": self.restarts}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.restarts = state["restarts"]


SCHEDULES = {"step": StepDecay, "restart": WarmRestart}


@dataclass(frozen=True)
class LrScheduleConfig:
    """A new section: which learning-rate schedule (a switch), with that schedule's parameters."""

    kind: Annotated[str, Switch(SCHEDULES, complete=True)] = "step"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_section(self, "lr_schedule")


@pytest.fixture
def extended() -> Iterator[Registry]:
    """The loss, the model kind and the section registered as a plugin would, removed afterwards."""
    saved = (dict(LOSSES), dict(MODELS), dict(DATASETS), dict(trial_schema.SECTIONS), list(trial_schema.LAYOUT))
    registry = Registry()
    registry.add_loss("cost", ExpectedCostLoss)
    registry.add_model("deep_mlp", DeepMLP)
    registry.add_section("lr_schedule", LrScheduleConfig)
    yield registry
    for live, before in zip((LOSSES, MODELS, DATASETS, trial_schema.SECTIONS), saved):
        live.clear()
        live.update(before)
    trial_schema.LAYOUT[:] = saved[4]


SPACE = """\
name: extended
data: {kind: digits, limit: 300, val_fraction: 0.2}
model: {kind: deep_mlp, hidden: 16, depth: {choice: [1, 2]}}
train: {epochs: 3, batch_size: 64, lr: 0.05}
heads:
  digit: {loss: {choice: {cost: {power: {uniform: [0.5, 2.0]}}, ce: {}}}}
  thickness: {loss: ce}
  smoothness: {loss: ce}
lr_schedule: {kind: {choice: {step: {gamma: {uniform: [0.3, 0.9]}}, restart: {period: 2, peak: {uniform: [0.5, 1.0]}}}}}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: 4, sampler: random, scheduler: none}
"""


def test_a_space_over_the_new_dimensions_validates_and_its_errors_name_yaml_paths(extended, tmp_path: Path):
    space = load_space(_write(tmp_path, SPACE))
    assert extended.added == ["loss cost", "model deep_mlp", "section lr_schedule"]
    searched = space.searched()
    assert {"model.deep_mlp.depth", "heads.digit.cost.power", "lr_schedule.kind", "lr_schedule.step.gamma",
            "lr_schedule.restart.peak"} <= set(searched)
    bad = (SPACE.replace("[0.5, 2.0]", "[-1.0, 2.0]").replace("[1, 2]", "[1, 9]")
           .replace("restart: {period: 2", "restart: {period: 2, warmup: 3"))
    with pytest.raises(SpaceError) as caught:
        load_space(_write(tmp_path, bad))
    problems = {issue.path: issue.rule for issue in caught.value.errors}
    assert problems == {
        "model.depth.choice[1]": "an integer in [1, 4]",
        "heads.digit.loss.choice.cost.power.uniform": "bounds that are a number in [0.5, 4]",
        "lr_schedule.kind.choice.restart.warmup": "a parameter of `restart` (one of: period, peak)",
    }


class PickyLoss(ExpectedCostLoss):
    """A loss that refuses a value with a plain ValueError (as third-party code may)."""

    def __init__(self, *, num_classes: int, ignore_index: int = -1, power: float = 1.0, shift: int) -> None:
        if power == 3.0:
            raise ValueError("a power of 3 is unlucky")
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, power=power)
        self.shift = shift


def _refused_with_loss(extended: Registry, tmp_path: Path, name: str, loss: type, choice: str) -> SpaceError:
    """The SpaceError of SPACE with the digit head's loss choice replaced by ``choice``, a YAML
    mapping of options, with ``loss`` added as ``name``."""
    if name not in LOSSES:
        extended.add_loss(name, loss)
    text = SPACE.replace("{cost: {power: {uniform: [0.5, 2.0]}}, ce: {}}", choice)
    with pytest.raises(SpaceError) as caught:
        load_space(_write(tmp_path, text))
    return caught.value


def test_a_plugin_loss_that_refuses_in_text_or_needs_a_value_gives_space_issues(extended, tmp_path: Path):
    refused = _refused_with_loss(extended, tmp_path, "picky", PickyLoss, "{picky: {power: {choice: [1.0, 3.0]}}}")
    problems = {issue.path: (issue.rule, str(issue.value)) for issue in refused.errors}
    assert problems == {"heads.digit.loss.choice.picky.shift": ("a value for `shift` (`picky` has no default)", "nothing")}
    refused = _refused_with_loss(extended, tmp_path, "picky", PickyLoss,
                                 "{picky: {power: {choice: [1.0, 3.0]}, shift: 1}}")
    (issue,) = refused.errors
    assert issue.path == "heads.digit.loss.choice.picky"
    assert (issue.rule, str(issue.value)) == ("parameters `picky` accepts", "ValueError: a power of 3 is unlucky")


class UntypedLoss(ExpectedCostLoss):
    """A loss whose constructor forgot an annotation."""

    def __init__(self, *, num_classes: int, ignore_index: int = -1, power: float = 1.0, bend=2) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, power=power)
        self.bend = bend


def test_a_plugin_loss_parameter_without_a_checkable_annotation_is_named_as_such(extended, tmp_path: Path):
    # not "a parameter of `untyped` (one of: power)", which the constructor's author would doubt
    (issue,) = _refused_with_loss(extended, tmp_path, "untyped", UntypedLoss, "{untyped: {bend: 3}}").errors
    assert issue.path == "heads.digit.loss.choice.untyped.bend"
    assert issue.rule.startswith("a parameter of `untyped` whose annotation in its constructor is a type a space "
                                 "can check (float, int, bool, str")


def test_a_trial_of_the_new_dimensions_trains_and_its_hook_acts(extended, tmp_path: Path):
    space = load_space(_write(tmp_path, SPACE))
    flat = next(c for c in (space.sample(seed=s) for s in range(50))
                if c["heads.digit.loss"] == "cost" and c["lr_schedule.kind"] == "step")
    cfg = TrialConfig.from_flat(flat)
    assert cfg.sections["lr_schedule"].params == {"every": 1, "gamma": flat["lr_schedule.step.gamma"]}
    reported: list[dict[str, float]] = []
    final = train(cfg, report=reported.append)
    gamma = flat["lr_schedule.step.gamma"]
    assert [r["lr"] for r in reported] == pytest.approx([0.05 * gamma ** e for e in (1, 2, 3)])
    assert 0.0 <= final["test/acc_mean"] <= 1.0
    assert TrialConfig.from_flat(cfg.to_flat()) == cfg


def test_a_resumed_trial_continues_its_hooks_as_if_never_stopped(extended, tmp_path: Path):
    space = load_space(_write(tmp_path, SPACE.replace("epochs: 3", "epochs: 5")))
    flat = next(c for c in (space.sample(seed=s) for s in range(50)) if c["lr_schedule.kind"] == "restart")
    whole: list[dict[str, float]] = []
    train(TrialConfig.from_flat(flat), report=whole.append)

    class Stop(Exception):
        pass

    def stop_after_epoch_3(metrics: dict[str, float]) -> None:
        first.append(metrics)
        if metrics["epoch"] == 3:
            raise Stop

    first: list[dict[str, float]] = []
    with pytest.raises(Stop):
        train(TrialConfig.from_flat(flat), report=stop_after_epoch_3, checkpoint_dir=tmp_path / "ckpt")
    rest: list[dict[str, float]] = []
    train(TrialConfig.from_flat(flat), report=rest.append, checkpoint_dir=tmp_path / "ckpt")
    resumed = first + rest
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4, 5]
    assert [(r["lr"], r["restarts"]) for r in resumed] == [(r["lr"], r["restarts"]) for r in whole]
    assert [r["val/acc_mean"] for r in resumed] == [r["val/acc_mean"] for r in whole]


def test_the_new_flat_values_reach_mlflow_params_and_report_columns(extended, tmp_path: Path):
    space = load_space(_write(tmp_path, SPACE))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = SearchTracker(TrackingSettings(tracking_uri=uri, experiment="extended", search_id="extended-1",
                                             search_name="extended", objective_metric="val/acc_mean",
                                             objective_mode="max"))
    tracker.start_search(params={"objective.0": "val/acc_mean (max)"}, artifacts={})
    configs = [space.sample(seed=seed) for seed in range(3)]
    for index, config in enumerate(configs):
        trial_id = f"t{index}"
        tracker.trial_started(trial_id, config)
        tracker.log_epoch(trial_id, {"epoch": 1, "val/acc_mean": 0.1 * (index + 1)}, epoch=1)
        tracker.trial_ended(trial_id, state="finished", reason="completed")
    tracker.end_search(end="finished")

    client = MlflowClient(uri)
    run_id = tracker.trial_run_id("t0")
    params = client.get_run(run_id).data.params
    for key in ("model.kind", "model.deep_mlp.depth", "lr_schedule.kind"):
        assert params[key] == str(configs[0][key])
    option = configs[0]["lr_schedule.kind"]
    assert {k for k in params if k.startswith(f"lr_schedule.{option}.")}

    search, _ = load_search(open_store(uri), tracking_uri=uri, selector="extended-1")
    columns = trial_table(search).labels
    assert "model.deep_mlp.depth" in columns or len({c["model.deep_mlp.depth"] for c in configs}) == 1
    varied = [k for k in ("lr_schedule.kind", "lr_schedule.step.gamma", "lr_schedule.restart.peak")
              if len({repr(c.get(k)) for c in configs}) > 1]
    assert varied and all(k in columns for k in varied)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extended.yaml"
    path.write_text(text)
    return path


def test_a_plugin_loss_that_uses_class_distances_is_refused_on_a_categorical_head(monkeypatch):
    from trainables.losses import check_fits_head
    from trainables.settings import SettingError

    class DistanceCostLoss(ExpectedCostLoss):  # |j - y| in its math, and it says so
        uses_class_distance = True

    monkeypatch.setitem(LOSSES, "distance_cost", DistanceCostLoss)
    check_fits_head("distance_cost", num_classes=5, ordinal=True, head="thickness", key="heads.thickness.loss")
    with pytest.raises(SettingError, match="a loss without distances between classes on a categorical head"):
        check_fits_head("distance_cost", num_classes=10, ordinal=False, head="digit", key="heads.digit.loss")
