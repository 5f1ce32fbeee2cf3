"""Optional ``loop-runtime.toml`` at the project root, plus environment overrides.

The ecosystem files (registry, LOOP.md, loop-budget.md) are enough to run a loop;
this file only holds what they cannot say: which agent backend runs it, the test
command, notifier URLs and so on. It is never required. Precedence, lowest first:
built-in defaults < ``loop-runtime.toml`` < environment variables < CLI flags (the
flags are applied by the CLI, not here). This module only turns text (and a mapping of
environment values) into a ``ProjectConfig``; ``adapters.project_files.load_project_config``
reads the files and the process environment.

File format (every key optional; unknown keys are an error naming the valid ones)::

    backend = "claude"            # mock | claude | codex | openai | grok | opencode | gemini (default "mock")
    model = "claude-sonnet-4-5"   # backend model name (default: the backend's own)
    test_command = "pytest -q"    # run in the worktree to verify a fix
    test_timeout_s = 600          # seconds (default 600)
    max_attempts = 3              # fix attempts per item before escalating (default 3)
    global_daily_cap = 2000000    # tokens/day across all loops (default: none)
    notify = ["mailto://ops@example.com", "slack://T/B/C"]   # apprise URLs
    dashboard_token = "..."       # bearer token for the dashboard (prefer the env var)
    discovery = ["gh issue list --json number,title"]         # commands whose output feeds triage
    openai_base_url = "http://localhost:8000/v1"              # for backend = "openai"
    agent_timeout_s = 900         # seconds per agent call (default 900)
    max_turns = 30                # agent turns per call (default 30)
    daily_summary = false         # `start` sends a summary notification after each UTC day
    sandbox = "auto"              # auto | srt | none: agents and test runs inside srt (default auto)
    sandbox_allow_domains = ["pypi.org", "*.pythonhosted.org"]   # extra hosts reachable in the sandbox
    sandbox_cpu_s = 3600          # CPU seconds per sandboxed process (default 3600)
    sandbox_memory_mb = 8192      # writable memory per sandboxed process, MiB (default 8192)
    sandbox_processes = 512       # processes per sandbox (a fork bomb stops here; default 512)
    retention_days = 90           # the run store keeps events and finished ticks this many days
                                  # (older ones are summed into daily rollups, then deleted)

    [patterns.daily-triage]       # per pattern id; every key optional
    level = "L1"                  # L0 | L1 | L2 | L3
    cadence = "1d"                # registry cadence syntax: 5m, 6h, 1d, 6h-1d
    backend = "codex"
    model = "gpt-5-codex"
    early_exit = true
    discovery = ["gh pr list --json number,title"]
    enabled = true                # false: the scheduler skips this loop
    daily_cap = 100000            # tokens/day for this loop (the smallest cap wins)

    [backends.gemini]             # per backend (claude, codex, openai, grok, opencode, gemini); every key optional
    base_url = "https://generativelanguage.googleapis.com"   # the real API behind the metering proxy;
                                  # the CLI's own variable (GOOGLE_GEMINI_BASE_URL…) wins when set
    model = "gemini-2.5-pro"      # --model > [patterns.<id>] model > this > top-level model
    api_key_env = "MY_GEMINI_KEY" # read the API key from this variable instead of the CLI's usual one
    # [backends.grok] sandboxed = true: the agent runs in a sandbox; grok is refused without it
    [github]                      # the GitHub connector (on when a repository and a token are known)
    enabled = true                # false: off even with a token
    repository = "owner/name"     # else GITHUB_REPOSITORY wins; else parsed from the push remote
    api_url = "https://ghe.example.com/api/v3"   # GITHUB_API_URL wins; default https://api.github.com
    remote = "origin"             # where loop/* branches are pushed
    max_pages = 5                 # pages read per discovery query
    comment_escalations = false   # mirror an escalation as a comment on the item's issue

    [mcp]                         # MCP servers (names from the project's .mcp.json) an agent may
    l2 = ["github"]               # use at each level: l1, l2, l3. Default: none at any level.

    [temporal]                    # the project runs on Temporal (extra [temporal]): approve/reject/kill
    address = "localhost:7233"    # signal its workflows; every key optional
    namespace = "default"
    task_queue = "loop-runtime"
    escalation_expiry_s = 604800  # an escalation waits this long for approve/reject (default 7 days)
    repo = "git@host:org/repo.git"  # what workers clone (default: the `origin` remote)
    branch = "main"               # where they push the state files (default: the current branch)

Environment variables (a non-empty value overrides the file):
``LOOP_RUNTIME_BACKEND``, ``LOOP_RUNTIME_MODEL``, ``LOOP_RUNTIME_TEST_COMMAND``,
``LOOP_RUNTIME_OPENAI_BASE_URL``, ``LOOP_RUNTIME_DASHBOARD_TOKEN``, ``LOOP_RUNTIME_SANDBOX`` and
``LOOP_RUNTIME_NOTIFY`` (comma-separated URLs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..errors import ConfigError
from .github_config import GithubConfig, parse_github_table
from .levels import LEVELS

TYPE_CHECKING = False  # typing costs start-up time (see quick.py); type checkers still read the block
if TYPE_CHECKING:
    from typing import Any

FILE_NAME = "loop-runtime.toml"
BACKENDS = ("mock", "claude", "codex", "openai", "grok", "opencode", "gemini")
SANDBOX_MODES = ("auto", "srt", "none")
# An allowlist entry as srt takes it: a host name (optionally `*.`-prefixed) or an IP literal, optional :port.
# A pattern, not a compiled one: `re` compiles it on first use, and only a sandbox allowlist needs it.
DOMAIN_PATTERN = (r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}(:[0-9]{1,5})?$"
                  r"|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
CADENCE_RE = re.compile(r"^[0-9]+[mhd](-[0-9]+[mhd])?$")
PATTERN_ID_RE = re.compile(r"^[a-z][a-z0-9-]*$")
ENV_FILE = "environment"


@dataclass(frozen=True)
class PatternConfig:
    """``[patterns.<id>]``: one loop's settings, each overriding the registry's and ``LOOP.md``'s when set."""

    level: str | None = None
    cadence: str | None = None
    backend: str | None = None
    model: str | None = None
    early_exit: bool | None = None
    discovery: tuple[str, ...] = ()
    enabled: bool = True
    daily_cap: int | None = None


