"""A trial's scratch directory: removed when the trial ends, and by a later trial when its owner was
killed before it could remove it (Ray ends a killed driver's workers without unwinding them)."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from search.driver._scratch import SCRATCH_PREFIX, remove_orphans, trial_scratch

# A trial in its own process: makes its scratch directory, writes a checkpoint there, says where,
# then waits until it is killed (or its stdin closes).
_OWNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from search.driver._scratch import trial_scratch
    with trial_scratch(root=sys.argv[1]) as work:
        (Path(work) / "checkpoint.pt").write_bytes(b"x" * 1000)
        print(work, flush=True)
        sys.stdin.read()
""")


def _start_owner(root: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", _OWNER, str(root)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def test_a_scratch_directory_is_removed_when_its_trial_ends_or_raises(tmp_path: Path) -> None:
    with trial_scratch(root=str(tmp_path)) as work:
        (Path(work) / "checkpoint.pt").write_bytes(b"x")
    assert not Path(work).exists()
    with pytest.raises(RuntimeError), trial_scratch(root=str(tmp_path)) as work:
        raise RuntimeError("diverged")
    assert not Path(work).exists()


def test_the_next_trial_removes_what_a_killed_trial_left_and_nothing_else(tmp_path: Path) -> None:
    killed, orphan = _start_owner(tmp_path)
    alive, in_use = _start_owner(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert (orphan / "checkpoint.pt").exists()  # what the kill leaves without this module
        (tmp_path / f"{SCRATCH_PREFIX}being-made").mkdir()  # no lock file yet: its owner is making it
        (tmp_path / "someone-else").mkdir()

        with trial_scratch(root=str(tmp_path)) as work:
            assert not orphan.exists()
            assert (in_use / "checkpoint.pt").exists()  # its owner still runs
            assert remove_orphans(root=str(tmp_path)) == []  # nor is the new one (this process's) taken
            assert Path(work).is_dir()
        assert (tmp_path / f"{SCRATCH_PREFIX}being-made").is_dir()
        assert (tmp_path / "someone-else").is_dir()
    finally:
        alive.stdin.close()
        alive.wait(timeout=30)
    assert not in_use.exists()  # its owner removed it when it ended


def test_where_the_file_system_refuses_locks_a_trial_still_runs_and_its_directory_is_not_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.driver import _scratch

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_scratch.fcntl, "flock", no_locks)
    with trial_scratch(root=str(tmp_path)) as work:
        (Path(work) / "checkpoint.pt").write_bytes(b"x")
        assert remove_orphans(root=str(tmp_path)) == []
        assert (Path(work) / "checkpoint.pt").exists()
    assert not Path(work).exists()
