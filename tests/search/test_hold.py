"""search._hold: a process's hold on a lock file, in a folder other people may write."""

from __future__ import annotations

from pathlib import Path

import pytest

from search._hold import FileHold
from search.driver import RunLocation


def test_a_link_planted_where_the_lock_goes_is_refused_and_its_target_left_alone(tmp_path: Path):
    # before: the holder truncated the link's target and wrote its process into it
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = tmp_path / ".search.lock"
    lock.symlink_to(victim)
    with pytest.raises(OSError):
        FileHold(str(lock)).take()
    assert victim.read_text() == "precious"


def test_a_lock_that_is_no_regular_file_is_refused(tmp_path: Path):
    (tmp_path / ".search.lock").mkdir()
    with pytest.raises(OSError):
        FileHold(str(tmp_path / ".search.lock")).take()


def test_a_run_directory_file_is_not_written_through_a_planted_link(tmp_path: Path):
    location = RunLocation(str(tmp_path), "s")
    (tmp_path / "s").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "s" / ".summary.txt.tmp").symlink_to(victim)
    location.write_text("summary.txt", "the summary")
    assert victim.read_text() == "precious"  # the link was replaced, not followed
    assert (tmp_path / "s" / "summary.txt").read_text() == "the summary"


def test_the_search_s_record_with_its_store_s_password_is_readable_by_its_user_only(tmp_path: Path):
    # before: losstune.json, which holds the tracking URI whole, was created world-readable
    from search.driver._plan import META_FILE, write_meta

    location = RunLocation(str(tmp_path), "s")
    write_meta(location, {"search_id": "s-1", "tracking_uri": "http://alice:pw@127.0.0.1:1", "experiment": "s"})
    assert (tmp_path / "s" / META_FILE).stat().st_mode & 0o777 == 0o600
    location.write_text("best_config.yaml", "train.lr: 0.01\n")
    assert (tmp_path / "s" / "best_config.yaml").stat().st_mode & 0o077 != 0  # others as the umask says