@dataclass(frozen=True)
class BackendConfig:
    """``[backends.<name>]``: where that backend's real API is and which key variable it reads."""

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    sandboxed: bool = False  # grok only: the agent runs in a sandbox (grok cannot be confined otherwise)


@dataclass(frozen=True)
class ProjectConfig:
    """``loop-runtime.toml``: the project-wide settings; every field has a default, so no file is needed."""

    backend: str = "mock"
    model: str | None = None
    test_command: str | None = None
    test_timeout_s: float = 600.0
    max_attempts: int = 3
    global_daily_cap: int | None = None
    notify: tuple[str, ...] = ()
    dashboard_token: str | None = field(default=None, repr=False)  # a secret: kept out of logs
    discovery: tuple[str, ...] = ()
    openai_base_url: str | None = None
    agent_timeout_s: float = 900.0
    max_turns: int = 30
    daily_summary: bool = False
    sandbox: str = "auto"
    sandbox_allow_domains: tuple[str, ...] = ()
    sandbox_cpu_s: int = 3600
    sandbox_memory_mb: int = 8192
    sandbox_processes: int = 512
    retention_days: int = 90
    patterns: Mapping[str, PatternConfig] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    #: ``[backends.<name>]`` tables (default: none)
    backends: Mapping[str, BackendConfig] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    #: ``[mcp]``: level (``L1``…) → server names an agent at that level may use (default: none)
    mcp: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    #: the ``.mcp.json`` definitions of the servers ``mcp`` names (filled by ``adapters.project_files.load_project_config``)
    mcp_servers: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}),
                                                         hash=False, repr=False)
    #: ``[temporal]``: where the project's Temporal is (empty: the project does not run on Temporal)
    temporal: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    #: ``[github]``: the connector's settings (the environment and the remote fill the rest)
    github: GithubConfig = field(default_factory=GithubConfig)

    def mcp_for(self, level: str) -> Mapping[str, Mapping[str, Any]]:
        """The MCP servers (name → definition) an agent at ``level`` may use; empty unless listed."""
        return MappingProxyType({n: self.mcp_servers[n] for n in self.mcp.get(level, ()) if n in self.mcp_servers})

    @property
    def sources(self) -> Mapping[str, str]:
        """Where each top-level value came from (an environment variable, or the file).

        Kept beside the fields, not as one (the fields are exactly the config keys), so a value
        found wrong later — the dashboard token's length, say — names its real source.
        """
        return getattr(self, "_sources", MappingProxyType({}))

    def source_of(self, name: str) -> str:
        """Where ``name``'s value came from: an environment variable, else ``loop-runtime.toml``."""
        return self.sources.get(name, FILE_NAME)

    def with_sources(self, sources: Mapping[str, str]) -> ProjectConfig:
        object.__setattr__(self, "_sources", MappingProxyType(dict(sources)))
        return self

    def for_backend(self, name: str) -> BackendConfig:
        """The ``[backends.<name>]`` table, or all defaults when the file has none."""
        return self.backends.get(name, BackendConfig())

    def for_pattern(self, pattern_id: str) -> PatternConfig:
        """The ``[patterns.<id>]`` table, or all defaults when the file has none."""
        return self.patterns.get(pattern_id, PatternConfig())


