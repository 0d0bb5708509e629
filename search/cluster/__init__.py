"""A search on a Ray cluster: reaching it through its Jobs API (with the token Ray asks for),
what a submitted search ships, and the checks that its storage and data reach every node.

Imported by ``search submit``, ``jobs``, ``logs``, ``stop`` and by ``search run`` on a cluster;
Ray's Jobs SDK is imported only when a cluster is contacted.
"""

from search.cluster._auth import TOKEN_SOURCES, Token, TokenError, find_token
from search.cluster._autoscaler import (
    BOOTSTRAP_CONFIG,
    NodeType,
    adds_nodes,
    check_trial_fits,
    config_node_types,
    read_node_types,
    wait_adds_nodes,
)
from search.cluster._checks import alive_nodes, check_paths_on_every_node, check_shared_storage
from search.cluster._client import Cluster, JobsApiError, NodeInfo, connect, dashboard_address
from search.cluster._errors import ClusterError
from search.cluster._jobs import (
    META_NAME,
    META_SPACE,
    META_SPACE_HERE,
    META_STORAGE,
    META_TRACKING_URI,
    FollowLost,
    ended_line,
    exit_code,
    find_job,
    follow,
    follow_command,
    follow_to_end,
    job_tracking_uri,
    our_jobs,
    submitted_space,
)
from search.cluster._package import SHIPPED_PACKAGES, stage

__all__ = [
    "BOOTSTRAP_CONFIG",
    "JOB_ENV",
    "SUBMITTED_ADDRESS_ENV",
    "SUBMITTED_SPACE_ENV",
    "META_NAME",
    "META_SPACE",
    "META_SPACE_HERE",
    "META_STORAGE",
    "META_TRACKING_URI",
    "SHIPPED_PACKAGES",
    "TOKEN_SOURCES",
    "Cluster",
    "ClusterError",
    "FollowLost",
    "JobsApiError",
    "NodeInfo",
    "NodeType",
    "Token",
    "TokenError",
    "adds_nodes",
    "alive_nodes",
    "check_paths_on_every_node",
    "check_shared_storage",
    "check_trial_fits",
    "config_node_types",
    "connect",
    "dashboard_address",
    "ended_line",
    "exit_code",
    "find_job",
    "find_token",
    "follow",
    "follow_command",
    "follow_to_end",
    "job_tracking_uri",
    "our_jobs",
    "read_node_types",
    "stage",
    "submitted_space",
    "wait_adds_nodes",
]

# In a submitted search's environment: its Ray Job's submission id, which `search run` tags its
# MLflow parent run with (so `search jobs` can name the search a job runs).
JOB_ENV = "LOSSTUNE_RAY_JOB"
# ... and the space file's absolute path where it was submitted from, which the commands the
# search prints name (its own copy lies in the job's working directory on the cluster).
SUBMITTED_SPACE_ENV = "LOSSTUNE_SUBMITTED_SPACE"
# ... and the dashboard address it was submitted to, as the submitter reached it (a port forward,
# say), which the command that resumes it names.
SUBMITTED_ADDRESS_ENV = "LOSSTUNE_SUBMITTED_ADDRESS"
