"""Secret redaction: known shapes, literal values, and idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.core.redact import MARK, redact

SECRETS = {
    "anthropic": "sk-ant-api03-" + "A1b2C3d4" * 6,
    "openai": "sk-proj-" + "Zz09_-" * 6,
    "github classic": "ghp_" + "a1B2" * 9,
    "github fine-grained": "github_pat_11ABCDEFG0" + "x" * 40,
    "slack": "xoxb-1234567890-0987654321-abcdefghij",
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "google": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"[:35],
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "gitlab": "glpat-" + "abcdefghij0123456789",
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_known_token_shapes_are_redacted(name: str) -> None:
    """Each provider's key format disappears from surrounding text."""
    secret = SECRETS[name]
    out = redact(f"using {secret} today")
    assert secret not in out
    assert out == f"using {MARK} today"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("OPENAI_API_KEY=abc123def456", f"OPENAI_API_KEY={MARK}"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", f"aws_secret_access_key = {MARK}"),
        ('{"password": "hunter2!", "user": "bob"}', f'{{"password": "{MARK}", "user": "bob"}}'),
        ("db_password: 'p@ss w0rd'", f"db_password: '{MARK}'"),
        ("Authorization: Bearer abc.def.ghi-123", f"Authorization: Bearer {MARK}"),
        ("curl -H 'authorization: token ghs_x1'", f"curl -H 'authorization: token {MARK}'"),
        ("clone https://bob:s3cr3t@github.com/o/r.git", f"clone https://bob:{MARK}@github.com/o/r.git"),
        ("export GITHUB_TOKEN=tok_value_1", f"export GITHUB_TOKEN={MARK}"),
    ],
)
def test_assignments_headers_and_urls_keep_their_names(text: str, expected: str) -> None:
    """Only the value goes; the name stays so the text is still readable (and JSON stays JSON)."""
    assert redact(text) == expected


def test_pem_private_keys_are_removed_whole() -> None:
    """A PEM private key block goes entirely, even when output was cut before its END line."""
    key = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAAB3NzaC1yc2E=\n"
           "-----END OPENSSH PRIVATE KEY-----")
    assert redact(f"before\n{key}\nafter") == f"before\n{MARK}\nafter"
    assert redact("x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow") == f"x\n{MARK}"


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens: 5000 and input_tokens=3",
        "the token budget is spent",
        "commit 0123456789abcdef0123456789abcdef01234567",
        "Usage: tokens 12,345 / 100,000",
        "password reset flow explained",
        "sk-short",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    """Budgets, commit ids and prose about passwords are not secrets."""
    assert redact(text) == text


def test_extra_secrets_are_replaced_literally_longest_first() -> None:
    """Known values go wherever they appear; a secret containing another is removed whole."""
    out = redact("pw=topsecret99 url=db://topsecret99-replica", extra_secrets=["topsecret99", "topsecret99-replica"])
    assert "topsecret" not in out
    assert out == f"pw={MARK} url=db://{MARK}"


def test_tiny_or_marker_like_extra_secrets_are_ignored() -> None:
    """Values shorter than 4 characters, or inside the marker itself, would shred text."""
    assert redact("a b c REDACTED", extra_secrets=["a", "b", "DACT"]) == "a b c REDACTED"


_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=20)
_noise = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_planted = st.sampled_from(sorted(SECRETS.values()))


# Invariant: redaction is idempotent on any text, with or without literal secrets.
@settings(max_examples=200)
@given(_noise, st.lists(_alnum, max_size=3))
def test_redact_is_idempotent(text: str, extra: list[str]) -> None:
    """redact(redact(x)) == redact(x)."""
    once = redact(text, extra_secrets=extra)
    assert redact(once, extra_secrets=extra) == once


# Invariant: no planted secret (known shape or literal value) survives, whatever surrounds it.
@settings(max_examples=200)
@given(_noise, _planted, _noise, _alnum, _noise)
def test_no_planted_secret_survives(before: str, shaped: str, middle: str, literal: str, after: str) -> None:
    """Secrets planted in arbitrary text are gone after redaction, and a second pass changes nothing."""
    text = f"{before} {shaped} {middle} {literal} {after}"
    out = redact(text, extra_secrets=[literal])
    assert shaped not in out
    assert literal not in out
    assert redact(out, extra_secrets=[literal]) == out
