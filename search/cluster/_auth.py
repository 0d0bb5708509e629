"""The token a Ray cluster with token authentication asks of every client (``ray start --head``
turns it on where a token exists, or with ``RAY_AUTH_MODE=token``; ``ray.init`` on by default for
a local instance).

Found the way Ray's own clients find it: ``RAY_AUTH_TOKEN`` (the token itself), else the file
``RAY_AUTH_TOKEN_PATH`` names, else ``~/.ray/auth_token`` (where ``ray get-auth-token --generate``
writes it; ``ray get-auth-token`` on the head prints it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from search.cluster._errors import ClusterError

__all__ = ["TOKEN_SOURCES", "Token", "TokenError", "find_token"]

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"
TOKEN_SOURCES = f"{TOKEN_ENV}, the file {TOKEN_PATH_ENV} names, or {DEFAULT_TOKEN_PATH}"


class TokenError(ClusterError):
    """A token file that cannot be read, an empty one, or a token no HTTP header can carry
    (``path``: the file, or the variable that held it)."""

    def __init__(self, path: str, reason: str, *, rule: str = "a readable file holding the cluster's token") -> None:
        super().__init__(rule, f"{path!r} ({reason})")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Token:
    value: str = ""
    source: str = ""  # where it was found, for messages

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def find_token(environ: Mapping[str, str] = os.environ) -> Token | None:
    """The token from the first source that has one, or None (the cluster may not ask for one)."""
    value = environ.get(TOKEN_ENV, "").strip()
    if value:
        return Token(_checked(value, TOKEN_ENV), TOKEN_ENV)
    named = environ.get(TOKEN_PATH_ENV)
    if named:
        return Token(_read(named), f"{TOKEN_PATH_ENV}={named}")
    default = Path(DEFAULT_TOKEN_PATH).expanduser()
    if default.is_file():
        return Token(_read(str(default)), str(default))
    return None


def _read(path: str) -> str:
    try:
        value = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as error:
        raise TokenError(path, error.strerror or str(error)) from None
    except UnicodeDecodeError:
        raise TokenError(path, "not UTF-8 text") from None
    if not value:
        raise TokenError(path, "the file is empty")
    return _checked(value, path)


def _checked(value: str, source: str) -> str:
    """``value``, unless it could not go into an HTTP header (the request would fail with a
    message that blames the cluster's address)."""
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in value):
        raise TokenError(source, "it holds spaces, line breaks or characters outside printable ASCII",
                         rule="a cluster token an HTTP header can carry")
    return value
