"""``loop-fleet.toml``: the repositories one machine runs, and the portfolio budget they share.

Pure text → values (no file system, no network): where a ``path`` leads and whether it
exists is the fleet adapter's question (``adapters.fleet``). Every problem is one line
naming the file, the field and the value — except a URL's credentials, which are never
echoed (a fleet file is shared and its errors land in CI logs)::

    portfolio_daily_cap = 5000000      # tokens/day across every loop of every repository
    portfolio_daily_usd = 40.0         # optional: USD/day (backend-reported cost, else the price table)
    name = "acme"                      # optional: the portfolio's name on Temporal (default: the folder's)
    work_dir = ".loop-fleet"           # clones of `url` repositories and the portfolio ledger
    [[repos]]
    path = "../api"                    # relative to this file's folder
    [[repos]]
    url = "https://github.com/acme/web.git"
    name = "web"                       # optional key shown by status/dashboard (default: from path/url)
    daily_cap = 800000                 # optional per-repository cap (the smaller of this and the
                                       # repository's own global_daily_cap applies)
    [repos.patterns.ci-sweeper]        # per-loop overrides, as in loop-runtime.toml [patterns.<id>]
    level = "L2"

Why ``url`` refuses credentials rather than hiding them: a token in a committed file is
already leaked; git credential helpers or SSH keys keep it out of the file and the logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping

from ..errors import ConfigError
from .project_config import _PATTERN, PATTERN_ID_RE, PatternConfig, _check_table

__all__ = ["FILE_NAME", "Fleet", "FleetRepo", "check_caps", "parse_fleet", "pattern_overrides", "overrides_json", "redact_url",
           "MAX_CAP"]

FILE_NAME = "loop-fleet.toml"
DEFAULT_WORK_DIR = ".loop-fleet"
MAX_CAP = 10**15
"""A cap above this is a typo (a quadrillion tokens a day), and SQLite integers must stay exact."""
URL_SCHEMES = ("https", "http", "ssh", "git", "file")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCP_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!/)[^\s]+$")  # git@host:org/repo.git
_TOP_KEYS = ("name", "portfolio_daily_cap", "portfolio_daily_usd", "work_dir", "repos")
_REPO_KEYS = ("path", "url", "name", "daily_cap", "patterns")


@dataclass(frozen=True)
class FleetRepo:
    """One repository of the fleet, as written (``path`` relative to the fleet file's folder)."""

    index: int
    name: str
    path: str | None = None
    url: str | None = None
    daily_cap: int | None = None
    #: ``[repos.patterns.<id>]``: only the keys the fleet file sets (validated as in loop-runtime.toml);
    #: they replace the repository's own values for those keys and leave the others alone
    patterns: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def pattern_config(self, pattern_id: str, own: PatternConfig) -> PatternConfig:
        """The repository's ``[patterns.<id>]`` with this fleet's overrides on top."""
        from dataclasses import replace

        return replace(own, **self.patterns.get(pattern_id, {}))

    @property
    def where(self) -> str:
        """How the repository is named in messages (a URL without credentials)."""
        return self.path if self.path is not None else redact_url(self.url or "")


@dataclass(frozen=True)
class Fleet:
    repos: tuple[FleetRepo, ...]
    portfolio_daily_cap: int | None = None
    portfolio_daily_usd: float | None = None
    work_dir: str = DEFAULT_WORK_DIR
    name: str | None = None  # the portfolio's name where several machines share it (Temporal budget scope)

    def repo(self, name: str) -> FleetRepo:
        for r in self.repos:
            if r.name == name:
                return r
        raise ConfigError(FILE_NAME, "repo", name, valid=[r.name for r in self.repos])


def redact_url(url: str) -> str:
    """What a message may show of a URL: no userinfo (``https://***@host/x``, ``***@host:org/r``), no query.

    Whatever the shape — a scheme or none, one ``@`` or several — everything before the last
    ``@`` of the host part is hidden, and so is a ``?query``/``#fragment`` (tokens travel there too).
    """
    url = re.split(r"[?#]", url, maxsplit=1)[0]
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)@", url)
    if m:
        return m.group(1) + "***@" + url[m.end():]
    head, sep, rest = url.rpartition("@")
    if sep and "/" not in head:
        return "***@" + rest
    return url


