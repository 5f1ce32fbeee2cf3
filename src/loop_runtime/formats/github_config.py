"""``[github]`` in ``loop-runtime.toml`` and the pure parts of finding the repository.

Why a separate table: the connector is optional and everything it needs beyond the
environment (``GITHUB_REPOSITORY``, ``GITHUB_API_URL``, ``GITHUB_TOKEN``/``GH_TOKEN``)
fits here. Reading the environment, the remote and ``gh`` is the adapter's job
(``adapters.github.config``); this module only validates values and parses URLs.

::

    [github]
    enabled = true                 # false: the connector stays off even with a token
    repository = "owner/name"      # else GITHUB_REPOSITORY, else the push remote's URL
    api_url = "https://ghe.example.com/api/v3"   # else GITHUB_API_URL, else api.github.com
    remote = "origin"              # where `loop/*` branches are pushed
    max_pages = 5                  # pages read per discovery query (bounded reads)
    comment_escalations = false    # mirror an escalation as a comment on the item's issue
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_API_URL = "https://api.github.com"
SECTION = "github"
#: ``owner/name``: GitHub's own rules (owner: alphanumerics and single hyphens; name: ``[A-Za-z0-9._-]``)
REPOSITORY_RE = re.compile(r"^(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<name>[A-Za-z0-9._-]{1,100})$")
REMOTE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_PAGES_LIMIT = 50


@dataclass(frozen=True)
class GithubConfig:
    enabled: bool = True
    repository: str | None = None
    api_url: str | None = None
    remote: str = "origin"
    max_pages: int = 5
    comment_escalations: bool = False


def valid_repository(text: str) -> bool:
    m = REPOSITORY_RE.fullmatch(text)
    return bool(m) and m.group("name") not in (".", "..") and not m.group("name").endswith(".git")


def valid_api_url(text: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username
            and not parts.password and not parts.query and not parts.fragment and text == text.strip())


def parse_github_table(raw: Any, *, file: str) -> GithubConfig:
    """Validate ``[github]``; every problem is one ``ConfigError`` naming file, field and value."""
    if not isinstance(raw, Mapping):
        raise ConfigError(file, SECTION, raw, message="github must be a table ([github])")
    valid = ("api_url", "comment_escalations", "enabled", "max_pages", "remote", "repository")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{SECTION}.{key}"
        if key not in valid:
            raise ConfigError(file, name, key, valid=valid, message=f"unknown key {name!r} (valid: {', '.join(valid)})")
        ok = {
            "enabled": isinstance(value, bool),
            "comment_escalations": isinstance(value, bool),
            "repository": isinstance(value, str) and valid_repository(value),
            "api_url": isinstance(value, str) and valid_api_url(value),
            "remote": isinstance(value, str) and bool(REMOTE_NAME_RE.fullmatch(value)),
            "max_pages": isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PAGES_LIMIT,
        }[key]
        if not ok:
            raise ConfigError(file, name, value)
        out[key] = value.rstrip("/") if key == "api_url" else value
    return GithubConfig(**out)


# ---------------------------------------------------------------------------- remote URLs

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
