"""The scrubbed environment agents run with, and the secret values the redactor must hide."""

from __future__ import annotations

from pathlib import Path

from loop_runtime.adapters.environment import ALLOWED_ENV, BACKEND_CREDENTIALS, scrubbed_env, secret_values
from loop_runtime.core.redact import redact

BASE = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/u",
    "LANG": "en_US.UTF-8",
    "LC_CTYPE": "C.UTF-8",
    "TERM": "xterm",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
    "GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-api03-xyz-very-secret",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    "DATABASE_URL": "postgres://u:p@db/x",
}


def test_only_allowlisted_variables_pass() -> None:
    """Locale, path and home pass; cloud keys, tokens, agent sockets and URLs do not."""
    env = scrubbed_env(BASE)
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/home/u", "LANG": "en_US.UTF-8", "LC_CTYPE": "C.UTF-8",
                   "TERM": "xterm"}


def test_a_backend_names_its_own_credentials_explicitly() -> None:
    """The Claude backend may pass ANTHROPIC_API_KEY; nothing else secret comes along."""
    env = scrubbed_env(BASE, extra_allowed=BACKEND_CREDENTIALS["claude"])
    assert env["ANTHROPIC_API_KEY"] == BASE["ANTHROPIC_API_KEY"]
    assert "GITHUB_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_overrides_win_and_are_added() -> None:
    """Overrides replace or add variables after scrubbing (e.g. HOME for an isolated CLI)."""
    env = scrubbed_env(BASE, overrides={"HOME": "/tmp/h", "CI": "true"})
    assert env["HOME"] == "/tmp/h" and env["CI"] == "true"


def test_no_allowlisted_name_looks_like_a_secret() -> None:
    """The fixed allowlist itself carries no key/token/secret/password variable."""
    assert not [n for n in ALLOWED_ENV if any(w in n for w in ("KEY", "TOKEN", "SECRET", "PASSWORD"))]


def test_secret_values_from_dotenv_files_and_env(tmp_path: Path) -> None:
    """Values of .env* files and secret-named env vars are collected, longest first; plain words are not."""
    (tmp_path / ".env").write_text(
        "# comment\nDB_PASSWORD=hunter22\nexport API_TOKEN='tok-123456'\nNODE_ENV=production\nPORT=3000\n"
        'DATABASE_URL="postgres://app:pw@db:5432/app"  \nEMPTY=\n')
    (tmp_path / ".env.local").write_text("STRIPE_SECRET=sk_test_abcdef # trailing comment\n")
    (tmp_path / "not-env.txt").write_text("OTHER=should-not-be-read-123\n")
    values = secret_values(tmp_path, {"GITHUB_TOKEN": "ghp_short_but_ok", "MY_KEY": "short", "HOME": "/home/u1"})
    assert set(values) == {"hunter22", "tok-123456", "postgres://app:pw@db:5432/app", "sk_test_abcdef",
                           "ghp_short_but_ok"}
    assert values == sorted(values, key=lambda v: (-len(v), v))


def test_secret_values_feed_the_redactor(tmp_path: Path) -> None:
    """A .env value printed by a test run is redacted from its output."""
    (tmp_path / ".env").write_text("SERVICE_PASS=correct-horse-battery\n")
    out = redact("connecting with correct-horse-battery ...", extra_secrets=secret_values(tmp_path, {}))
    assert "correct-horse" not in out


def test_missing_root_gives_only_env_values(tmp_path: Path) -> None:
    """No .env files is not an error."""
    assert secret_values(tmp_path / "nope", {"X_SECRET": "12345678"}) == ["12345678"]