def parse_fleet(text: str, *, file: str = FILE_NAME) -> Fleet:
    """Validate a fleet file's text; every problem is one ``ConfigError`` line."""
    from .project_config import load_toml

    data = load_toml(text, file)
    _unknown(data, _TOP_KEYS, "", file)
    cap = _cap(data.get("portfolio_daily_cap"), "portfolio_daily_cap", file)
    usd = _usd(data.get("portfolio_daily_usd"), file)
    work_dir = _rel_path(data.get("work_dir", DEFAULT_WORK_DIR), "work_dir", file)
    raw_repos = data.get("repos")
    if not isinstance(raw_repos, list) or not raw_repos:
        raise ConfigError(file, "repos", raw_repos,
                          message="repos must list at least one [[repos]] table (with path or url)")
    repos = tuple(_repo(i, raw, file) for i, raw in enumerate(raw_repos))
    _no_duplicates(repos, file)
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_RE.fullmatch(name)):
        raise ConfigError(file, "name", name, message=f"name invalid: {name!r} (letters, digits, . _ -; at most 64)")
    return Fleet(repos=repos, portfolio_daily_cap=cap, portfolio_daily_usd=usd, work_dir=work_dir, name=name)


def pattern_overrides(table: Mapping[str, Any], prefix: str, file: str) -> dict[str, Any]:
    """One ``[repos.patterns.<id>]`` table, validated as ``[patterns.<id>]`` in loop-runtime.toml.

    Also what a Temporal worker runs the table it received through (``overrides_json``) back through:
    the same checks, the same values (``discovery`` a tuple again), on both paths.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(file, prefix, table, message=f"{prefix} must be a table")
    return _check_table(dict(table), _PATTERN, prefix + ".", file, extra=())


def check_caps(repo_cap: object, portfolio_cap: object, portfolio_usd: object, file: str) -> None:
    """The caps a worker receives for a fleet loop, held to the fleet file's own rules (whole tokens in
    1..``MAX_CAP``, dollars > 0): a schedule edited by hand cannot give a worker a negative cap."""
    _cap(repo_cap, "daily_cap", file)
    _cap(portfolio_cap, "portfolio_daily_cap", file)
    _usd(portfolio_usd, file)


def overrides_json(table: Mapping[str, Any]) -> dict[str, Any]:
    """The override table as JSON carries it (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()}


# --------------------------------------------------------------------------- pieces


def _unknown(data: Mapping[str, Any], valid: tuple[str, ...], prefix: str, file: str) -> None:
    for key in data:
        if key not in valid:
            raise ConfigError(file, f"{prefix}{key}", key,
                              message=f"unknown key '{prefix}{key}' (valid: {', '.join(sorted(valid))})")


