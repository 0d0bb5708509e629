"""losstune's Ray Jobs: what a submitted search's job records about itself, finding one, following
its logs, and the exit status its driver (``search run``) ended with."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from typing import Any

from search import exit_codes
from search._shell import search_command
from search.cluster._client import Cluster, quiet_logger
from search.cluster._errors import ClusterError

__all__ = [
    "META_NAME",
    "META_SPACE",
    "META_SPACE_HERE",
    "META_STORAGE",
    "META_TRACKING_URI",
    "FollowLost",
    "ended_line",
    "exit_code",
    "find_job",
    "follow",
    "follow_command",
    "follow_to_end",
    "job_tracking_uri",
    "our_jobs",
    "submitted_space",
]

# The job's metadata (Ray keeps it with the job): what `search jobs` lists and `stop` suggests.
META_SPACE = "losstune.space"
META_NAME = "losstune.name"
META_STORAGE = "losstune.storage"
META_TRACKING_URI = "losstune.tracking_uri"  # its password left out (search.tracking.redact_uri)
# The space file where it was submitted from (absolute; META_SPACE is the job's own copy, relative
# to its working directory): what a resubmit names.
META_SPACE_HERE = "losstune.space_submitted"


class FollowLost(ClusterError):
    """The connection to the cluster broke while a job's log was followed: the job may well still
    be running, and following it again picks its log up."""

    def __init__(self, *, address: str, job_id: str, reason: str) -> None:
        super().__init__(
            f"job {job_id}'s log followed from the cluster at {address} until the job ends",
            f"the connection lost ({reason}); the job may still be running: follow it again with "
            f"{follow_command(job_id=job_id, address=address)}",
        )
        self.address = address
        self.job_id = job_id
        self.reason = reason


def follow_command(*, job_id: str, address: str) -> str:
    return search_command("logs", job_id, "--address", address, "--follow")


def our_jobs(cluster: Cluster) -> list[Any]:
    """The cluster's jobs that ``search submit`` started, oldest first."""
    jobs = [j for j in cluster.jobs() if j.submission_id and META_SPACE in (j.metadata or {})]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def submitted_space(job: Any) -> str:
    """The space file a job was submitted from, as a resubmit names it (a job submitted before
    losstune recorded it: the job's own copy, relative to its working directory)."""
    meta = job.metadata or {}
    return meta.get(META_SPACE_HERE) or meta.get(META_SPACE, "SPACE")


def job_tracking_uri(job: Any) -> str:
    """The tracking URI a job's search logs to: from its command, the one place that keeps the
    password (the metadata's is redacted); the metadata's for a command of another form."""
    try:
        words = shlex.split(job.entrypoint or "")
        return words[words.index("--tracking-uri") + 1]
    except (ValueError, IndexError):
        return (job.metadata or {}).get(META_TRACKING_URI, "")


def find_job(cluster: Cluster, job_id: str) -> Any:
    for job in cluster.jobs():
        if job.submission_id == job_id:
            return job
    raise ClusterError(f"the id of a job on the cluster at {cluster.address} (`search jobs` lists them)", repr(job_id))


def follow(cluster: Cluster, job_id: str, write: Callable[[str], Any]) -> None:
    """Hand the job's log to ``write`` as it grows, until the job ends; ``FollowLost`` if the
    connection breaks first."""
    import aiohttp

    async def tail() -> None:
        async for chunk in cluster.client.tail_job_logs(job_id):
            write(chunk)

    # The SDK logs the closing of its log stream at INFO; the caller says how the job ended.
    try:
        with quiet_logger("ray.dashboard.modules.job.sdk"):
            asyncio.run(tail())
    except (RuntimeError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        # RuntimeError: Ray's SDK on a stream closed before the job ended, or a WebSocket error
        raise FollowLost(address=cluster.address, job_id=job_id, reason=f"{type(error).__name__}: {error}") from None


def follow_to_end(cluster: Cluster, job_id: str, write: Callable[[str], Any]) -> Any:
    """``follow`` the job, then the job as it ended; ``FollowLost`` where the connection broke, or
    the log stream ended and the job cannot be read or has not ended (its head shutting down)."""
    follow(cluster, job_id, write)
    try:
        job = find_job(cluster, job_id)
    except ClusterError as error:
        raise FollowLost(address=cluster.address, job_id=job_id, reason=error.value) from None
    if not job.status.is_terminal():
        raise FollowLost(address=cluster.address, job_id=job_id, reason=f"its log ended while it was {job.status.value}")
    return job


def ended_line(job: Any) -> str:
    """How a followed job ended, for the line after its log."""
    return f"job {job.submission_id}: {job.status.value} (exit status {exit_code(job)})"


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
