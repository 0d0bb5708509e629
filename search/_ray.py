"""Start Ray once for a search: a local instance bound to 127.0.0.1, or an existing cluster.

Ray is imported inside ``connect``: whether Ray advertises (and binds its servers to) the
loopback address or the machine's public address is decided from the environment when
``ray`` is first imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["RayHandle", "connect", "resolve_address"]

# On Linux Ray otherwise picks the public interface for its node address, so GCS, raylet and
# workers listen on every interface; with this set they listen on 127.0.0.1 only.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayHandle:
    """How this process reached Ray; ``owned``: started here, so ``close`` shuts it down."""

    owned: bool
    address: str | None

    def close(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()


def resolve_address(address: str | None) -> str | None:
    """The cluster to join (``address``, else ``RAY_ADDRESS``), or None for a local instance.

    Call before anything imports ``ray``: for a local instance it makes Ray use 127.0.0.1."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    return address


def connect(
    *, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, dashboard: bool = False
) -> RayHandle:
    """Join ``address`` (or ``RAY_ADDRESS``) when given; reuse an instance this process already
    runs; otherwise start a local one (loopback, dashboard off unless asked)."""
    address = resolve_address(address)
    import ray

    if ray.is_initialized():
        return RayHandle(owned=False, address=None)
    # WARNING in the workers too: Ray logs a line per trial checkpoint at INFO.
    quiet = ray.LoggingConfig(log_level="WARNING")
    if address is not None:
        ray.init(address=address, logging_config=quiet)
        return RayHandle(owned=True, address=address)
    # "local": never attach to a cluster started earlier by `ray start` unless asked to.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        logging_config=quiet,
    )
    return RayHandle(owned=True, address=None)
