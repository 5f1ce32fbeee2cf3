"""Git remote URLs, and which GitHub repository one names (pure parsing, no git).

Only the GitHub connector needs these, so they are apart from ``github_config`` (the
``[github]`` table every command's configuration load validates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .github_config import DEFAULT_API_URL, valid_repository

_SCP = re.compile(r"^(?:(?P<user>[^@/\s]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>(?!/)[^\s]+)$")


@dataclass(frozen=True)
class RemoteUrl:
    host: str
    path: str  # ``owner/name`` candidate, ``.git`` and slashes stripped
    password: str | None = None  # credentials embedded in the URL (a secret to redact, never to use)
    username: str | None = None


def parse_remote_url(url: str) -> RemoteUrl | None:
    """Split a git remote URL (https, ssh://, scp-like ``git@host:owner/name``); None for a local path."""
    from urllib.parse import unquote, urlsplit

    url = url.strip()
    if "://" in url:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            return None
        if parts.scheme not in ("http", "https", "ssh", "git") or not host:
            return None
        return RemoteUrl(host.lower(), _repo_path(parts.path), unquote(parts.password) if parts.password else None,
                         unquote(parts.username) if parts.username else None)
    m = _SCP.fullmatch(url)
    if m is None or "/" in m.group("host"):
        return None
    return RemoteUrl(m.group("host").lower(), _repo_path(m.group("path")), None, m.group("user"))


def _repo_path(path: str) -> str:
    path = path.strip("/")
    return path[:-4] if path.endswith(".git") else path


def web_host(api_url: str) -> str:
    """The web host that goes with an API base: ``api.github.com`` → ``github.com``, GHE → its own host."""
    from urllib.parse import urlsplit

    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def web_origin(api_url: str) -> str:
    """``scheme://host[:port]`` of the web side (where git pushes): ``https://github.com`` for api.github.com."""
    from urllib.parse import urlsplit

    parts = urlsplit(api_url)
    host = web_host(api_url)
    port = f":{parts.port}" if parts.port and host != "github.com" else ""
    return f"{parts.scheme or 'https'}://{host}{port}"


def repository_from_remote(url: str, api_url: str = DEFAULT_API_URL) -> str | None:
    """``owner/name`` when ``url`` points at the GitHub (or GHE) host that ``api_url`` serves."""
    remote = parse_remote_url(url)
    if remote is None:
        return None
    host = web_host(api_url)
    if remote.host not in (host, f"www.{host}", f"ssh.{host}"):
        return None
    return remote.path if valid_repository(remote.path) else None
