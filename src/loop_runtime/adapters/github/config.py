"""Where the connector's repository, API base and token come from (the conventions of Actions and ``gh``).

* repository: ``GITHUB_REPOSITORY`` > ``[github] repository`` > the push remote's URL when it
  points at the GitHub (or GHE) host the API base serves;
* API base: ``GITHUB_API_URL`` > ``[github] api_url`` > ``https://api.github.com``;
* token: ``GITHUB_TOKEN`` > ``GH_TOKEN`` > ``gh auth token`` (when ``gh`` is installed);
* the connector is on when a repository and a token are known (and the ``github`` extra is
  installed), unless ``[github] enabled = false``.

The token is kept out of ``repr`` and every message; ``secret_values`` of a resolved
connector (the token, and a password embedded in the remote URL) join the run's
redaction set so no file the runtime writes can hold them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...formats.git_remote import parse_remote_url, repository_from_remote, web_host, web_origin
from ...formats.github_config import DEFAULT_API_URL, GithubConfig, valid_api_url, valid_repository

GH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GithubSettings:
    repository: str
    api_url: str
    token: str = field(repr=False)
    token_source: str  # GITHUB_TOKEN | GH_TOKEN | `gh auth token`
    remote: str = "origin"
    repository_source: str = ""
    max_pages: int = 5
    comment_escalations: bool = False
    extra_secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token, *self.extra_secrets)

    @property
    def web_url(self) -> str:
        """Where git pushes (the push's auth header is scoped to it, port included)."""
        return web_origin(self.api_url)


@dataclass(frozen=True)
class Resolution:
    """What was found: settings when the connector is on, else why it is off (for ``doctor``)."""

    settings: GithubSettings | None
    reason: str
    repository: str | None = None
    repository_source: str | None = None
    token_source: str | None = None
    api_url: str = DEFAULT_API_URL
    problems: tuple[str, ...] = ()
    remote_secrets: tuple[str, ...] = field(default=(), repr=False)


_REMOTE_CACHE: dict[tuple[str, str], tuple[tuple[int, int, int] | None, str | None]] = {}


def _config_signature(root: Path) -> tuple[int, int, int] | None:
    """The identity of ``.git/config`` (inode, size, mtime): a remote's URL changes only with it. None for a
    linked worktree or anything unusual (then git is asked every time)."""
    try:
        st = os.stat(Path(root) / ".git" / "config")
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def remote_url(root: Path, remote: str) -> str | None:
    """The remote's URL; remembered while ``.git/config`` is unchanged, because every tick of a long-running
    process asks (a ``git`` subprocess was a tenth of a report tick)."""
    key, sig = (str(root), remote), _config_signature(root)
    cached = _REMOTE_CACHE.get(key)
    if sig is not None and cached is not None and cached[0] == sig:
        return cached[1]
    url = _ask_git_remote(root, remote)
    if sig is not None:
        _REMOTE_CACHE[key] = (sig, url)
    return url


def _ask_git_remote(root: Path, remote: str) -> str | None:
    try:
        proc = subprocess.run(["git", "remote", "get-url", "--", remote], cwd=root, capture_output=True, text=True,
                              timeout=GH_TIMEOUT_S, stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def gh_token(host: str, env: Mapping[str, str]) -> str | None:
    """``gh auth token`` for ``host`` when ``gh`` is installed and logged in; else None."""
    gh = shutil.which("gh", path=env.get("PATH"))
    if gh is None:
        return None
    args = [gh, "auth", "token"] + ([] if host == "github.com" else ["--hostname", host])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=GH_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env={k: v for k, v in env.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")},
                              errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    token = proc.stdout.strip()
    return token if proc.returncode == 0 and token and "\n" not in token and " " not in token else None


def resolve(root: Path, config: GithubConfig, env: Mapping[str, str]) -> Resolution:
    """Settle the connector's settings; never raises (a bad value is a reason the connector is off)."""
    problems: list[str] = []
    api = _api_url(config, env, problems)
    url = remote_url(Path(root), config.remote)
    remote_secrets: tuple[str, ...] = ()
    if url:
        parsed = parse_remote_url(url)
        if parsed is not None and parsed.password:
            remote_secrets = (parsed.password,)
            problems.append(f"remote {config.remote!r} URL embeds a credential: use GITHUB_TOKEN or `gh auth login` "
                            f"and `git remote set-url {config.remote} <url without credentials>`")
    repo, repo_source = _repository(config, env, url, api, problems)
    token, token_source = None, None
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        value = env.get(name, "").strip()
        if value:
            token, token_source = value, name
            break
    if not config.enabled:
        return Resolution(None, "off: [github] enabled = false", repo, repo_source, token_source, api,
                          tuple(problems), remote_secrets)
    if repo is None:
        return Resolution(None, "off: no repository (GITHUB_REPOSITORY, [github] repository or a GitHub remote)",
                          None, None, token_source, api, tuple(problems), remote_secrets)
    if token is None:
        token = gh_token(web_host(api), env)
        token_source = "`gh auth token`" if token else None
    if token is None:
        return Resolution(None, "off: no token (GITHUB_TOKEN, GH_TOKEN or `gh auth login`)", repo, repo_source,
                          None, api, tuple(problems), remote_secrets)
    from ...optional import find

    if find("githubkit") is None:  # without the extra everything works as before: the connector stays off
        return Resolution(None, "off: githubkit is not installed (pip install 'loop-runtime[github]')", repo,
                          repo_source, token_source, api, tuple(problems), remote_secrets)
    settings = GithubSettings(repository=repo, api_url=api, token=token, token_source=token_source or "?",
                              remote=config.remote, repository_source=repo_source or "", max_pages=config.max_pages,
                              comment_escalations=config.comment_escalations, extra_secrets=remote_secrets)
    return Resolution(settings, f"on: {repo} via {api}", repo, repo_source, token_source, api, tuple(problems),
                      remote_secrets)


def _api_url(config: GithubConfig, env: Mapping[str, str], problems: list[str]) -> str:
    """``GITHUB_API_URL`` (when valid; else a problem), else ``[github] api_url``, else github.com's."""
    env_api = env.get("GITHUB_API_URL", "").strip()
    if env_api:
        if valid_api_url(env_api):
            return env_api.rstrip("/")
        problems.append(f"GITHUB_API_URL invalid: {env_api!r} (an http(s) URL without credentials)")
        return DEFAULT_API_URL
    return config.api_url or DEFAULT_API_URL


def _repository(config: GithubConfig, env: Mapping[str, str], url: str | None, api: str,
                problems: list[str]) -> tuple[str | None, str | None]:
    """(owner/name, where it came from): ``GITHUB_REPOSITORY`` (when valid; else a problem), else
    ``[github] repository``, else the remote's URL when it points at ``api``'s host; (None, None) if none."""
    env_repo = env.get("GITHUB_REPOSITORY", "").strip()
    if env_repo:
        if valid_repository(env_repo):
            return env_repo, "GITHUB_REPOSITORY"
        problems.append(f"GITHUB_REPOSITORY invalid: {env_repo!r} (expected owner/name)")
    if config.repository:
        return config.repository, "loop-runtime.toml [github] repository"
    found = repository_from_remote(url, api) if url else None
    return (found, f"remote {config.remote!r}") if found else (None, None)
