"""Shared fixtures. Only the driver tests use Ray: one local instance for the whole session."""

from __future__ import annotations

import os

import pytest

# Ray reads this when it is first imported (test modules import it at collection): a local
# instance then advertises and binds 127.0.0.1 instead of the machine's public address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs, no dashboard) for every in-process driver test."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_config=ray.LoggingConfig(log_level="WARNING"),
    )
    yield
    ray.shutdown()
