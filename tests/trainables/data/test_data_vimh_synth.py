import functools
import io
import os

import numpy as np
import pytest

import trainables.data._vimh_dataset as vimh_dataset
from trainables.data import DEFAULT_VIMH_PATH, DataError, DataSpec, describe_dataset, load_dataset
from trainables.data._vimh_synth import materialise
from trainables.data.vimh import (INFO_FILE, SPLIT_FILES, ensure_default_vimh, generate_vimh, main,
                                  progress_bar, read_vimh_batch, read_vimh_info, render)

FILES = (*SPLIT_FILES, INFO_FILE)


def _bytes(directory):
    return {name: (directory / name).read_bytes() for name in FILES}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    kwargs = dict(samples=24, params=("note_number", "note_velocity", "filter_cutoff"), size=(16, 16))
    a = generate_vimh(tmp_path / "a", seed=3, **kwargs)
    b = generate_vimh(tmp_path / "b", seed=3, **kwargs)
    c = generate_vimh(tmp_path / "c", seed=4, **kwargs)
    assert _bytes(a) == _bytes(b)
    assert _bytes(a)["train_batch"] != _bytes(c)["train_batch"]
    info = read_vimh_info(a)
    train = read_vimh_batch(a / "train_batch", info=info)
    test = read_vimh_batch(a / "test_batch", info=info)
    assert (len(train.images), len(test.images)) == (19, 5)  # 80 / 20
    assert info.parameter_names == ("note_number", "note_velocity", "filter_cutoff")
    assert info.ranges["filter_cutoff"] == (200.0, 3800.0)


def test_refuses_non_empty_directory_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="output directory must be absent or empty"):
        generate_vimh(out, samples=4, seed=0)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    generate_vimh(out, samples=4, seed=0, force=True)
    assert (out / "keep.txt").read_text() == "mine" and all((out / name).is_file() for name in FILES)


def _centroid_row(image):
    rows = np.arange(image.shape[0])[:, None]
    weight = image.astype(float)
    return (rows * weight).sum() / weight.sum()


def test_rendered_images_follow_the_parameters():
    notes = np.array([40.0, 80.0])
    images, _ = render({"note_number": notes, "note_velocity": np.array([100.0, 100.0])}, size=(32, 32))
    assert images.shape == (2, 1, 32, 32) and images.dtype == np.uint8
    # higher pitch -> energy higher up (row 0 is the top, highest frequency)
    assert _centroid_row(images[1, 0]) < _centroid_row(images[0, 0]) - 2
    loud, _ = render({"note_velocity": np.array([20.0, 120.0])}, size=(32, 32))
    assert loud[1].mean() > loud[0].mean() + 10
    bright, _ = render({"filter_cutoff": np.array([300.0, 3500.0])}, size=(32, 32))
    assert bright[1, 0, :10].mean() > bright[0, 0, :10].mean() + 10  # more high-frequency content


