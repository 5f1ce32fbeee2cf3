"""Secrets at rest: format-aware redaction for every writer, and secrets added by a diff.

Why format-aware: ``redact`` works on plain text, but what the runtime writes is JSON
(the ledger, ``docs/last-run.json``, run-log entries, store columns) and Markdown (state
files, the run log). A replacement made on the *encoded* text can break it: a value
ending in ``\\"`` loses its escape and closes the string early; ``password=a|b`` in a
table row eats the cell border. So JSON strings are decoded, redacted and re-encoded one
at a time (the rest of the text is kept byte for byte), table rows are redacted cell by
cell, and a value under a secret-named key (``"api_key": "…"``) is hidden whole.

Why a separate detector for diffs: the held diff is the one verbatim record (it must
apply later), so it is never redacted; a diff that *adds* a credential is escalated
instead (``secret-in-diff``). Code is full of ``token = get_token()``, so the detector is
stricter than the redactor: credential shapes, private keys, URLs with a password, known
secret values, and secret-named assignments of a quoted literal that looks like one.

Pure functions, no I/O: the writers in ``adapters`` pass the secret values they know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .redact import _AWS_SECRET, _PEM, _TOKENS, _URL_CREDENTIALS, MARK, may_hold_secret, redact

__all__ = [
    "SECRET_KEY",
    "SecretFinding",
    "added_secrets",
    "redact_file_text",
    "redact_json_text",
    "redact_markdown",
    "redact_tree",
]

SECRET_KEY = re.compile(r"(?i)(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key"
                        r"|private[_-]?key|client[_-]?secret|auth[_-]?key|credentials?|authorization)s?$")
"""A mapping key whose string value is a secret whatever it looks like (``"api_key": "…"``)."""

_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_KEY_GAP = re.compile(r"\s*:\s*")
_COLON_AFTER = re.compile(r"\s*:")
_CELL_BORDER = re.compile(r"(?<!\\)\|")
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_PEM_BODY = re.compile(r"^[A-Za-z0-9+/=]{16,}$")


# --------------------------------------------------------------------------- redaction


def redact_tree(value: Any, secrets: Sequence[str] = ()) -> Any:
    """Every string (keys too) of a JSON-like value redacted; a secret-named key's string value hidden whole."""
    if isinstance(value, str):
        return redact(value, extra_secrets=secrets)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = redact(str(k), extra_secrets=secrets)
            out[key] = MARK if isinstance(v, str) and v and SECRET_KEY.search(str(k)) else redact_tree(v, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_tree(v, secrets) for v in value]
    return value


def _encode(value: str, raw: str) -> str:
    return json.dumps(value, ensure_ascii=raw.isascii())


def redact_json_text(text: str, secrets: Sequence[str] = ()) -> str:
    """Redact the string literals of JSON text, keeping everything else byte for byte (valid JSON stays valid)."""
    if not may_hold_secret(text, secrets):
        return text
    out: list[str] = []
    pos = 0
    key_end, key_secret = -1, False
    for m in _JSON_STRING.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        raw = m.group(0)
        try:
            value = json.loads(raw)
        except ValueError:
            out.append(raw)
            continue
        is_key = _COLON_AFTER.match(text, m.end()) is not None
        under_secret = key_secret and key_end >= 0 and _KEY_GAP.fullmatch(text, key_end, m.start()) is not None
        if under_secret and value and value != MARK:
            new = MARK
        else:
            new = redact(value, extra_secrets=secrets)
        if is_key:
            key_end, key_secret = m.end(), bool(SECRET_KEY.search(value))
        else:
            key_end, key_secret = -1, False
        out.append(raw if new == value else _encode(new, raw))
    out.append(text[pos:])
    return "".join(out)


def _looks_like_json(line: str) -> bool:
    s = line.strip()
    if not s or s[0] not in "{[" or s[-1] not in "}]":
        return False
    try:
        json.loads(s)
    except ValueError:
        return False
    return True


