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
