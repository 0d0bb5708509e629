"""search.space: parsing, validation, define-by-run compilation, flat trial configs."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import FixedTrial

from search.space import Choice, Grid, SpaceError, SpaceIssue, load_space, safe_load_value
from trainables.config import TrialConfig

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "spaces").glob("*.yaml"))

# digits: digit (10, categorical), thickness (5, ordinal), smoothness (3, ordinal).
CONDITIONAL = """\
data: {kind: digits, limit: 200}
model: {kind: mlp, hidden: 16, dropout: {uniform: [0.0, 0.5]}}
train: {epochs: 2, lr: {loguniform: [1e-4, 1e-2]}}
heads:
  digit: {weight: 1.0, loss: ce}
  thickness:
    weight: {uniform: [0.5, 2.0]}
    loss:
      choice:
        ce: {}
        ordinal: {alpha: {loguniform: [0.01, 1.0]}, distance: {choice: [l1, l2, huber]}}
        weighted_ce: {distance_power: {uniform: [1.0, 3.0]}}
        focal: {gamma: 2.0}
  smoothness: {loss: {ordinal: {alpha: 0.1}}}
energy_weight: {choice: [0.0, 0.001]}
objective: {metric: val/acc_mean, mode: max}
search: {num_samples: 4, seed: 3}
"""
ALWAYS = {"model.mlp.dropout", "train.lr", "heads.thickness.weight", "heads.thickness.loss", "energy_weight"}
LOSS_PARAMS = {
    "ce": set(),
    "ordinal": {"heads.thickness.ordinal.alpha", "heads.thickness.ordinal.distance"},
    "weighted_ce": {"heads.thickness.weighted_ce.distance_power"},
    "focal": set(),  # gamma is fixed: a constant, not a suggestion
}


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def space(tmp_path):
    return load_space(write(tmp_path, CONDITIONAL))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_validates_and_samples_a_trial_config(path):
    space = load_space(path)
    config = space.sample(seed=space.search.seed)
    assert TrialConfig.from_flat(config).to_flat().keys() == config.keys()
    assert space.dimensions()


def test_the_shipped_spaces_include_the_three_documented_ones():
    assert {"vimh.yaml", "digits.yaml", "temporal_energy.yaml"} <= {p.name for p in SHIPPED}


def test_vimh_space_validates_without_generating_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = load_space(REPO / "spaces" / "vimh.yaml")
    assert space.data.path == str(tmp_path / "data" / "vimh-default")
    assert not (tmp_path / "data").exists()


def test_relative_data_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, CONDITIONAL.replace("{kind: digits, limit: 200}", "{kind: mnist, path: sub/dir}"))
    monkeypatch.chdir(tmp_path)
    space = load_space(path.name)
    assert space.data.path == str(tmp_path / "sub" / "dir")
    assert space.sample(seed=0)["data.path"] == str(tmp_path / "sub" / "dir")


@pytest.mark.parametrize(
    ("loss", "params"),
    [
        ("ce", {}),
        ("ordinal", {"heads.thickness.ordinal.alpha": 0.1, "heads.thickness.ordinal.distance": "l2"}),
        ("weighted_ce", {"heads.thickness.weighted_ce.distance_power": 2.0}),
        ("focal", {}),
    ],
)
def test_define_by_run_suggests_only_the_chosen_losss_parameters(space, loss, params):
    # A FixedTrial raises for any suggestion it was not given: another loss's parameter would fail.
    fixed = {"model.mlp.dropout": 0.1, "train.lr": 1e-3, "heads.thickness.weight": 1.0,
             "heads.thickness.loss": loss, "energy_weight": 0.0, **params}
    trial = FixedTrial(fixed)
    constants = space.define_by_run(trial)
    assert set(trial.params) == set(fixed)
    config = {**trial.params, **constants}
    if loss == "focal":
        assert config["heads.thickness.focal.gamma"] == 2.0
    assert not any(k.startswith("heads.thickness.") and k.split(".")[2] not in (loss, "loss", "weight") for k in config)
    assert TrialConfig.from_flat(config).to_flat().keys() == config.keys()


def test_define_by_run_over_many_trials_is_conditional_and_complete(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        constants = space.define_by_run(trial)
        loss = trial.params["heads.thickness.loss"]
        seen.add(loss)
        assert set(trial.params) == ALWAYS | LOSS_PARAMS[loss]
        assert not set(trial.params) & set(constants)
        TrialConfig.from_flat({**trial.params, **constants})  # complete and valid
        study.tell(trial, 0.0)
    assert seen == set(LOSS_PARAMS)


def test_ray_optuna_search_gets_a_complete_trial_config(space):
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space=space.define_by_run, metric="val/acc_mean", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    config = searcher.suggest("trial-1")
    assert config.keys() == TrialConfig.from_flat(config).to_flat().keys()
    assert config["objective.metric"] == "val/acc_mean"


def test_sample_is_reproducible_json_safe_and_in_file_order(space):
    first, again, other = space.sample(seed=1), space.sample(seed=1), space.sample(seed=2)
    assert first == again
    assert first != other
    assert json.loads(json.dumps(first)) == first
    keys = list(first)
    assert keys.index("data.kind") < keys.index("model.mlp.dropout") < keys.index("train.lr")
    assert keys.index("train.lr") < keys.index("heads.digit.loss") < keys.index("energy_weight")
    assert keys[-2:] == ["objective.metric", "objective.mode"]


def test_constants_and_settings_are_typed(space):
    config = space.sample(seed=0)
    assert config["heads.digit.weight"] == 1.0 and isinstance(config["heads.digit.weight"], float)
    assert config["train.epochs"] == 2 and config["model.mlp.hidden"] == 16
    assert 1e-4 <= config["train.lr"] <= 1e-2
    assert space.search.num_samples == 4 and space.search.seed == 3
    assert [(o.metric, o.mode) for o in space.objectives] == [("val/acc_mean", "max")]
    assert set(space.heads) == {"digit", "thickness", "smoothness"}


def test_without_heads_section_every_head_trains_with_ce(tmp_path):
    space = load_space(write(tmp_path, "data: {kind: digits}\nobjective: {metric: val/acc_mean, mode: max}\n"))
    config = space.sample(seed=0)
    assert {k: v for k, v in config.items() if k.startswith("heads.")} == {
        f"heads.{h}.{k}": v for h in ("digit", "thickness", "smoothness") for k, v in (("weight", 1.0), ("loss", "ce"))
    }


def test_listed_heads_are_the_trained_heads(tmp_path):
    text = "data: {kind: digits}\nheads: {thickness: {loss: ordinal}}\nobjective: {metric: val/thickness/mae, mode: min}\n"
    space = load_space(write(tmp_path, text))
    assert list(space.heads) == ["thickness"]
    assert not any(k.startswith("heads.digit") for k in space.sample(seed=0))


def test_grid_search_space_lists_every_value_or_none(tmp_path, space):
    assert space.grid_search_space() is None  # uniform/loguniform dimensions
    text = """\
    data: {kind: digits}
    model: {hidden: {grid: [16, 32]}}
    heads:
      thickness: {loss: {grid: {ce: {}, ordinal: {distance: {grid: [l1, l2]}}}}}
    objective: {metric: val/acc_mean, mode: max}
    search: {sampler: grid}
    """
    grid_space = load_space(write(tmp_path, text, "grid.yaml"))
    assert grid_space.grid_search_space() == {
        "model.simple_cnn.hidden": [16, 32],
        "heads.thickness.loss": ["ce", "ordinal"],
        "heads.thickness.ordinal.distance": ["l1", "l2"],
    }
    sampler = optuna.samplers.GridSampler(grid_space.grid_search_space(), seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (grid_space.define_by_run(t), 0.0)[1], n_trials=4)
    assert {t.params["heads.thickness.loss"] for t in study.trials} <= {"ce", "ordinal"}


def test_dimensions_show_the_conditional_structure(space):
    lines = space.dimensions()
    text = "\n".join(lines)
    assert "heads.thickness.loss" in text and "choice [ce, ordinal, weighted_ce, focal]" in text
    cond = next(i for i, line in enumerate(lines) if "if heads.thickness.loss == ordinal" in line)
    assert "heads.thickness.ordinal.alpha" in lines[cond + 1]
    assert len(lines[cond + 1]) - len(lines[cond + 1].lstrip()) > len(lines[cond]) - len(lines[cond].lstrip())
    assert "heads.thickness.focal.gamma = 2.0" in text  # a constant of one alternative
    assert "  train.epochs = 2" in lines


def test_all_problems_are_reported_together_in_file_order(tmp_path):
    text = """\
    data: {kind: digits, limit: 200}
    model: {kind: resnet, dropout: {uniform: [0.5, 0.1]}}
    train: {batch: 32, lr: {loguniform: [0.0, 0.1]}}
    heads:
      digit: {weight: -1, loss: quantized}
      thickness: {loss: {choice: {ordinal: {beta: 1}, hinge: {}}}}
      pitch: {loss: ce}
    objective: {metric: val/loss, mode: min}
    """
    with pytest.raises(SpaceError) as caught:
        load_space(write(tmp_path, text))
    paths = [issue.path for issue in caught.value.errors]
    assert paths == [
        "model.kind",
        "train.batch",
        "train.lr.loguniform",
        "heads.digit.weight",
        "heads.digit.loss",
        "heads.thickness.loss.choice.ordinal.beta",
        "heads.thickness.loss.choice.hinge",
        "heads.pitch",
        "objective.metric",
    ]
    assert all(issue.file == str(tmp_path / "space.yaml") and issue.line for issue in caught.value.errors)
    assert "not comparable" in str(caught.value.errors[-1])


def test_issue_text_names_file_line_path_rule_and_value():
    issue = SpaceIssue("s.yaml", "heads.a.loss.choice.ordinal.alpha", "a number", "big", line=7)
    assert str(issue) == 's.yaml:7: heads.a.loss.choice.ordinal.alpha: a number, but got "big"'
    assert str(SpaceIssue("s.yaml", "train.lr", "lo < hi", [1, 0])) == "s.yaml: train.lr: lo < hi, but got [1, 0]"


def test_duplicate_keys_are_errors_with_both_lines(tmp_path):
    text = "data: {kind: digits}\ntrain:\n  lr: 0.1\n  lr: 0.2\nobjective: {metric: val/acc_mean, mode: max}\n"
    with pytest.raises(SpaceError) as caught:
        load_space(write(tmp_path, text))
    (issue,) = caught.value.errors
    assert (issue.path, issue.line) == ("train.lr", 4)
    assert "first given on line 3" in issue.rule


def test_yaml_syntax_error_reports_its_line(tmp_path):
    with pytest.raises(SpaceError) as caught:
        load_space(write(tmp_path, "data: {kind: digits}\ntrain: [1, 2\nobjective: 3\n"))
    (issue,) = caught.value.errors
    assert issue.line is not None and issue.line >= 2
    assert "syntax error" in str(issue)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", ""])
def test_top_level_must_be_a_mapping(tmp_path, text):
    with pytest.raises(SpaceError, match="a mapping of sections at the top level"):
        load_space(write(tmp_path, text))


def test_missing_file_is_a_space_error(tmp_path):
    with pytest.raises(SpaceError, match="an existing space file"):
        load_space(tmp_path / "nope.yaml")


def test_only_safe_yaml_is_accepted(tmp_path):
    text = "data: !!python/object/apply:os.system ['true']\nobjective: {metric: val/acc_mean, mode: max}\n"
    with pytest.raises(SpaceError, match="constructor"):
        load_space(write(tmp_path, text))


def test_exponent_floats_without_a_dot_are_numbers():
    assert safe_load_value("1e-4") == 1e-4
    assert safe_load_value("-2.5E3") == -2500.0
    assert safe_load_value("1e") == "1e"


def test_aliases_are_allowed_and_checked(tmp_path):
    text = """\
    data: {kind: digits}
    heads:
      thickness: {loss: &ord {ordinal: {alpha: 0.2}}}
      smoothness: {loss: *ord}
    objective: {metric: val/acc_mean, mode: max}
    """
    config = load_space(write(tmp_path, text)).sample(seed=0)
    assert config["heads.thickness.ordinal.alpha"] == config["heads.smoothness.ordinal.alpha"] == 0.2


def test_choice_and_grid_distributions_are_kept(space, tmp_path):
    text = "data: {kind: digits}\ntrain: {batch_size: {grid: [16, 32]}}\nobjective: {metric: val/acc_mean, mode: max}\n"
    grid = load_space(write(tmp_path, text, "g.yaml"))
    (param,) = [e for e in grid.entries if getattr(e, "key", "") == "train.batch_size"]
    assert isinstance(param.distribution, Grid) and param.distribution.values == (16, 32)
    (energy,) = [e for e in space.entries if getattr(e, "key", "") == "energy_weight"]
    assert isinstance(energy.distribution, Choice) and not isinstance(energy.distribution, Grid)


def test_data_seed_is_a_fixed_setting_kept_apart_from_the_training_seed(tmp_path):
    text = CONDITIONAL.replace("{kind: digits, limit: 200}", "{kind: digits, limit: 200, seed: 5}")
    space = load_space(write(tmp_path, text))
    config = space.sample(seed=0)
    assert space.data.seed == 5 and config["data.seed"] == 5 and config["train.seed"] == 0
    assert TrialConfig.from_flat(config).data.seed == 5
    assert load_space(write(tmp_path, CONDITIONAL, "default.yaml")).sample(seed=0)["data.seed"] == 0


def _device_space(train: str, resources: str) -> str:
    objective = "{metric: val/acc_mean, mode: max}"
    return f"data: {{kind: digits}}\ntrain: {train}\nobjective: {objective}\nresources: {resources}\n"


@pytest.mark.parametrize(("train", "resources", "path", "rule", "value"), [
    ("{device: cpu}", "{gpu: 0.5}", "resources.gpu", "0 with train.device cpu (each trial would hold a GPU", 0.5),
    ("{device: cuda}", "{gpu: 0}", "train.device", "auto or cpu with resources.gpu 0", "cuda"),
    ("{device: cuda}", "{cpu: 1}", "train.device", "auto or cpu with resources.gpu 0", "cuda"),  # gpu's default: 0
])
def test_train_device_must_agree_with_the_gpu_share_of_a_trial(tmp_path, train, resources, path, rule, value):
    file = write(tmp_path, _device_space(train, resources))
    with pytest.raises(SpaceError) as caught:
        load_space(file)
    (issue,) = caught.value.errors
    assert (issue.file, issue.path, issue.value) == (str(file), path, value)
    assert issue.rule.startswith(rule) and issue.line == (4 if path == "resources.gpu" else 2)
    assert f": {path}: {rule}" in str(issue) and ", but got " in str(issue)


@pytest.mark.parametrize(("train", "resources"), [
    ("{device: cpu}", "{gpu: 0}"), ("{device: cuda}", "{gpu: 0.25}"), ("{device: auto}", "{gpu: 2}"),
    ("{}", "{gpu: 0}"),
])
def test_train_device_and_gpu_share_that_agree_validate(tmp_path, train, resources):
    space = load_space(write(tmp_path, _device_space(train, resources)))
    device = yaml.safe_load(train).get("device", "auto")  # the default
    assert space.resources.gpu == yaml.safe_load(resources)["gpu"]
    assert space.sample(seed=0)["train.device"] == device


@pytest.mark.parametrize(("amp", "now"), [("true", "auto"), ("false", "off"), ("bf16", "bf16"), (None, "auto")])
def test_train_amp_is_a_precision_and_old_booleans_still_load(tmp_path, amp, now):
    train = "{epochs: 2}" if amp is None else f"{{epochs: 2, amp: {amp}}}"
    text = f"data: {{kind: digits}}\ntrain: {train}\nobjective: {{metric: val/acc_mean, mode: max}}\n"
    assert load_space(write(tmp_path, text)).sample(seed=0)["train.amp"] == now


def test_train_amp_that_is_no_precision_is_named_at_its_path(tmp_path):
    text = "data: {kind: digits}\ntrain: {amp: fp32}\nobjective: {metric: val/acc_mean, mode: max}\n"
    with pytest.raises(SpaceError) as caught:
        load_space(write(tmp_path, text))
    (issue,) = caught.value.errors
    assert (issue.path, issue.line, issue.value) == ("train.amp", 2, "fp32")
    assert issue.rule == "one of [off, fp16, bf16, auto]"


def test_a_seed_past_32_bits_is_refused_where_it_is_written(tmp_path: Path):
    # NumPy's and Optuna's generators take 32-bit seeds: a larger one would fail only once Ray ran
    text = (REPO / "tests" / "search" / "spaces" / "tiny.yaml").read_text()
    path = tmp_path / "seeds.yaml"
    path.write_text(text.replace("  seed: 0\n", f"  seed: {2**32}\n"))
    with pytest.raises(SpaceError) as error:
        load_space(path)
    issues = {(issue.path, issue.rule) for issue in error.value.errors}
    assert issues == {("train.seed", "an integer in [0, 4294967295]"), ("search.seed", "an integer in [0, 4294967295]")}
    path.write_text(text.replace("  seed: 0\n", f"  seed: {2**32 - 1}\n"))
    assert load_space(path).search.seed == 2**32 - 1


def test_a_temporal_space_with_many_searched_values_validates_in_a_second(tmp_path):
    # 256 x 20 x 20 combinations took 41 s when every combination was built; the reaction-time rule
    # needs only the longest reaction time with the shortest dt.
    dts = ", ".join(f"{1 + i / 100:.2f}" for i in range(20))
    reaction_times = ", ".join(f"{i / 100:.2f}" for i in range(20))
    path = tmp_path / "temporal.yaml"
    path.write_text(textwrap.dedent(f"""\
        data: {{kind: digits, limit: 200}}
        model: {{kind: recurrent_cnn, hidden: 8}}
        objective: {{metric: val/acc_mean, mode: max}}
        temporal: {{n_timesteps: {{int: [2, 257]}}, pattern: "1", dt: {{choice: [{dts}]}},
                   reaction_time: {{choice: [{reaction_times}]}}}}
        """))
    started = time.monotonic()
    space = load_space(path)
    assert time.monotonic() - started < 5.0
    assert {e.key for e in space.entries} >= {"temporal.dt", "temporal.reaction_time"}


def test_a_head_named_like_a_loss_term_is_refused_only_where_it_would_train(tmp_path):
    # it validated, then every trial refused it (its loss would be reported as the total's); a
    # data set that merely has such a parameter still trains its other heads
    from trainables.data.vimh import VimhBatch, VimhInfo, write_vimh_batch, write_vimh_info

    data = tmp_path / "vimh"
    data.mkdir()
    info = VimhInfo(height=4, width=4, channels=1, parameter_names=("total", "pitch"), ranges={"total": None, "pitch": None})
    batch = VimhBatch(images=np.zeros((4, 1, 4, 4), dtype=np.uint8), labels={"total": np.arange(4), "pitch": np.arange(4)})
    for name in ("train_batch", "test_batch"):
        write_vimh_batch(data / name, batch, info=info)
    write_vimh_info(data, info=info)
    head = f"data: {{kind: vimh, path: {data}}}\nobjective: {{metric: val/acc_mean, mode: max}}\n"
    with pytest.raises(SpaceError) as every_head:
        load_space(write(tmp_path, head, "all.yaml"))
    assert [(i.path, str(i.value)) for i in every_head.value.errors] == [("data", "`total`")]
    with pytest.raises(SpaceError) as listed:
        load_space(write(tmp_path, head + "heads: {total: {loss: ce}, pitch: {loss: ce}}\n", "listed.yaml"))
    assert [(i.path, str(i.value)) for i in listed.value.errors] == [("heads.total", "`total`")]
    assert list(load_space(write(tmp_path, head + "heads: {pitch: {loss: ce}}\n", "pitch.yaml")).heads) == ["pitch"]