def test_cli_exit_codes_and_progress(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--out", str(out), "--samples", "6", "--seed", "1", "--size", "8x12"]) == 0
    assert "6/6" in capsys.readouterr().err
    assert read_vimh_info(out).height == 8 and read_vimh_info(out).width == 12
    # a refused directory is invalid input: exit 2, as the search CLI says it (before: 1)
    assert main(["generate", "--out", str(out), "--samples", "6", "--seed", "1"]) == 2
    assert "output directory must be absent or empty" in capsys.readouterr().err
    for bad in (["--samples", "0"], ["--samples", "x"], ["--params", "note_number,bogus"], ["--size", "32"],
                ["--seed", "-3"], ["--size", "2x2"]):
        args = ["generate", "--out", str(tmp_path / "never"), "--samples", "4", "--seed", "0", *bad]
        assert main(args) == 2
        assert "error:" in capsys.readouterr().err
    assert main(["generate", "--samples", "4", "--seed", "0"]) == 2
    assert not (tmp_path / "never").exists()


def test_the_fewest_samples_generated_make_a_set_that_loads(tmp_path, capsys):
    # 2 samples made a set that could not be loaded: 1 to train, none left to validate
    args = ["generate", "--out", str(tmp_path / "two"), "--samples", "2", "--seed", "0", "--size", "8x8"]
    assert main(args) == 2
    assert "samples must be an integer >= 3 (two to train, one of them to validate, one to test)" in capsys.readouterr().err
    assert main(["generate", "--out", str(tmp_path / "three"), "--samples", "3", "--seed", "0", "--size", "8x8"]) == 0
    data = load_dataset(DataSpec(path=str(tmp_path / "three"), val_fraction=0.1))
    assert (len(data.train), len(data.val), len(data.test)) == (1, 1, 1)


def test_describe_default_does_not_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    heads = describe_dataset(DataSpec())
    assert list(heads) == ["note_number", "note_velocity", "filter_cutoff"]
    assert all(h.num_classes == 256 and h.ordinal and h.unit_range for h in heads.values())
    assert not (tmp_path / "data").exists()


def test_default_is_generated_on_first_use_and_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(vimh_dataset, "ensure_default_vimh", functools.partial(ensure_default_vimh, samples=30))
    dataset = load_dataset(DataSpec(val_fraction=0.25))
    target = tmp_path / DEFAULT_VIMH_PATH
    assert len(dataset.train) + len(dataset.val) == 24 and len(dataset.test) == 6
    assert list(dataset.heads) == ["note_number", "note_velocity", "filter_cutoff"]
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temp dir left over
    (tmp_path / "plain").mkdir()
    assert target.stat().st_mode == (tmp_path / "plain").stat().st_mode  # not a private 0700 temp dir
    before = _bytes(target)
    os.utime(target / "train_batch", (1, 1))
    load_dataset(DataSpec())
    assert _bytes(target) == before and (target / "train_batch").stat().st_mtime == 1
    # an absolute path ending in data/vimh-default is the default too
    assert describe_dataset(DataSpec(path=str(target))) == dataset.heads


def test_partial_default_directory_is_an_error_and_kept(tmp_path):
    target = tmp_path / "data" / "vimh-default"
    target.mkdir(parents=True)
    (target / "train_batch").write_bytes(b"precious")
    with pytest.raises(DataError, match="but got no test_batch, vimh_dataset_info.json.*never overwritten"):
        load_dataset(DataSpec(path=str(target)))
    assert (target / "train_batch").read_bytes() == b"precious"
    assert sorted(p.name for p in target.iterdir()) == ["train_batch"]


def test_losing_a_race_keeps_the_winners_data(tmp_path):
    target = tmp_path / "data" / "vimh-default"

    def build(scratch):
        generate_vimh(scratch, samples=4, seed=1, force=True)
        generate_vimh(target, samples=4, seed=2)  # another process publishes first

    materialise(target, build)
    assert _bytes(target) == _bytes(generate_vimh(tmp_path / "seed2", samples=4, seed=2))
    assert sorted(p.name for p in target.parent.iterdir()) == ["vimh-default"]  # our scratch dir is gone


def test_generating_the_default_reports_progress_to_the_caller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(vimh_dataset, "ensure_default_vimh", functools.partial(ensure_default_vimh, samples=30))
    calls = []
    load_dataset(DataSpec(), progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (30, 30) and all(total == 30 for _, total in calls)
    calls.clear()
    load_dataset(DataSpec(), progress=lambda done, total: calls.append((done, total)))
    assert calls == []  # there already: nothing generated, nothing reported


def test_progress_in_a_pipe_is_a_line_per_tenth_and_on_a_terminal_a_bar():
    class Pipe(io.StringIO):
        def isatty(self) -> bool:
            return False

    class Terminal(Pipe):
        def isatty(self) -> bool:
            return True

    pipe, terminal = Pipe(), Terminal()
    for stream in (pipe, terminal):
        update = progress_bar(stream, label="generating x", width=10)
        for done in range(0, 101, 5):
            update(done, 100)
    assert pipe.getvalue().splitlines() == [f"generating x: {d}/100" for d in range(0, 101, 10)]
    assert terminal.getvalue().count("\r") == 21 and terminal.getvalue().endswith("[##########] 100/100\n")
