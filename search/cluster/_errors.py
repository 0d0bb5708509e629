"""The one error of cluster use (exit 2)."""

from __future__ import annotations

__all__ = ["ClusterError"]


class ClusterError(Exception):
    """The cluster cannot be used as asked: ``rule`` says what was expected, ``value`` what was found."""

    def __init__(self, rule: str, value: str) -> None:
        super().__init__(f"{rule}, but got {value}")
        self.rule = rule
        self.value = value
