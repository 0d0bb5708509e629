"""Hostile or broken space files: each fails fast with exit status 2, a bounded message and no traceback.

The files are written by the tests (a 2 MiB file, a FIFO and nested aliases are better made than
committed). Each case runs ``validate`` and ``run`` in process; a few also run in a subprocess,
where a traceback, a hang or a memory blow-up would show for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import search._ray
from search.__main__ import main
from search.space import MAX_DEPTH, MAX_SPACE_BYTES, MAX_VALUES

REPO = Path(__file__).resolve().parents[2]
VALID_TAIL = "data: {kind: digits, limit: 200}\nobjective: {metric: val/acc_mean, mode: max}\n"
SECONDS = 15.0  # per command, in process; the slowest case takes about 2 s on 2 cores
LONGEST_LINE = 600  # characters of any line of the message


def _alias_bomb(path: Path) -> None:
    # 9 levels of 10 aliases each: 10^9 values once expanded, in about 500 bytes.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path.write_text("\n".join(lines) + "\nname: *a8\n")


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it for reading would block until a writer comes


def _block_nesting(levels: int) -> str:
    return "name:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(levels)) + VALID_TAIL


# (case, how to write the file, text the message must contain)
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("alias_bomb", _alias_bomb, f"at most {MAX_VALUES:,} values, aliases expanded"),
    ("recursive_alias", _text("name: &a [*a]\n" + VALID_TAIL), "an alias to a value defined before it"),
    ("deep_flow_nesting", _text("name: " + "[" * 20_000 + "]" * 20_000 + "\n"), "valid YAML"),
    ("deep_block_nesting", _text(_block_nesting(MAX_DEPTH + 8)), f"at most {MAX_DEPTH} levels of nested"),
    ("over_size", _text("name: x\n" + "#" * (2 * MAX_SPACE_BYTES) + "\n"), "a space file of at most 1 MiB"),
    ("many_values", _text("heads:\n" + "".join(f"  h{i}: {{weight: 1.0}}\n" for i in range(30_000))), "values"),
    ("huge_integer", _text("search: {num_samples: " + "9" * 5000 + "}\n" + VALID_TAIL), "cannot be read as a int"),
    ("impossible_date", _text("name: 2020-13-45\n" + VALID_TAIL), "cannot be read as a timestamp"),
    ("not_utf8", lambda p: p.write_bytes(b"name: \xff\xfe\n"), "a UTF-8 text file, but got byte 6"),
    ("two_documents", _text("name: a\n---\nname: b\n"), "valid YAML"),
    ("fifo", _fifo, "a regular file, but got a device, FIFO or socket"),
    ("directory", lambda p: p.mkdir(), "a space file, but got a directory"),
    ("absurd_num_samples", _text(VALID_TAIL + "search: {num_samples: 1000000000}\n"), "in [1, 100000]"),
    ("absurd_hidden_range", _text(VALID_TAIL + "model: {hidden: {int: [1, 1000000000]}}\n"), "in [1, 65536]"),
    ("absurd_epochs", _text(VALID_TAIL + "train: {epochs: 1.0e12}\n"), "train.epochs"),
    ("megabyte_string", _text("name: '" + "x" * 900_000 + "'\n" + VALID_TAIL), "name: a search name"),
    ("thousands_of_problems", _text("".join(f"key{i}: 1\n" for i in range(3000)) + VALID_TAIL), "... and "),
    ("escaping_name", _text("name: ../../escaped\n" + VALID_TAIL), "name: a search name"),
    # ints too long for a float (but short enough for YAML): the bounds checks converted them
    ("long_int_setting", _text(VALID_TAIL + "train: {epochs: 1" + "0" * 400 + "}\n"), "train.epochs: an integer in"),
    ("long_int_for_a_number", _text(VALID_TAIL + "train: {lr: 1" + "0" * 400 + "}\n"), "train.lr: a number > 0"),
    ("long_int_range_bound", _text(VALID_TAIL + "model: {hidden: {int: [1, 1" + "0" * 400 + "]}}\n"), "model.hidden.int"),
    ("long_int_uniform_bound", _text(VALID_TAIL + "train: {lr: {uniform: [0.1, 1" + "0" * 400 + "]}}\n"),
     "train.lr.uniform"),
    # names from the file shown in backticks were neither shortened nor escaped (a 5138-character
    # line, a raw NUL that made grep see binary)
    ("long_option_name", _text(VALID_TAIL + "heads: {digit: {loss: " + "x" * 5000 + "}}\n"), "but got `xxxxxxxx"),
    ("long_unknown_key", _text(VALID_TAIL + "train: {" + "y" * 900 + ": 1}\n"), "yyy...: a key of `train`"),
    ("control_character_in_a_name", _text(VALID_TAIL + 'heads: {digit: {loss: "ce\\u0000"}}\n'), "but got `ce\\u0000`"),
    ("long_int_energy_norm", _text(VALID_TAIL + "energy: {p: 1" + "0" * 40 + "}\n"), "energy.p: an integer in [1, 64]"),
]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs):
        raise AssertionError("Ray must not be started for invalid input")

    monkeypatch.setattr(search._ray, "connect", refuse)


def _check_message(err: str, expected: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert expected in err, err[:3000]
    assert ", but got " in err
    assert max(len(line) for line in err.splitlines()) <= LONGEST_LINE


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("case", "write", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_files_fail_fast_with_exit_2_and_a_bounded_message(
    case, write, expected, command, no_ray, tmp_path: Path, capsys
):
    path = tmp_path / f"{case}.yaml"
    write(path)
    extra = ["--storage", str(tmp_path / "runs")] if command == "run" else []
    started = time.monotonic()
    assert main([command, str(path), *extra]) == 2
    assert time.monotonic() - started < SECONDS
    out, err = capsys.readouterr()
    assert out == ""
    _check_message(err, expected)
    assert not (tmp_path / "runs").exists()


def test_special_files_are_refused_without_reading_them(no_ray, capsys):
    started = time.monotonic()
    assert main(["validate", "/dev/zero"]) == 2
    assert time.monotonic() - started < SECONDS
    _check_message(capsys.readouterr().err, "/dev/zero: a regular file, but got a device, FIFO or socket")


def test_thousands_of_problems_list_fifty_and_count_the_rest(tmp_path: Path, capsys):
    path = tmp_path / "many.yaml"
    path.write_text("".join(f"key{i}: 1\n" for i in range(3000)) + VALID_TAIL)
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{path}: invalid (3000 problems)"
    assert len(lines) == 1 + 50 + 1 and lines[-1] == "  ... and 2950 more"


# The child reports its own peak memory (VmHWM: since its exec; ru_maxrss would count the forked
# test process it started as).
_CHILD = """
import re, sys
from search.__main__ import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = re.search(r"VmHWM:\\s+(\\d+)", status.read()).group(1)
print("peak_rss_kib=" + peak, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(("case", "command"), [("alias_bomb", "validate"), ("deep_flow_nesting", "run")])
def test_in_a_real_process_hostile_files_exit_2_quickly_in_little_memory(case: str, command: str, tmp_path: Path):
    write, expected = next((w, e) for c, w, e in CASES if c == case)
    path = tmp_path / f"{case}.yaml"
    write(path)
    extra = ["--storage", str(tmp_path / "runs")] if command == "run" else []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, command, str(path), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr[-3000:]
    *message, peak = result.stderr.splitlines()
    _check_message("\n".join(message), expected)
    # The interpreter with torch and the validator: about 250 MB (the alias bomb took 1.2 GB).
    assert int(peak.removeprefix("peak_rss_kib=")) < 600_000
