"""`python -m search train`: one trial without Ray, --config round trip, overrides, exit codes."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from search.__main__ import main
from search.commands.train import apply_overrides
from search.space import load_space

TINY = """\
data: {kind: digits, limit: 300}
model: {kind: mlp, hidden: 16, dropout: 0.0}
train: {epochs: 2, batch_size: 64, lr: {loguniform: [1.0e-3, 1.0e-2]}, device: cpu, threads: 1}
heads:
  digit: {loss: ce}
  thickness:
    weight: {uniform: [0.5, 1.5]}
    loss: {choice: {ce: {}, ordinal: {alpha: {uniform: [0.05, 0.5]}}}}
  smoothness: {loss: soft_ordinal}
objective: {metric: val/acc_mean, mode: max}
search: {seed: 0, grace_period: 1}
"""


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def final_metrics(out: str) -> str:
    return out.split("final metrics", 1)[1]


def test_train_draws_a_config_prints_a_table_and_test_metrics(space, capsys):
    assert main(["train", str(space)]) == 0
    out, _ = capsys.readouterr()
    assert "drawn with seed 0" in out
    # values as the config file spells them: `data.path = None` was Python's, the file says null
    assert "  data.path = null\n" in out and "  train.amp = auto\n" in out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["epoch"])
    assert "val/acc_mean" in header
    rows = out.split(header, 1)[1].split("final metrics", 1)[0].strip().splitlines()
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert "test/acc_mean = " in final_metrics(out) and "test/digit/acc = " in final_metrics(out)


def test_an_exported_config_reproduces_the_trial(space, tmp_path, capsys):
    drawn = load_space(space).sample(seed=0)
    config = tmp_path / "best_config.yaml"
    config.write_text(yaml.safe_dump(drawn, sort_keys=False))
    runs = []
    for argv in (["train", str(space)], ["train", str(space), "--config", str(config)],
                 ["train", str(space), "--config", str(config)]):
        assert main(argv) == 0
        runs.append(final_metrics(capsys.readouterr()[0]))
    assert runs[0] == runs[1] == runs[2]


def test_set_and_epochs_override_values(space, capsys, tmp_path):
    argv = ["train", str(space), "--epochs", "1", "--set", "heads.thickness.loss=ordinal",
            "--set", "heads.thickness.ordinal.alpha=2e-1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert "train.epochs = 1" in out and "heads.thickness.ordinal.alpha = 0.2" in out
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists()


def test_changing_a_loss_drops_the_old_losss_parameters():
    config = {"heads.a.loss": "ordinal", "heads.a.ordinal.alpha": 0.1, "heads.a.weight": 1.0, "train.lr": 0.1}
    assert apply_overrides(config, ["heads.a.loss=ce", "train.lr=1e-3"]) == {
        "heads.a.loss": "ce", "heads.a.weight": 1.0, "train.lr": 1e-3,
    }
    kept = apply_overrides(config, ["heads.a.loss=focal", "heads.a.focal.gamma=1"])
    assert kept == {"heads.a.loss": "focal", "heads.a.focal.gamma": 1, "heads.a.weight": 1.0, "train.lr": 0.1}
    # A weight override is no switch: the loss keeps its parameters.
    assert apply_overrides(config, ["heads.a.weight=2"])["heads.a.ordinal.alpha"] == 0.1


def test_changing_the_model_kind_drops_the_old_kinds_parameters():
    config = {"model.kind": "simple_cnn", "model.simple_cnn.hidden": 64, "model.simple_cnn.dropout": 0.1}
    assert apply_overrides(config, ["model.kind=mlp", "model.mlp.hidden=8"]) == {"model.kind": "mlp", "model.mlp.hidden": 8}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "train.lr"], "--set takes KEY=VALUE"),
        (["--set", "train.lr=fast"], "train.lr must be a number > 0, but got 'fast'"),
        (["--set", "train.optimizer=adam"], "train.optimizer must be a setting of section train"),
        (["--set", "heads.digit.ordinal.alpha=0.1"], "heads.digit.ordinal.alpha must be a parameter of the chosen "
                                                     "heads.digit.loss (ce; it needs heads.digit.loss: ordinal), "
                                                     "but got 0.1"),
        (["--set", "heads.digit.loss=focal", "--set", "heads.digit.focal.gamma=-1"], "gamma must be"),
        (["--set", "train.lr=[1"], "the value must be YAML, but got '[1' (while parsing a flow sequence)\n"),
        # before: a 200-byte value of aliases was built whole (35 MB), and a long value printed whole
        (["--set", "train.lr=[&a [1,1,1,1,1,1,1,1,1,1], &b [" + ", ".join(["*a"] * 10) + "], &c [" + ", ".join(["*b"] * 10)
          + "], &d [" + ", ".join(["*c"] * 10) + "], &e [" + ", ".join(["*d"] * 10) + "]]"],
         "--set train.lr: at most 10,000 values, aliases expanded (no search space needs more), but got more\n"),
        (["--set", "train.lr=" + "x" * 100_000], "train.lr must be a number > 0, but got 'xxxxxxxx"),
        (["--config", "missing.yaml"], "an existing trial config file"),
        (["--set", "model.hidden=32"], "model.hidden must be left out or equal to model.mlp.hidden (16)"),
        (["--set", "heads.digit.loss=quantized"], "heads.digit.loss must be a loss with one output per class"),
    ],
)
def test_invalid_input_exits_2_without_traceback(space, capsys, extra, message):
    assert main(["train", str(space), *extra]) == 2
    _, err = capsys.readouterr()
    assert message in err and "Traceback" not in err
    assert len(err) < 1000  # one message, its value shortened


def test_a_run_that_is_no_trial_s_exits_2_naming_it(space, tmp_path, capsys):
    from mlflow import MlflowClient

    from search.tracking import ROLE_SEARCH, TAG_ROLE, create_sqlite_store

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    create_sqlite_store(tmp_path / "m.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("x")
    parent = client.create_run(experiment, tags={TAG_ROLE: ROLE_SEARCH}).info.run_id
    other = client.create_run(experiment).info.run_id
    capsys.readouterr()
    for run_id, message in [
        (parent, f"--run: the run of a trial of a losstune search, but got {parent!r}, the run of a search"),
        (other, f"--run: the run of a trial of a losstune search, but got {other!r}, a run no losstune search made"),
        ("0123abc", f"--run: the id of a run in {uri}, but got '0123abc' (Run with id=0123abc not found"),
    ]:
        assert main(["train", str(space), "--run", run_id, "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"invalid trial config: {message}") and "Traceback" not in err
    missing = tmp_path / "none.db"
    assert main(["train", str(space), "--run", parent, "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert f"--run: an existing MLflow store, but got no file {missing}" in capsys.readouterr().err
    assert not missing.exists()  # a store only read is never created
    assert main(["train", str(space), "--tracking-uri", uri]) == 2  # before: ignored, a config drawn
    assert "--tracking-uri is where --run is read from, but got it without --run" in capsys.readouterr().err
    # a config from two places: argparse's usage error
    assert main(["train", str(space), "--run", parent, "--config", str(space)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_store_that_fails_to_read_the_run_exits_1_as_in_search_report(space, monkeypatch, capsys):
    from mlflow.exceptions import MlflowException

    import search.report

    class Failing:
        def get_run(self, run_id):
            raise MlflowException("database is locked\nmore detail", error_code="INTERNAL_ERROR")

    uri = "sqlite:///somewhere.db"
    monkeypatch.setattr("search._preflight.check_store_uri", lambda *a, **k: None)
    monkeypatch.setattr("search._preflight.check_reachable", lambda *a, **k: None)
    monkeypatch.setattr(search.report, "open_store", lambda tracking_uri: Failing())
    # before: exit 2, as if the run id or the command line were wrong
    assert main(["train", str(space), "--run", "0123abc", "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert err == f"error: --run: reading run '0123abc' from {uri} failed: database is locked\n"


def test_a_config_that_is_not_a_mapping_exits_2(space, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("- train.lr\n")
    assert main(["train", str(space), "--config", str(config)]) == 2
    assert "a mapping of flat keys" in capsys.readouterr()[1]


def test_a_space_given_as_the_trial_config_is_named_with_its_line(space, capsys):
    # before: "invalid trial config: a flat key such as train.lr ..., but got 'data'", naming no file
    assert main(["train", str(space), "--config", str(space)]) == 2
    assert capsys.readouterr().err == (
        f"invalid trial config: {space}:1: a trial config holds one value per flat key (train.lr: 0.001, as a "
        f"best_config.yaml does; a search space is the SPACE argument), but got a mapping under 'data'\n")


def test_a_key_that_is_no_flat_key_is_named_by_its_line(space, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("train.lr: 0.01\nheads: 3\n")
    assert main(["train", str(space), "--config", str(config)]) == 2
    assert f"invalid trial config: {config}:2: " in capsys.readouterr().err  # before: no file, no line


def test_an_invalid_space_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("data: {kind: digits}\nobjective: {metric: val/loss, mode: min}\n"))
    assert main(["train", str(path)]) == 2
    assert ": objective.metric: " in capsys.readouterr()[1]


def test_divergence_exits_1_and_ctrl_c_exits_130(space, monkeypatch, capsys):
    import trainables.train as trainer

    def diverge(config, *, report, checkpoint_dir=None):
        raise trainer.TrainingDiverged("training loss must stay finite, but got nan at epoch 1, step 3")

    monkeypatch.setattr(trainer, "train", diverge)
    assert main(["train", str(space)]) == 1
    assert "training diverged: training loss must stay finite" in capsys.readouterr()[1]

    def interrupt(config, *, report, checkpoint_dir=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupt)
    assert main(["train", str(space)]) == 130


def test_out_of_gpu_memory_exits_1_with_the_cap_and_what_to_change(space, monkeypatch, capsys):
    import trainables.train as trainer
    from trainables.device import DeviceOutOfMemory

    def out_of_memory(config, *, report, checkpoint_dir=None):
        raise DeviceOutOfMemory(device="cuda:0", fraction=0.25, cap_mb=2048.0, peak_mb=1900.0)

    monkeypatch.setattr(trainer, "train", out_of_memory)
    assert main(["train", str(space)]) == 1  # not 2: the config is valid, the device too small
    err = capsys.readouterr()[1]
    assert "out of GPU memory" in err and "2048 MiB" in err and "resources.gpu" in err and "invalid" not in err


def test_a_checkpoint_dir_that_cannot_hold_checkpoints_exits_2_before_training(space, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["train", str(space), "--checkpoint-dir", str(tmp_path / "a-file")]) == 2
    out, err = capsys.readouterr()
    assert "invalid --checkpoint-dir: a folder this user can write, but got the file" in err
    assert "epoch" not in out  # nothing trained
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", str(space), "--checkpoint-dir", str(junk)]) == 2
    err = capsys.readouterr().err
    assert f"invalid --checkpoint-dir: {junk / 'checkpoint.pt'}: a checkpoint losstune wrote, but got" in err
    assert "Traceback" not in err and (junk / "checkpoint.pt").read_bytes() == b"not a checkpoint"


def test_a_second_training_into_the_same_checkpoint_folder_exits_2_while_the_first_runs(space, tmp_path, monkeypatch,
                                                                                          capsys):
    # two trainings saving into one folder would each resume from the other's checkpoints
    import os
    import subprocess
    import sys

    import trainables.train as trainer

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    first = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from search._hold import FileHold;"
         f"FileHold({str(folder / '.search-train.lock')!r}).take(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
    )
    trained = []
    monkeypatch.setattr(trainer, "train", lambda config, **kwargs: trained.append(config) or {})
    try:
        assert first.stdout.readline() == "held\n"
        assert main(["train", str(space), "--checkpoint-dir", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"one `search train` at a time per folder, but got another training in {folder} (process {first.pid} on " in err
        assert not trained
    finally:
        first.kill()
        first.wait(timeout=30)
    assert main(["train", str(space), "--checkpoint-dir", str(folder)]) == 0  # the kernel released it
    assert len(trained) == 1


@pytest.mark.parametrize("kind", ["correlation", "supcon"])
def test_an_option_without_its_required_parameters_exits_2_naming_them(kind, space, capsys):
    # both options need `head` (no default): the trial config says so before anything is built
    assert main(["train", str(space), "--set", f"auxiliary.kind={kind}"]) == 2
    err = capsys.readouterr().err
    assert f"invalid trial config: auxiliary.{kind}.head must be given (`{kind}` has no default)" in err
    assert "Traceback" not in err


def test_a_partial_config_says_which_space_values_it_trains_without(space, tmp_path, monkeypatch, capsys):
    # keys a config lacks take the trial config's defaults, not the space's: said, not silent
    import trainables.train as trainer

    trained = []
    monkeypatch.setattr(trainer, "train", lambda config, **kwargs: trained.append(config) or {})
    partial = tmp_path / "partial.yaml"
    partial.write_text("heads.digit.loss: ce\ntrain.lr: 0.01\ndata.kind: digits\n")
    assert main(["train", str(space), "--config", str(partial), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("note: "))
    assert f"{partial} lacks values the space fixes" in note
    assert "data.limit: null (space: 300)" in note and "train.batch_size: 128 (space: 64)" in note
    assert "data.kind" not in note and "train.epochs" not in note and "heads." not in note  # given, or heads
    assert trained == [{"heads.digit.loss": "ce", "train.lr": 0.01, "data.kind": "digits", "train.epochs": 1}]

    whole = tmp_path / "whole.yaml"
    whole.write_text(yaml.safe_dump(load_space(space).sample(seed=0)))
    assert main(["train", str(space), "--config", str(whole)]) == 0
    assert "note: " not in capsys.readouterr().out  # a best_config.yaml has every value


def test_a_refused_value_is_named_by_the_line_or_the_set_that_gave_it(space, tmp_path, capsys):
    # before: "invalid trial config: train.lr must be ..." whether it came from --config or --set
    config = tmp_path / "c.yaml"
    config.write_text("model.kind: mlp\ntrain.epochs: 2\ntrain.lr: -1\n")
    assert main(["train", str(space), "--config", str(config)]) == 2
    assert f"invalid trial config: {config}:3: train.lr must be a number > 0, but got -1" in capsys.readouterr().err
    assert main(["train", str(space), "--config", str(config), "--set", "train.lr=-2"]) == 2
    assert "invalid trial config: --set train.lr: train.lr must be a number > 0, but got -2" in capsys.readouterr().err
    keyed = tmp_path / "k.yaml"
    keyed.write_text("train.lr: 0.01\n1: 2\n")  # before: "..., but got dict"
    assert main(["train", str(space), "--config", str(keyed)]) == 2
    assert "a mapping of flat keys (train.lr: 0.001, ...), but got the key 1 (int)" in capsys.readouterr().err
    # a loss parameter is refused where the loss is built, in training: named the same way
    assert main(["train", str(space), "--set", "heads.digit.ce.label_smoothing=2"]) == 2
    assert "invalid trial config: --set heads.digit.ce.label_smoothing: heads.digit.ce.label_smoothing must be" \
        in capsys.readouterr().err


def test_the_data_set_prepared_is_the_one_the_trial_trains_on(space, monkeypatch, capsys):
    import trainables.data

    prepared = []
    monkeypatch.setattr(trainables.data, "prepare_dataset", lambda spec, *, progress: prepared.append(spec))
    assert main(["train", str(space), "--epochs", "1", "--set", "data.limit=200"]) == 0
    assert [(spec.kind, spec.limit) for spec in prepared] == [("digits", 200)]  # the space says 300


def test_a_config_that_does_not_fit_its_data_set_exits_2_before_the_data_set_is_built(space, tmp_path, monkeypatch,
                                                                                      capsys):
    # A partial config falls back to the trial config's data set (the default VIMH one, generated
    # on first use), whose heads it does not name: refused from the data set's description.
    import trainables.data

    prepared = []
    monkeypatch.setattr(trainables.data, "prepare_dataset", lambda spec, *, progress: prepared.append(spec))
    partial = tmp_path / "partial.yaml"
    partial.write_text("train.lr: 0.003\nheads.thickness.loss: ordinal\n")
    assert main(["train", str(space), "--config", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "invalid trial config: heads must be heads of the data set" in err and "['thickness']" in err
    assert prepared == []
    for bad, message in ((["--set", "objective.metric=val/nope"],
                          "--set objective.metric: objective.metric must be one of"),
                         (["--set", "heads.digit.loss=quantized"], "heads.digit.loss")):
        assert main(["train", str(space), *bad]) == 2
        out, err = capsys.readouterr()
        assert message in err and prepared == []
        # refused before anything else is said: before, a note that --set trains quantized with its
        # defaults and the whole trial config came first
        assert out == "", out


def test_ctrl_c_while_a_checkpoint_is_written_exits_130_and_keeps_the_last_checkpoint(space, tmp_path, monkeypatch,
                                                                                      capsys):
    # torch's zip writer, closed on its way out of a Ctrl-C during the tensors' records, raises its
    # own error about the cut-off archive: the user pressed Ctrl-C, and the search says so.
    import torch

    saved = torch.save
    calls = []

    def interrupted_second_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return saved(obj, f, *args, **kwargs)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 130688 vs 130576") from None

    monkeypatch.setattr(torch, "save", interrupted_second_save)
    folder = tmp_path / "ck"
    assert main(["train", str(space), "--checkpoint-dir", str(folder)]) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert torch.load(folder / "checkpoint.pt", weights_only=False)["progress"]["epoch"] == 1


def test_a_finished_checkpoint_trained_again_says_nothing_was_trained(space, tmp_path, capsys):
    folder = tmp_path / "ck"
    assert main(["train", str(space), "--checkpoint-dir", str(folder)]) == 0
    first = capsys.readouterr().out
    assert "note: " not in first
    assert main(["train", str(space), "--checkpoint-dir", str(folder)]) == 0
    again = capsys.readouterr().out
    assert f"note: the checkpoint in {folder} had finished training after epoch 2: nothing trained" in again
    assert final_metrics(again) == final_metrics(first)


def test_every_objective_of_the_space_is_a_column_of_the_epoch_table(tmp_path, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(TINY.replace("objective: {metric: val/acc_mean, mode: max}",
                                 "objective:\n  - {metric: val/acc_mean, mode: max}\n"
                                 "  - {metric: val/thickness/mae_norm, mode: min}")
                    .replace("search: {seed: 0, grace_period: 1}", "search: {seed: 0, scheduler: none}"))
    assert main(["train", str(path), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["epoch"])
    assert header.split()[:4] == ["epoch", "train/loss/total", "val/acc_mean", "val/thickness/mae_norm"]


def test_a_set_that_switches_an_option_says_which_parameters_take_its_defaults(tmp_path, capsys):
    # the space gives focal a gamma of 4.5; its seed draws ce, and --set loss=focal trains gamma 2.0
    path = tmp_path / "switch.yaml"
    path.write_text(TINY.replace("digit: {loss: ce}", "digit: {loss: {choice: {ce: {}, focal: {gamma: 4.5}}}}"))
    assert load_space(path).sample(seed=0)["heads.digit.loss"] == "ce"
    assert main(["train", str(path), "--epochs", "1", "--set", "heads.digit.loss=focal"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("note: "))
    assert note == ("note: --set heads.digit.loss=focal trains focal with its defaults "
                    "(heads.digit.focal.gamma=2.0, heads.digit.focal.alpha=null); set them with --set too")
    assert main(["train", str(path), "--epochs", "1", "--set", "heads.digit.loss=focal",
                 "--set", "heads.digit.focal.gamma=4.5", "--set", "heads.digit.focal.alpha=null"]) == 0
    assert "note: " not in capsys.readouterr().out
    # a section's switch (weighting): its options' parameters too
    assert main(["train", str(path), "--epochs", "1", "--set", "weighting.strategy=dwa"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("note: "))
    assert note.startswith("note: --set weighting.strategy=dwa trains dwa with its defaults (weighting.dwa.")
    # a --set that leaves the option as it was (the config's default loss, left out of the file)
    partial = tmp_path / "partial.yaml"
    partial.write_text("data.kind: digits\ndata.limit: 300\nheads.digit.weight: 1.0\nmodel.kind: mlp\n")
    assert main(["train", str(path), "--config", str(partial), "--epochs", "1", "--set", "heads.digit.loss=ce"]) == 0
    assert "--set heads.digit.loss" not in capsys.readouterr().out
