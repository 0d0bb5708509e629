"""Fixtures of the trainables tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests, restored after it: train.threads sets torch's
    process-wide thread count, and one thread keeps small ops fast on a busy 2-core box, where more
    threads than free cores make them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Stop(Exception):
    pass


@pytest.fixture
def resume_after():
    """``resume_after(flat, checkpoint_dir, epoch)``: train ``flat`` until ``epoch`` is reported,
    stop there (as a killed trial would, its checkpoint written), resume from the checkpoint; the
    reports of the resumed run and its final metrics."""
    from trainables.train import train

    def run(flat, checkpoint_dir, epoch):
        def stop_after(metrics):
            if metrics["epoch"] == epoch:
                raise _Stop

        with pytest.raises(_Stop):
            train(flat, report=stop_after, checkpoint_dir=checkpoint_dir)
        reports = []
        return reports, train(flat, report=reports.append, checkpoint_dir=checkpoint_dir)

    return run