def _redact_line(line: str, secrets: Sequence[str]) -> str:
    if not may_hold_secret(line, secrets):
        return line
    if _looks_like_json(line):
        return redact_json_text(line, secrets)
    if line.lstrip().startswith("|"):
        cells = _CELL_BORDER.split(line)
        return "|".join(redact(c, extra_secrets=secrets) for c in cells)
    return redact(line, extra_secrets=secrets)


def redact_markdown(text: str, secrets: Sequence[str] = ()) -> str:
    """Redact a Markdown file line by line: JSON lines as JSON, table rows cell by cell.

    Multi-line secrets (a PEM block, a known value with a newline) are removed from the
    whole text first; the base64 body of a PEM block cut before its END line goes too.
    """
    if not may_hold_secret(text, secrets):
        return text
    multi = [s for s in secrets if "\n" in s]
    # a whole block only: one that spans a quote would cross JSON lines, which are handled one by one
    text = _PEM.sub(lambda m: MARK if "-----END" in m.group(0) and '"' not in m.group(0) else m.group(0), text)
    if multi:  # raw, they cannot sit inside a JSON line (JSON escapes newlines)
        text = _literal_only(text, multi)
    lines = text.split("\n")
    out: list[str] = []
    in_pem = False
    for line in lines:
        if in_pem and _PEM_BODY.match(line.strip()):
            continue
        in_pem = _PEM_BEGIN.search(line) is not None
        out.append(_redact_line(line, secrets))
    return "\n".join(out)


def _literal_only(text: str, values: Sequence[str]) -> str:
    for v in sorted(values, key=len, reverse=True):
        text = text.replace(v, MARK)
    return text


def redact_file_text(path: str, text: str, secrets: Sequence[str] = ()) -> str:
    """What a project file may hold at rest: JSON files as JSON, Markdown as Markdown, else plain text."""
    if not text:
        return text
    lower = path.lower()
    if lower.endswith((".json", ".jsonl")):
        if lower.endswith(".jsonl"):
            return "\n".join(_redact_line(ln, secrets) for ln in text.split("\n"))
        return redact_json_text(text, secrets)
    if lower.endswith((".md", ".markdown")):
        return redact_markdown(text, secrets)
    return redact(text, extra_secrets=secrets)


# --------------------------------------------------------------------------- detection in diffs


@dataclass(frozen=True)
class SecretFinding:
    """One added line of a diff that carries a credential; ``kind`` names it, never the value."""

    path: str
    line: int  # 1-based among the file's added lines
    kind: str


_TOKEN_KINDS = (
    ("sk-ant-", "Anthropic API key"), ("xai-", "xAI API key"), ("sk-", "OpenAI-style API key"),
    ("github_pat_", "GitHub token"), ("gh", "GitHub token"), ("glpat-", "GitLab token"),
    ("xox", "Slack token"), ("xapp-", "Slack token"), ("https://hooks.slack", "Slack webhook"),
    ("AIza", "Google API key"), ("ya29.", "Google OAuth token"), ("eyJ", "JWT"), ("npm_", "npm token"),
    ("hf_", "Hugging Face token"), ("AKIA", "AWS access key"), ("ASIA", "AWS access key"),
)

_QUOTED_ASSIGN = re.compile(
    r"""(?ix)
    (?<![A-Za-z0-9])
    ["']?[A-Za-z0-9_.-]*?
    (?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key
       |client[_-]?secret|auth[_-]?key|credentials?)
    ["']?\s*(?::\s*[A-Za-z_][A-Za-z0-9_.\[\]]*\s*)?(?:=|:|:=|=>)\s*
    (?:[A-Za-z]{1,2})?(["'`])(?P<value>[^"'`\s]{8,})\1
    """
)
# in config files (``.env``, INI, YAML, TOML, properties) a value needs no quotes
_BARE_ASSIGN = re.compile(
    r"""(?ix)
    ^\s*(?:export\s+)?["']?[A-Za-z0-9_.-]*?
    (?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key
       |client[_-]?secret|auth[_-]?key|credentials?|[_-]key)
    ["']?\s*[:=]\s*(?P<value>[^\s"'`()\[\]{}]{8,})(?:\s+\#.*)?\s*$
    """
)
_CONFIG_FILE = re.compile(r"(?i)(?:^|/)(?:\.env[^/]*|[^/]*\.(?:env|ini|cfg|conf|properties|ya?ml|toml|npmrc|netrc)"
                          r"|credentials|\.npmrc|\.netrc|\.pypirc)$")