def load_toml(text: str, file: str) -> dict[str, Any]:
    """TOML text to a table; a syntax error is one ``ConfigError`` line naming ``file`` (shared by every
    TOML file loop-runtime reads: ``loop-runtime.toml``, ``loop-fleet.toml``)."""
    import tomllib  # here: a project without the file (and `list`) need not import it

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "toml", None, message=f"TOML syntax error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(file, "toml", None, message="TOML syntax error: nesting too deep") from None


def parse_project_config(text: str, *, file: str = FILE_NAME) -> ProjectConfig:
    """Validate ``loop-runtime.toml`` text; every problem is one ``ConfigError`` line."""
    data = load_toml(text, file)
    values = _check_table(data, _TOP, "", file, extra=("patterns", "mcp", "backends", "github", "temporal"))
    patterns_raw = data.get("patterns", {})
    if not isinstance(patterns_raw, dict):
        raise ConfigError(file, "patterns", patterns_raw, message="patterns must be a table of [patterns.<id>] tables")
    patterns = {pid: _pattern(pid, raw, file) for pid, raw in patterns_raw.items()}
    temporal_raw = data.get("temporal", {})
    if not isinstance(temporal_raw, dict):
        raise ConfigError(file, "temporal", temporal_raw, message="temporal must be a [temporal] table")
    temporal = _check_table(temporal_raw, _TEMPORAL, "temporal.", file, extra=())
    github = parse_github_table(data["github"], file=file) if "github" in data else GithubConfig()
    return ProjectConfig(**values, patterns=MappingProxyType(patterns),
                         backends=_backends(data.get("backends", {}), file),
                         mcp=_mcp_levels(data.get("mcp", {}), file),
                         github=github, temporal=MappingProxyType(temporal)).with_sources({k: file for k in values})


def _backends(raw: object, file: str) -> Mapping[str, BackendConfig]:
    """``[backends.<name>]`` tables: names from ``BACKENDS`` (not mock), keys from ``_BACKEND``."""
    if not isinstance(raw, dict):
        raise ConfigError(file, "backends", raw, message="backends must be a table of [backends.<name>] tables")
    valid = tuple(b for b in BACKENDS if b != "mock")
    out: dict[str, BackendConfig] = {}
    for name, table in raw.items():
        if name not in valid:
            raise ConfigError(file, f"backends.{name}", name, valid=valid,
                              message=f"unknown backend 'backends.{name}' (valid: {', '.join(valid)})")
        if not isinstance(table, dict):
            raise ConfigError(file, f"backends.{name}", table, message=f"backends.{name} must be a table")
        if "sandboxed" in table and name != "grok":
            raise ConfigError(file, f"backends.{name}.sandboxed", table["sandboxed"],
                              message=f"backends.{name}.sandboxed: only grok takes this key")
        out[name] = BackendConfig(**_check_table(table, _BACKEND, f"backends.{name}.", file, extra=()))
    return MappingProxyType(out)


