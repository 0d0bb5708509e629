"""A trial's scratch directory: removed when the trial ends, and by a later trial when its owner was
killed before it could remove it (Ray ends a killed driver's workers without unwinding them)."""

from __future__ import annotations

import errno
import glob
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from search.driver import _scratch
from search.driver._scratch import remove_orphans, scratch_prefix, trial_scratch

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


def _scratch_directories(root: Path) -> set[Path]:
    return set(root.glob(glob.escape(scratch_prefix()) + "*"))


def test_a_trial_gets_an_empty_directory_removed_when_it_ends_or_raises(tmp_path: Path) -> None:
    with trial_scratch(root=str(tmp_path)) as work:
        assert os.listdir(work) == []  # what Tune copies as the checkpoint: no lock file in it
        (Path(work) / "checkpoint.pt").write_bytes(b"x")
    assert _scratch_directories(tmp_path) == set()
    with pytest.raises(RuntimeError), trial_scratch(root=str(tmp_path)):
        raise RuntimeError("diverged")
    assert _scratch_directories(tmp_path) == set()


def test_the_next_trial_removes_what_a_killed_trial_left_and_nothing_else(tmp_path: Path) -> None:
    killed, orphan = _start_owner(tmp_path)
    alive, in_use = _start_owner(tmp_path)
    with killed, alive:
        try:
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
            assert (orphan / "checkpoint.pt").exists()  # what the kill leaves without this module
            being_made = tmp_path / f"{scratch_prefix()}being-made"  # no lock file yet
            being_made.mkdir()
            other_host = tmp_path / f"losstune-trial-not-{scratch_prefix()[len('losstune-trial-'):]}x"
            other_host.mkdir()
            (other_host / ".owner.lock").touch()  # free, but its host's lock is not ours to judge
            # host `<ours>-2`, whose names start with this host's prefix (before: removed)
            longer_host = tmp_path / f"{scratch_prefix()}2-k3j9x0ab"
            longer_host.mkdir()
            (longer_host / ".owner.lock").touch()
            other_tool = tmp_path / "someone-else"
            other_tool.mkdir()

            with trial_scratch(root=str(tmp_path)) as work:
                assert not orphan.parent.exists()
                assert (in_use / "checkpoint.pt").exists()  # its owner still runs
                assert remove_orphans(root=str(tmp_path)) == []  # nor is this process's own taken
                assert Path(work).is_dir()
            assert being_made.is_dir() and other_host.is_dir() and other_tool.is_dir() and longer_host.is_dir()
        finally:
            alive.stdin.close()
            alive.wait(timeout=30)
    assert not in_use.parent.exists()  # its owner removed it when it ended


class _NoLocks:
    """``fcntl`` of a file system that refuses locks (some network mounts)."""

    LOCK_EX, LOCK_NB = _scratch.fcntl.LOCK_EX, _scratch.fcntl.LOCK_NB

    @staticmethod
    def flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")


def test_where_the_file_system_refuses_locks_a_trial_still_runs_and_its_directory_is_never_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scratch, "fcntl", _NoLocks)
    with trial_scratch(root=str(tmp_path)) as work:
        (Path(work) / "checkpoint.pt").write_bytes(b"x")
        monkeypatch.undo()  # a sweeper where locks work must not take it either
        assert remove_orphans(root=str(tmp_path)) == []
        assert (Path(work) / "checkpoint.pt").exists()
    assert _scratch_directories(tmp_path) == set()


# Restoring a checkpoint from a file system that is not local (as s3:// is): the trial copies its
# file into the scratch directory, then says so, or stalls reading it (argv[2] == "stall") until
# it is killed.
_RESTORER = textwrap.dedent("""
    import sys, time
    import pyarrow.fs
    from fsspec.implementations.local import LocalFileSystem
    from ray.train import Checkpoint
    from search.driver._scratch import trial_scratch
    from search.driver._trainable import restore_file

    class Remote(LocalFileSystem):
        def _open(self, path, mode="rb", **kwargs):
            if "r" in mode and sys.argv[2] == "stall":
                print("reading", flush=True)
                time.sleep(600)
            return super()._open(path, mode, **kwargs)

    checkpoint = Checkpoint(sys.argv[1], filesystem=pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(Remote())))
    with trial_scratch() as work:
        restore_file(checkpoint, name="checkpoint.pt", into=work)
        restore_file(checkpoint, name="absent.pt", into=work)
        print(sorted((name, open(f"{work}/{name}", "rb").read()) for name in __import__("os").listdir(work)))
""")


def _restorer(checkpoint: Path, temp: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _RESTORER, str(checkpoint), mode], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(temp)})


def test_a_checkpoint_on_remote_storage_is_copied_straight_into_the_scratch_directory(tmp_path: Path) -> None:
    checkpoint, temp = tmp_path / "checkpoint_000001", tmp_path / "tmp"
    checkpoint.mkdir()
    temp.mkdir()
    (checkpoint / "checkpoint.pt").write_bytes(b"weights")
    restored = _restorer(checkpoint, temp, "copy")
    out, _ = restored.communicate(timeout=60)
    assert restored.returncode == 0 and out.strip() == str([("checkpoint.pt", b"weights")])
    assert list(temp.iterdir()) == []

    # A worker killed during the download leaves only its scratch directory, which the next
    # trial removes (Ray's as_directory would leave its own checkpoint_tmp_* for good).
    stalled = _restorer(checkpoint, temp, "stall")
    with stalled:
        try:
            assert stalled.stdout.readline().strip() == "reading"
            stalled.send_signal(signal.SIGKILL)
            stalled.wait(timeout=30)
        finally:
            stalled.kill()
    assert [p.name.startswith(scratch_prefix()) for p in temp.iterdir()] == [True]
    remove_orphans(root=str(temp))
    assert list(temp.iterdir()) == []
