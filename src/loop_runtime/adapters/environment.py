"""The environment an agent or a test command runs with, and the secrets it must not echo.

Why an allowlist: an agent process inherits whatever it is given, and the shell that
started the runtime typically holds cloud keys, tokens and SSH agents. Only the
variables a CLI needs to find its runtime, its home and its locale pass; a backend's
own credential variables pass only when its adapter names them (``extra_allowed``).

``secret_values`` collects the literal values the redactor must hide: everything
assigned in the project's ``.env*`` files and every secret-named variable of the
runtime's own environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "ALLOWED_ENV",
    "ALLOWED_PREFIXES",
    "BACKEND_CREDENTIALS",
    "SECRET_NAME",
    "scrubbed_env",
    "secret_values",
]

ALLOWED_ENV: frozenset[str] = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "COLORTERM", "NO_COLOR", "TZ",
    "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "VIRTUAL_ENV", "PYTHONPATH", "GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE", "CARGO_HOME", "RUSTUP_HOME",
    "JAVA_HOME", "NVM_DIR", "NODE_PATH", "CI",
})
"""Variables every agent and test command may see (none of them carries a credential)."""

ALLOWED_PREFIXES: tuple[str, ...] = ("LC_",)

BACKEND_CREDENTIALS: Mapping[str, tuple[str, ...]] = {
    "claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
               "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CONFIG_DIR"),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"),
    "aider": ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AIDER_MODEL"),
}
"""Credential variables per backend, passed through ``extra_allowed`` by that backend only."""

SECRET_NAME = re.compile(r"(?i)KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|AUTH")
MIN_ENV_SECRET = 8
MIN_DOTENV_SECRET = 6
_PLAIN = re.compile(r"^(?:[A-Za-z]+|[0-9.]+|true|false|yes|no|on|off)$", re.IGNORECASE)


def _allowed(name: str, extra: frozenset[str]) -> bool:
    return name in ALLOWED_ENV or name in extra or name.startswith(ALLOWED_PREFIXES)


def scrubbed_env(base: Mapping[str, str], *, extra_allowed: Iterable[str] = (),
                 overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` reduced to the allowlist (plus ``extra_allowed``), then ``overrides`` on top."""
    extra = frozenset(extra_allowed)
    env = {k: v for k, v in base.items() if _allowed(k, extra) and "\0" not in v}
    env.update(overrides or {})
    return env


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if " #" in value:  # trailing comment on an unquoted value
        value = value.split(" #", 1)[0].rstrip()
    return value


def _dotenv_values(text: str) -> Iterable[tuple[str, str]]:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        name, _, value = line.partition("=")
        yield name.strip(), _unquote(value)


def _worth_hiding(name: str, value: str, minimum: int) -> bool:
    """Secret-named values of ``minimum`` chars; other values only when long and not a plain word/number."""
    if SECRET_NAME.search(name):
        return len(value) >= minimum
    return len(value) >= MIN_ENV_SECRET and not _PLAIN.match(value)


def secret_values(root: Path, env: Mapping[str, str]) -> list[str]:
    """Literal values to redact: every meaningful value of ``<root>/.env*`` and secret-named env vars.

    Longest first, so a redactor replacing in order never leaves a tail of a longer secret.
    """
    found: set[str] = set()
    try:
        candidates = sorted(p for p in Path(root).glob(".env*") if p.is_file())
    except OSError:
        candidates = []
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for name, value in _dotenv_values(text):
            if _worth_hiding(name, value, MIN_DOTENV_SECRET):
                found.add(value)
    for name, value in env.items():
        if SECRET_NAME.search(name) and len(value) >= MIN_ENV_SECRET:
            found.add(value)
    return sorted(found, key=lambda v: (-len(v), v))