MCP_LEVEL_KEYS = ("l1", "l2", "l3")


def _mcp_levels(raw: object, file: str) -> Mapping[str, tuple[str, ...]]:
    """``[mcp] l1 = [...]`` … → ``{"L1": (...)}``; names are checked against .mcp.json on load."""
    from .mcp_json import SERVER_NAME_RE

    if not isinstance(raw, dict):
        raise ConfigError(file, "mcp", raw, message="mcp must be a table: [mcp] l1 = [...], l2 = [...], l3 = [...]")
    out: dict[str, tuple[str, ...]] = {}
    for key, names in raw.items():
        if key not in MCP_LEVEL_KEYS:
            raise ConfigError(file, f"mcp.{key}", key, valid=MCP_LEVEL_KEYS,
                              message=f"unknown key 'mcp.{key}' (valid: {', '.join(MCP_LEVEL_KEYS)})")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(file, f"mcp.{key}", names, message=f"mcp.{key} must be a list of server names")
        for n in names:
            if not SERVER_NAME_RE.fullmatch(n):
                raise ConfigError(file, f"mcp.{key}", n, message=f"mcp.{key} invalid: {n!r} (a server name from .mcp.json)")
        out[key.upper()] = tuple(dict.fromkeys(names))
    return MappingProxyType(out)


def mcp_names_listed(config: ProjectConfig) -> bool:
    """True when ``[mcp]`` names any server, so ``.mcp.json`` must be read to resolve them."""
    return any(config.mcp.values())


def with_mcp_servers(config: ProjectConfig, mcp_text: str | None, *, file: str, mcp_file: str,
                     root: str) -> ProjectConfig:
    """Resolve the ``[mcp]`` names against ``.mcp.json`` text: every listed name must be defined there.

    ``mcp_text`` is None when the project has no ``.mcp.json`` (the loader in
    ``adapters.project_files`` reads it); ``file`` is the ``loop-runtime.toml`` the names come
    from, ``mcp_file`` the ``.mcp.json`` path and ``root`` the project, all for messages only.
    """
    listed = [(level, n) for level, names in config.mcp.items() for n in names]
    if not listed:
        return config
    from .mcp_json import FILE_NAME as MCP_FILE, parse_mcp_json

    if mcp_text is None:
        level, name = listed[0]
        raise ConfigError(file, f"mcp.{level.lower()}", name,
                          message=f"mcp.{level.lower()} names {name!r} but there is no {MCP_FILE} at {root}")
    servers = parse_mcp_json(mcp_text, file=mcp_file)
    for level, name in listed:
        if name not in servers:
            raise ConfigError(file, f"mcp.{level.lower()}", name, valid=sorted(servers) or "(none defined)",
                              message=f"mcp.{level.lower()} invalid: {name!r} is not a server in {MCP_FILE} "
                                      f"(defined: {', '.join(sorted(servers)) or 'none'})")
    return replace(config, mcp_servers=MappingProxyType({n: servers[n] for _, n in listed})).with_sources(config.sources)


def apply_env(config: ProjectConfig, env: Mapping[str, str]) -> ProjectConfig:
    """Environment variables over the file; empty values count as unset."""
    changes: dict[str, Any] = {}
    sources = dict(config.sources)
    for var, name in _ENV.items():
        value = (env.get(var) or "").strip()
        if not value:
            continue
        if name == "backend" and value not in BACKENDS:
            raise ConfigError(ENV_FILE, var, value, valid=BACKENDS)
        converted: Any = [u.strip() for u in value.split(",") if u.strip()] if name == "notify" else value
        try:
            converted = _TOP[name](converted)
        except ValueError:
            shown = "(hidden)" if name == "dashboard_token" else value
            raise ConfigError(ENV_FILE, var, shown, valid=getattr(_TOP[name], "valid", None)) from None
        changes[name] = converted
        sources[name] = f"environment variable {var}"
    if not changes:
        return config
    return replace(config, **changes).with_sources(sources)


