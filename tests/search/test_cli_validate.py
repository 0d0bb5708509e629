"""`python -m search validate` and the command registry of `search/__main__.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.__main__ import main
from search.cluster import JOB_ENV

REPO = Path(__file__).resolve().parents[2]


def test_validate_prints_summary_and_conditional_dimensions(capsys):
    assert main(["validate", str(REPO / "spaces" / "vimh.yaml")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert ": valid" in out and "objective: min val/mae_norm_mean" in out
    assert "heads.note_number.loss" in out and "if heads.note_number.loss == ordinal:" in out
    assert "heads.note_number.ordinal.alpha" in out
    assert "fixed:" in out and "train.epochs = " in out


def test_validate_checks_every_file_given_and_exits_2_if_any_is_invalid(tmp_path, capsys):
    # before, a second file (`search validate spaces/*.yaml`) was refused as an unknown argument
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {kind: digits}\nheads: {digit: {loss: ce}}\nobjective: {metric: val/acc_mean, mode: up}\n")
    shipped = [str(REPO / "spaces" / "digits.yaml"), str(REPO / "spaces" / "vimh.yaml")]
    assert main(["validate", *shipped]) == 0
    out = capsys.readouterr().out
    assert f"{shipped[0]}: valid" in out and f"{shipped[1]}: valid" in out
    assert main(["validate", shipped[0], str(broken), shipped[1]]) == 2
    out, err = capsys.readouterr()
    assert f"{shipped[0]}: valid" in out and f"{shipped[1]}: valid" in out  # checked after the invalid one
    assert f"{broken}: invalid (1 problem)" in err and "objective.mode" in err


@pytest.mark.parametrize(("objective", "message"), [
    # before, both were valid: the best trial was the worst one
    ("{metric: val/acc_mean, mode: min}", "objective.mode: max for val/acc_mean (it improves as it rises), but got \"min\""),
    ("[{metric: val/acc_mean, mode: max}, {metric: val/energy_l1, mode: max}]",
     "objective[1].mode: min for val/energy_l1 (it improves as it falls), but got \"max\""),
    ("{metric: val/thickness/mae, mode: max}", "objective.mode: min for val/thickness/mae (it improves as it falls)"),
    # before: "a metric the trainer reports (one of: val/...)", which test/acc_mean is too
    ("{metric: test/acc_mean, mode: max}", "objective.metric: a metric of the validation split (val/acc_mean): "
                                           "a search selects on it and keeps the test split for the best trial's "
                                           "final figures, but got \"test/acc_mean\""),
])
def test_an_objective_s_mode_must_be_the_way_its_metric_improves(objective, message, tmp_path, capsys):
    space = tmp_path / "mode.yaml"
    space.write_text(f"data: {{kind: digits, limit: 200}}\nheads: {{digit: {{loss: ce}}, thickness: {{loss: ce}}}}\n"
                     f"objective: {objective}\n")
    assert main(["validate", str(space)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("search", "line"), [
    # before: the scheduler's name alone; a rung at 3 of 4 epochs with grace_period 1 written out
    ("{grace_period: 1}", "scheduler: asha_promotions, a rung at epoch 1 of 4: a trial waits there until it is "
                          "among the top 1/3"),
    ("{scheduler: asha}", "scheduler: asha, rungs at epochs 1 and 3 of 4: a trial below the top 1/3 there stops"),
    ("{grace_period: 3}", "scheduler: asha_promotions, no rung within 4 epochs (from a grace period of 3, reduction "
                          "factor 3): every trial trains to its end"),
    ("{scheduler: asha, grace_period: 4}", "scheduler: asha, no rung within 4 epochs (from a grace period of 4, "
                                           "reduction factor 3): every trial trains to its end"),
    ("{scheduler: median, grace_period: 2}", "scheduler: median, from epoch 2 of 4: a trial below the median of the "
                                             "others there stops"),
    ("{scheduler: none}", "scheduler: none: every trial trains its 4 epochs"),
])
def test_validate_says_where_the_scheduler_compares_trials(search, line, tmp_path, capsys):
    space = tmp_path / "rungs.yaml"
    space.write_text("data: {kind: digits, limit: 200}\ntrain: {epochs: 4}\nheads: {digit: {loss: ce}}\n"
                     f"objective: {{metric: val/acc_mean, mode: max}}\nsearch: {search}\n")
    assert main(["validate", str(space)]) == 0
    assert f"\n{line}\n" in capsys.readouterr().out


def test_several_objectives_with_the_default_scheduler_say_it_is_the_default(tmp_path, capsys):
    space = tmp_path / "two.yaml"
    space.write_text("data: {kind: digits, limit: 200}\nheads: {digit: {loss: ce}, thickness: {loss: ce}}\n"
                     "objective: [{metric: val/acc_mean, mode: max}, {metric: val/thickness/mae, mode: min}]\n")
    assert main(["validate", str(space)]) == 2
    # before: "search.scheduler: ..., but got \"asha_promotions\"", a value the file does not hold
    assert ("search: `none` with several objectives (a scheduler stops trials on one metric; asha_promotions is the "
            "default: set scheduler: none), but got \"asha_promotions\"") in capsys.readouterr().err


def test_validate_notes_a_space_with_fewer_configurations_than_trials(tmp_path, capsys):
    # before: 4 trials of a 2-point space ran, 2 of them repeats with the same metrics, without a word
    space = tmp_path / "small.yaml"
    space.write_text("data: {kind: digits, limit: 200}\ntrain: {lr: 0.003}\n"
                     "heads: {digit: {loss: {choice: [ce, focal]}}}\nobjective: {metric: val/acc_mean, mode: max}\n"
                     "search: {num_samples: 4, sampler: random}\n")
    assert main(["validate", str(space)]) == 0
    assert ("note: search.num_samples is 4, but the space holds 2 distinct configuration(s): 2 trial(s) repeat one, "
            "with the same metrics (num_samples: 2, or sampler: grid, runs each once)") in capsys.readouterr().out
    space.write_text(space.read_text().replace("lr: 0.003", "lr: {loguniform: [0.001, 0.01]}"))
    assert main(["validate", str(space)]) == 0
    assert "note:" not in capsys.readouterr().out  # a range: no end of configurations


def test_validate_counts_the_trials_of_a_grid(tmp_path, capsys):
    # before, it printed num_samples (its default 16), which the grid sampler does not use
    space = tmp_path / "grid.yaml"
    space.write_text("data: {kind: digits, limit: 200}\ntrain: {lr: {grid: [0.001, 0.01, 0.1]}}\n"
                     "heads: {digit: {loss: {grid: [ce, {focal: {gamma: {grid: [1.0, 2.0]}}}]}}}\n"
                     "objective: {metric: val/acc_mean, mode: max}\nsearch: {sampler: grid}\n")
    assert main(["validate", str(space)]) == 0
    assert "search: 9 trials, grid sampler" in capsys.readouterr().out  # 3 lrs x (ce + focal with 2 gammas)


@pytest.mark.parametrize("heads", ["{digt: {loss: ce}}", "{}"])
def test_a_refused_head_adds_no_problem_about_the_number_of_heads(heads, tmp_path, capsys):
    # before, "weighting.strategy: a strategy for 0 head(s)" came too, pinned to line 1
    space = tmp_path / "heads.yaml"
    space.write_text(f"data: {{kind: digits, limit: 200}}\nheads: {heads}\nobjective: {{metric: val/acc_mean, mode: max}}\n")
    assert main(["validate", str(space)]) == 2
    err = capsys.readouterr().err
    assert "invalid (1 problem)" in err and ": heads" in err and "weighting" not in err


@pytest.mark.parametrize("argv", [
    ["train", "SPACE", "--config", ""],  # trained a drawn config instead
    ["train", "SPACE", "--checkpoint-dir", ""],  # wrote checkpoint.pt into the current folder
    ["report", "toy", "--out", ""],  # wrote to the default folder
    ["run", "SPACE", "--warm-start", ""],
    ["run", "SPACE", "--resume", ""],
    ["submit", "SPACE", "--address", "127.0.0.1:1", "--warm-start", ""],  # dropped from the job's command
])
def test_an_empty_option_value_is_refused_not_taken_for_no_option(argv, capsys):
    argv = [str(REPO / "spaces" / "digits.yaml") if a == "SPACE" else a for a in argv]
    assert main(argv) == 2
    assert "a non-empty value, but got ''" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["run", "SPACE", "--res"], ["train", "SPACE", "--epoch", "1"]])
def test_an_abbreviated_option_is_an_unknown_option(argv, capsys):
    # argparse took `--res` for --resume and `--epoch` for --epochs
    argv = [str(REPO / "spaces" / "digits.yaml") if a == "SPACE" else a for a in argv]
    assert main(argv) == 2
    assert f"unrecognized arguments: {' '.join(argv[2:])}" in capsys.readouterr().err


def test_validate_reports_every_problem_at_once(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("data: {kind: digits}\ntrain: {lr: -1, epochs: 0}\nobjective: {metric: val/loss, mode: up}\n")
    assert main(["validate", str(space)]) == 2
    _, err = capsys.readouterr()
    assert "invalid (4 problems)" in err
    for path in ("train.lr", "train.epochs", "objective.metric", "objective.mode"):
        assert f"{space}:" in err and f": {path}: " in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "an existing space file, but got a missing file"),
        ("data: {kind: digits\n", "valid YAML, but got a syntax error"),
        ("- data\n- objective\n", "a mapping of sections at the top level"),
        ("", "but got an empty document"),
    ],
    ids=["missing", "syntax", "list", "empty"],
)
def test_validate_unusable_files_exit_2_with_a_message(tmp_path, capsys, text, message):
    space = tmp_path / "s.yaml"
    if text is not None:
        space.write_text(text)
    assert main(["validate", str(space)]) == 2
    _, err = capsys.readouterr()
    assert message in err and "Traceback" not in err


def test_syntax_errors_name_the_line(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("data: {kind: digits}\nobjective:\n  metric: [val/acc_mean\n  mode: max\n")
    assert main(["validate", str(space)]) == 2
    _, err = capsys.readouterr()
    assert f"{space}:4:" in err or f"{space}:5:" in err


@pytest.mark.parametrize(("text", "message"), [
    # before: neither the column nor, for a tab, what the character was ("found character that ...")
    ("data:\n\tkind: digits\n", ":2: valid YAML, but got a syntax error at column 1 (a tab: YAML indents with "
                                  "spaces): "),
    ("name: x\ndata: {kind: digits\nheads: x\n", ":3: valid YAML, but got a syntax error at column 6: "),
])
def test_a_syntax_error_names_its_column_and_a_tab(tmp_path, capsys, text, message):
    space = tmp_path / "s.yaml"
    space.write_text(text)
    assert main(["validate", str(space)]) == 2
    assert f"{space}{message}" in capsys.readouterr().err


def test_a_character_yaml_refuses_is_one_line_naming_it(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("name: x\x00y\n")  # before: PyYAML's second line (`in "<unicode string>", position 7`) too
    assert main(["validate", str(space)]) == 2
    _, err = capsys.readouterr()
    (line,) = [line for line in err.splitlines() if "syntax error" in line]
    assert line.endswith("valid YAML, but got a syntax error: unacceptable character #x0000: control characters are "
                         "not allowed") and "position" not in err


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["train", "--help"]])
def test_help_has_examples(argv, capsys):
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert "usage:" in out
    if argv != ["--help"]:
        assert "examples:" in out and "python -m search" in out


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["validate"]) == 2


def test_commands_without_a_module_are_skipped(monkeypatch, capsys):
    import search.__main__ as entry

    monkeypatch.setattr(entry, "COMMANDS", ("validate", "not_written_yet", "train"))
    assert main(["--help"]) == 0
    out, _ = capsys.readouterr()
    assert "validate" in out and "train" in out and "not_written_yet" not in out
    assert main(["not_written_yet"]) == 2


def test_a_closed_pipe_ends_quietly(tmp_path: Path):
    # `python -m search validate SPACE | head -1`: the reader is gone before the dimensions are printed.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "search", "validate", str(REPO / "spaces" / "digits.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert stderr == ""


def test_the_process_ends_as_pythons_exit_does_without_the_teardown(tmp_path: Path):
    # cli() skips the interpreter's teardown (seconds with torch, Ray and MLflow loaded), not
    # what an exit must still do: a running thread finishes, atexit handlers run, the exit
    # status and buffered output come through.
    marker = tmp_path / "thread-finished"
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {kind: digits}\ntrain: {lr: -1}\n")
    code = (
        "import atexit, sys, threading\n"
        "from pathlib import Path\n"
        "from search.__main__ import cli\n"
        # A thread that ends only once the main thread is done: Python's exit waits for it.
        "main = threading.main_thread()\n"
        f"threading.Thread(target=lambda: (main.join(), Path({str(marker)!r}).write_text('ok'))).start()\n"
        "atexit.register(lambda: print('atexit handler ran'))\n"
        f"sys.argv = ['search', 'validate', {str(bad)!r}]\n"
        "cli()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "train.lr" in done.stderr + done.stdout
    assert done.stdout.rstrip().endswith("atexit handler ran")
    assert marker.read_text() == "ok"


def test_a_python_without_losstune_s_dependencies_gets_a_message_not_a_traceback(tmp_path: Path):
    # The system's Python run in a checkout (`python -m search run ...` with .venv not activated):
    # a ModuleNotFoundError traceback from deep inside the driver, exit 1.
    blocked = "import sys; sys.modules['ray'] = None; from search.__main__ import cli; cli()"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "run", str(REPO / "spaces" / "digits.yaml"), "--storage", str(tmp_path / "runs"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"a Python with losstune's dependencies, but got {sys.executable}, which has no module 'ray'" \
        in done.stderr


def test_a_job_s_python_without_the_dependencies_is_named_before_the_space_is_checked(tmp_path: Path):
    # A Ray job on a head whose `ray start` ran from .venv without activating it runs the PATH's
    # python: before, the job failed with "data.kind digits needs scikit-learn installed"
    blocked = "import sys; sys.modules['sklearn'] = None; from search.__main__ import cli; cli()"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "run", str(REPO / "spaces" / "digits.yaml"), "--storage", str(tmp_path / "runs"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), JOB_ENV: "losstune-x-1"}, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: a Python with losstune's dependencies, but got {sys.executable}, which has no module 'sklearn': "
        f"run losstune with the Python it is installed in, or install it there (`make setup`) (a submitted search "
        f"runs the `python` first on the PATH of the cluster's Ray: start Ray with losstune's environment "
        f"activated)\n")
    assert not (tmp_path / "runs").exists()


def test_the_dependencies_checked_at_start_are_the_package_s():
    import re
    import tomllib

    from search.__main__ import DEPENDENCIES

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(DEPENDENCIES) == {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in declared}


def test_a_missing_module_of_losstune_s_own_stays_a_traceback(monkeypatch):
    import search.commands.validate as validate

    def broken(args):
        raise ModuleNotFoundError("No module named 'search.gone'", name="search.gone")

    monkeypatch.setattr(validate, "run", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["validate", str(REPO / "spaces" / "digits.yaml")])