_BEARER_LITERAL = re.compile(r"(?i)\bbearer[ \t]+(?P<value>[A-Za-z0-9._~+/-]{20,}=*)")
_PLACEHOLDER = re.compile(r"(?i)^(?:x+|\*+|\.+|-+|<[^>]*>|\$\{[^}]*\}|\{\{.*\}\}|%\(.*\)s|\$[A-Z_]+|"
                          r".*(?:example|placeholder|changeme|your[_-]|dummy|redacted|xxxx).*)$")


def _kind_of_token(token: str) -> str:
    for prefix, kind in _TOKEN_KINDS:
        if token.startswith(prefix):
            return kind
    return "credential"


def _looks_secret(value: str) -> bool:
    """A literal value that looks like a real credential, not a placeholder or a word."""
    if _PLACEHOLDER.match(value) or MARK in value:
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return classes >= 2


def _line_findings(line: str, secrets: Sequence[str], config: bool = False) -> list[str]:
    kinds: list[str] = []
    if any(s in line for s in secrets):
        kinds.append("known secret value")
    kinds += [_kind_of_token(m.group(0)) for m in _TOKENS.finditer(line)]
    if _PEM_BEGIN.search(line):
        kinds.append("private key")
    for m in _URL_CREDENTIALS.finditer(line):
        password = line[m.end(1):m.end() - 1]
        if _looks_secret(password):
            kinds.append("URL with a password")
    for m in _BEARER_LITERAL.finditer(line):
        if _looks_secret(m.group("value")):
            kinds.append("bearer token")
    for m in _QUOTED_ASSIGN.finditer(line):
        if _looks_secret(m.group("value")):
            kinds.append("secret assignment")
    if config:
        m = _BARE_ASSIGN.match(line)
        if m and _looks_secret(m.group("value")):
            kinds.append("secret assignment")
    kinds += ["AWS secret key" for m in _AWS_SECRET.finditer(line) if _looks_secret(m.group(1))]
    return kinds


def added_secrets(changes: Iterable[Any], secrets: Iterable[str] = ()) -> tuple[SecretFinding, ...]:
    """Credentials on the lines a diff adds (``FileChange.added_lines``); binary files are not read.

    ``secrets`` are exact values known to be secret (``.env`` values, secret-named
    environment variables); values shorter than 8 characters are ignored here, since a
    short value turns up in ordinary code by chance.
    """
    known = [s for s in secrets if isinstance(s, str) and len(s) >= 8]
    found: list[SecretFinding] = []
    for change in changes:
        if getattr(change, "is_binary", False):
            continue
        config = _CONFIG_FILE.search(str(change.path)) is not None
        for n, line in enumerate(getattr(change, "added_lines", ()) or (), 1):
            for kind in dict.fromkeys(_line_findings(line, known, config)):
                found.append(SecretFinding(path=str(change.path), line=n, kind=kind))
    return tuple(found)


def describe(findings: Sequence[SecretFinding], limit: int = 5) -> str:
    """``path (kind)`` for each finding — what a human needs, never the value itself."""
    parts = [f"{f.path}:+{f.line} ({f.kind})" for f in findings[:limit]]
    more = f" and {len(findings) - limit} more" if len(findings) > limit else ""
    return "; ".join(parts) + more