def _cap(value: object, name: str, file: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value > MAX_CAP:
        raise ConfigError(file, name, value, message=f"{name} invalid: {value!r} (a whole number of tokens, "
                                                     f"1 to {MAX_CAP:,})")
    return value


def _usd(value: object, file: str) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 10**9 and value == value
    if not ok:
        raise ConfigError(file, "portfolio_daily_usd", value,
                          message=f"portfolio_daily_usd invalid: {value!r} (dollars per day, > 0)")
    return float(value)


def _rel_path(value: object, name: str, file: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip() or "\0" in value \
            or any(ord(c) < 32 for c in value):
        raise ConfigError(file, name, value, message=f"{name} invalid: {value!r} (a folder path)")
    return value


def _repo(i: int, raw: object, file: str) -> FleetRepo:
    at = f"repos[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(file, at, raw, message=f"{at} must be a table ([[repos]])")
    _unknown(raw, _REPO_KEYS, f"{at}.", file)
    has_path, has_url = "path" in raw, "url" in raw
    if has_path == has_url:
        raise ConfigError(file, at, None, message=f"{at} needs exactly one of path or url")
    path = _rel_path(raw["path"], f"{at}.path", file) if has_path else None
    url = _url(raw["url"], f"{at}.url", file) if has_url else None
    name = raw.get("name")
    if name is None:
        name = _derived_name(_norm_path(path) if path is not None else url or "")
        if not NAME_RE.fullmatch(name):
            raise ConfigError(file, f"{at}.name", name,
                              message=f"{at}.name needed: cannot derive a name from {path or redact_url(url or '')!r}")
    elif not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(file, f"{at}.name", name,
                          message=f"{at}.name invalid: {name!r} (letters, digits, . _ -; at most 64)")
    cap = _cap(raw.get("daily_cap"), f"{at}.daily_cap", file)
    pats = raw.get("patterns", {})
    if not isinstance(pats, dict):
        raise ConfigError(file, f"{at}.patterns", pats,
                          message=f"{at}.patterns must be a table of [repos.patterns.<id>]")
    patterns: dict[str, Mapping[str, Any]] = {}
    for pid, table in pats.items():
        prefix = f"{at}.patterns.{pid}"
        if not PATTERN_ID_RE.fullmatch(pid):
            raise ConfigError(file, f"{at}.patterns", pid, message=f"{at}.patterns: pattern id invalid: {pid!r}")
        if not isinstance(table, dict):
            raise ConfigError(file, prefix, table, message=f"{prefix} must be a table")
        patterns[pid] = MappingProxyType(pattern_overrides(table, prefix, file))
    return FleetRepo(index=i, name=name, path=path, url=url, daily_cap=cap, patterns=MappingProxyType(patterns))


def _url(value: object, name: str, file: str) -> str:
    """A git URL: https/http/ssh/git/file, or scp-like ``user@host:path``; never credentials, never ``ext::``."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value or value != value.strip() or any(ord(c) < 33 for c in value):
        raise ConfigError(file, name, redact_url(value) if isinstance(value, str) else value,
                          message=f"{name} invalid: {redact_url(value) if isinstance(value, str) else value!r} "
                                  "(a git URL without spaces)")
    shown = redact_url(value)
    if value.startswith("-"):
        raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (starts with '-')")
    if _SCP_RE.fullmatch(value) and "://" not in value:
        if ":" in value.split("@", 1)[0]:
            raise _credentials(file, name, shown)
        return value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises on a bad port
    except ValueError:
        raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (not a URL)") from None
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (no ?query or #fragment in a git URL)")
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} "
                                                     f"(scheme must be one of {', '.join(URL_SCHEMES)})")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (file:///absolute/path)")
        return value
    if not parts.hostname or not parts.path.strip("/"):
        raise ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (needs a host and a repository path)")
    if parts.password is not None or (parts.username is not None and parts.scheme in ("https", "http", "git")):
        raise _credentials(file, name, shown)
    return value


def _credentials(file: str, name: str, shown: str) -> ConfigError:
    return ConfigError(file, name, shown, message=f"{name} invalid: {shown!r} (credentials in a URL are refused: "
                                                  "use a git credential helper or an SSH key)")


def _derived_name(where: str) -> str:
    """``../api`` → ``api``; ``https://x/acme/web.git`` → ``web``; ``git@h:o/r.git`` → ``r``."""
    tail = where.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git")


def _norm_path(p: str) -> str:
    import posixpath

    return posixpath.normpath(p.replace("\\", "/"))


def _norm_url(u: str) -> str:
    return u.rstrip("/").removesuffix(".git").lower()


def _no_duplicates(repos: tuple[FleetRepo, ...], file: str) -> None:
    """The same repository twice would run its loops twice and double-count their budget."""
    names: dict[str, int] = {}
    places: dict[str, int] = {}
    for r in repos:
        at = f"repos[{r.index}]"
        key = f"path:{_norm_path(r.path)}" if r.path is not None else f"url:{_norm_url(r.url or '')}"
        if key in places:
            field_ = "path" if r.path is not None else "url"
            raise ConfigError(file, f"{at}.{field_}", r.where, message=f"{at}.{field_} invalid: {r.where!r} "
                                                                       f"(the same repository as repos[{places[key]}])")
        places[key] = r.index
        if r.name in names:
            raise ConfigError(file, f"{at}.name", r.name, message=f"{at}.name invalid: {r.name!r} "
                                                                  f"(repos[{names[r.name]}] has the same name)")
        names[r.name] = r.index
