"""losstune's Ray Jobs: what a submitted search's job records about itself, finding one, following
its logs, and the exit status its driver (``search run``) ended with."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from search import exit_codes
from search.cluster._client import Cluster
from search.cluster._errors import ClusterError

__all__ = ["META_NAME", "META_SPACE", "META_STORAGE", "META_TRACKING_URI", "exit_code", "find_job", "follow", "our_jobs"]

# The job's metadata (Ray keeps it with the job): what `search jobs` lists and `stop` suggests.
META_SPACE = "losstune.space"
META_NAME = "losstune.name"
META_STORAGE = "losstune.storage"
META_TRACKING_URI = "losstune.tracking_uri"


def our_jobs(cluster: Cluster) -> list[Any]:
    """The cluster's jobs that ``search submit`` started, oldest first."""
    jobs = [j for j in cluster.client.list_jobs() if j.submission_id and META_SPACE in (j.metadata or {})]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def find_job(cluster: Cluster, job_id: str) -> Any:
    for job in cluster.client.list_jobs():
        if job.submission_id == job_id:
            return job
    raise ClusterError(f"the id of a job on the cluster at {cluster.address} (`search jobs` lists them)", repr(job_id))


def follow(cluster: Cluster, job_id: str, write: Callable[[str], Any]) -> None:
    """Hand the job's log to ``write`` as it grows, until the job ends."""

    async def tail() -> None:
        async for chunk in cluster.client.tail_job_logs(job_id):
            write(chunk)

    # The SDK logs the closing of its log stream at INFO; the caller says how the job ended.
    sdk_logger = logging.getLogger("ray.dashboard.modules.job.sdk")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.WARNING)
    try:
        asyncio.run(tail())
    finally:
        sdk_logger.setLevel(level)


def exit_code(job: Any) -> int:
    """The exit status of ``search run`` in the job: its own (0, 1, 2, 130) when it ran; 130 for a
    stopped job (the search stays resumable); 1 when the job failed before its driver ran."""
    status = str(job.status.value if hasattr(job.status, "value") else job.status)
    if status == "SUCCEEDED":
        return exit_codes.OK
    if status == "STOPPED":
        return exit_codes.INTERRUPTED
    known = (exit_codes.FAILED, exit_codes.INVALID, exit_codes.INTERRUPTED)
    return job.driver_exit_code if job.driver_exit_code in known else exit_codes.FAILED