_ENV = {
    "LOOP_RUNTIME_BACKEND": "backend",
    "LOOP_RUNTIME_MODEL": "model",
    "LOOP_RUNTIME_TEST_COMMAND": "test_command",
    "LOOP_RUNTIME_OPENAI_BASE_URL": "openai_base_url",
    "LOOP_RUNTIME_DASHBOARD_TOKEN": "dashboard_token",
    "LOOP_RUNTIME_NOTIFY": "notify",
    "LOOP_RUNTIME_SANDBOX": "sandbox",
}

# ── validation ────────────────────────────────────────────────────────────
if TYPE_CHECKING:
    Check = Callable[[object], Any]  # returns the converted value or raises ValueError


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value


def _choice(valid: tuple[str, ...]) -> Check:
    def check(value: object) -> str:
        if value not in valid:
            raise ValueError
        return str(value)

    check.valid = valid  # type: ignore[attr-defined]
    return check


def _cadence(value: object) -> str:
    if not isinstance(value, str) or not CADENCE_RE.fullmatch(value):
        raise ValueError
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError
    return value


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError
    return float(value)


def _domains(value: object) -> tuple[str, ...]:
    """Hosts for the sandbox's network allowlist; a bare ``*`` (everything) is refused."""
    hosts = _strings(value)
    if not all(re.fullmatch(DOMAIN_PATTERN, h) and not h.endswith(":0") for h in hosts):
        raise ValueError
    return hosts


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError
    return tuple(value)


def _http_url(value: object) -> str:
    """An ``http(s)://host…`` URL: a typo here used to surface only when the first agent call failed."""
    from urllib.parse import urlsplit

    text = _text(value)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValueError from None
    if parts.scheme not in ("http", "https") or not parts.hostname or text != text.strip():
        raise ValueError
    return text


_TOP: dict[str, Check] = {
    "backend": _choice(BACKENDS),
    "model": _text,
    "test_command": _text,
    "test_timeout_s": _positive_number,
    "max_attempts": _positive_int,
    "global_daily_cap": _positive_int,
    "notify": _strings,
    "dashboard_token": _text,
    "discovery": _strings,
    "openai_base_url": _http_url,
    "agent_timeout_s": _positive_number,
    "max_turns": _positive_int,
    "daily_summary": _boolean,
    "sandbox": _choice(SANDBOX_MODES),
    "sandbox_allow_domains": _domains,
    "sandbox_cpu_s": _positive_int,
    "sandbox_memory_mb": _positive_int,
    "sandbox_processes": _positive_int,
    "retention_days": _positive_int,
}


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        raise ValueError
    return value


_BACKEND: dict[str, Check] = {
    "base_url": _http_url,
    "model": _text,
    "api_key_env": _env_name,
    "sandboxed": _boolean,
}
_TEMPORAL: dict[str, Check] = {
    "address": _text,
    "namespace": _text,
    "task_queue": _text,
    "escalation_expiry_s": _positive_number,
    "repo": _text,
    "branch": _text,
}
_PATTERN: dict[str, Check] = {
    "level": _choice(LEVELS),
    "cadence": _cadence,
    "backend": _choice(BACKENDS),
    "model": _text,
    "early_exit": _boolean,
    "discovery": _strings,
    "enabled": _boolean,
    "daily_cap": _positive_int,
}


def _check_table(data: Mapping[str, Any], checks: Mapping[str, Check], prefix: str, file: str,
                 extra: tuple[str, ...] = ("patterns",)) -> dict[str, Any]:
    valid = sorted((*checks, *extra))
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key in extra:
            continue
        if key not in checks:
            raise ConfigError(file, name, key, valid=valid, message=f"unknown key {name!r} (valid: {', '.join(valid)})")
        try:
            out[key] = checks[key](value)
        except ValueError:
            raise ConfigError(file, name, value, valid=getattr(checks[key], "valid", None)) from None
    return out


def _pattern(pattern_id: str, raw: object, file: str) -> PatternConfig:
    prefix = f"patterns.{pattern_id}"
    if not PATTERN_ID_RE.fullmatch(pattern_id):
        raise ConfigError(file, "patterns", pattern_id, message=f"pattern id invalid: {pattern_id!r}")
    if not isinstance(raw, dict):
        raise ConfigError(file, prefix, raw, message=f"{prefix} must be a table")
    return PatternConfig(**_check_table(raw, _PATTERN, prefix + ".", file, extra=()))
