"""``[github]`` in ``loop-runtime.toml`` and the pure parts of finding the repository.

Why a separate table: the connector is optional and everything it needs beyond the
environment (``GITHUB_REPOSITORY``, ``GITHUB_API_URL``, ``GITHUB_TOKEN``/``GH_TOKEN``)
fits here. Reading the environment, the remote and ``gh`` is the adapter's job
(``adapters.github.config``); this module only validates values (remote URLs: ``git_remote``).

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

from ..errors import ConfigError

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

DEFAULT_API_URL = "https://api.github.com"
SECTION = "github"
#: ``owner/name``: GitHub's own rules (owner: alphanumerics and single hyphens; name: ``[A-Za-z0-9._-]``).
#: Patterns, not compiled ones: ``re`` compiles each on first use, and most commands never validate a repository.
REPOSITORY_PATTERN = r"^(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/(?P<name>[A-Za-z0-9._-]{1,100})$"
REMOTE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MAX_PAGES_LIMIT = 50


@dataclass(frozen=True)
class GithubConfig:
    """``[github]``: how the connector finds the repository and where it pushes; defaults need no table."""

    enabled: bool = True
    repository: str | None = None
    api_url: str | None = None
    remote: str = "origin"
    max_pages: int = 5
    comment_escalations: bool = False


def valid_repository(text: str) -> bool:
    m = re.fullmatch(REPOSITORY_PATTERN, text)
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
            "remote": isinstance(value, str) and bool(re.fullmatch(REMOTE_NAME_PATTERN, value)),
            "max_pages": isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_PAGES_LIMIT,
        }[key]
        if not ok:
            raise ConfigError(file, name, value)
        out[key] = value.rstrip("/") if key == "api_url" else value
    return GithubConfig(**out)
