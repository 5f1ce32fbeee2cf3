"""Secret redaction for everything the runtime writes (logs, transcripts, test output, state).

Why here, in the pure core: redaction is a text → text policy with no I/O, and every
writer must apply the same one. Two sources of secrets are combined:

* exact values the caller knows (``extra_secrets``: values from ``.env`` files and
  secret-named environment variables, see ``adapters.environment.secret_values``);
* shapes of well-known credentials (provider keys, tokens, JWTs, PEM private keys,
  ``Authorization`` headers, ``password=``-style assignments, ``user:pass@`` URLs).

Each match becomes ``[REDACTED]``; assignments and headers keep their name so the text
stays readable. The function is idempotent: replacement runs to a fixed point, so
``redact(redact(x)) == redact(x)`` even where one replacement exposes another match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["MARK", "MIN_SECRET_LEN", "may_hold_secret", "redact", "variants"]

MARK = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter literal "secrets" would shred ordinary text
_MAX_PASSES = 4

_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
    re.DOTALL,
)

# name=value / name: value where the name ends in a secret word. The value is quoted or a bare word.
_ASSIGN = re.compile(
    r"""(?ix)
    (?<![A-Za-z0-9])
    (
      ["']?
      [A-Za-z0-9_.-]*?
      (?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key
         |client[_-]?secret|auth[_-]?key|credentials?)
      ["']?
      [ \t]*[:=][ \t]*
    )
    (?:(["'])(?!\[REDACTED\]\2)(?:(?!\2)[^\n])+\2|(?!\[REDACTED\])[^\s"'`,;}{)(\]\[]+)
    """
)

_AUTH_HEADER = re.compile(
    r"(?i)((?>\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:bearer|basic|token|bot)[ \t]+)?))"
    r"(?!\[REDACTED\])[^\s\"'`,;]+"
)
_BEARER = re.compile(r"(?i)(\bbearer[ \t]+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}")
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/:@]+:)(?!\[REDACTED\]@)[^\s/@]+(@)")

_TOKENS = re.compile(
    r"""(?x)
    (?<![A-Za-z0-9_-])
    (?:
        sk-ant-[A-Za-z0-9_-]{16,}
      | sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}
      | xai-[A-Za-z0-9_-]{20,}
      | (?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}
      | gh[pousr]_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{22,}
      | glpat-[A-Za-z0-9_-]{20,}
      | xox[abprse]-[A-Za-z0-9-]{10,}
      | xapp-[A-Za-z0-9-]{10,}
      | (?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}
      | AIza[0-9A-Za-z_-]{35}
      | ya29\.[0-9A-Za-z_-]{20,}
      | npm_[A-Za-z0-9]{36}
      | hf_[A-Za-z0-9]{30,}
      | eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}
      | xoxe\.xox[bp]-[A-Za-z0-9-]{10,}
      | https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}
    )
    """
)

# A bare AWS secret access key: 40 base64 characters with upper, lower and digits, not hex
# (a git sha) — only next to an AWS access key id or an ``aws``/``secret`` word nearby, so a
# random 40-character identifier elsewhere is left alone.
_AWS_SECRET = re.compile(
    r"(?i:(?:AKIA|ASIA)[0-9A-Z]{16}|aws|secret)[^\n]{0,80}?"
    r"(?<![A-Za-z0-9/+=_.-])((?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[0-9])"
    r"[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=_.-])"
)


def variants(secret: str) -> set[str]:
    """The forms a literal secret takes once written: as is, JSON-escaped, with Markdown's ``\\|``,
    and as ``sanitize.clean`` renders it in a state file (backticks → ``'``, whitespace collapsed)."""
    forms = {secret, secret.replace("|", "\\|"), json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1]}
    cleaned = " ".join("".join("'" if ch == "`" else " " if ch in "\t\n\r\f\v" else ch for ch in secret).split())
    forms |= {cleaned, cleaned.replace("|", "\\|")}
    return {f for f in forms if len(f) >= MIN_SECRET_LEN and f not in MARK}


@lru_cache(maxsize=64)
def _compiled_literals(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    usable: set[str] = set()
    for s in secrets:
        if len(s) >= MIN_SECRET_LEN and s not in MARK:
            usable |= variants(s)
    if not usable:
        return None
    ordered = sorted(usable, key=len, reverse=True)  # longest first: a secret containing another wins
    return re.compile("|".join(re.escape(s) for s in ordered))


def _literal_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    return _compiled_literals(tuple(sorted({s for s in secrets if isinstance(s, str)})))


def _keep_group(match: re.Match[str]) -> str:
    return match.group(1) + MARK


def _assign_sub(match: re.Match[str]) -> str:
    quote = match.group(2) or ""
    return match.group(1) + quote + MARK + quote


def _url_sub(match: re.Match[str]) -> str:
    return match.group(1) + MARK + match.group(2)


def _one_pass(text: str, literal: re.Pattern[str] | None) -> str:
    if literal is not None:
        text = literal.sub(MARK, text)
    text = _PEM.sub(MARK, text)
    text = _URL_CREDENTIALS.sub(_url_sub, text)
    text = _AUTH_HEADER.sub(_keep_group, text)
    text = _BEARER.sub(_keep_group, text)
    text = _ASSIGN.sub(_assign_sub, text)
    text = _TOKENS.sub(MARK, text)
    return _AWS_SECRET.sub(_aws_sub, text)


def _aws_sub(match: re.Match[str]) -> str:
    start, end = match.span(1)
    whole = match.group(0)
    return whole[: start - match.start()] + MARK + whole[end - match.start():]


# A cheap superset of every pattern above: text without any of these cannot match one, so it is
# returned untouched without running the passes (most of what the runtime writes is like that).
_MAYBE = re.compile(  # matched against the lower-cased text: case-insensitive regexes are slow
    r"-----begin|://|authorization|bearer|aws|secret"
    r"|(?:password|passwd|passphrase|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|auth[_-]?key"
    r"|credentials?)s?(?:\\?[\"'])?(?:[ \t]|\\t)*[:=]"
    r"|sk-|xai-|[srp]k_(?:live|test)_|gh[pousr]_|github_pat_|glpat-|xox|xapp-"
    r"|akia|asia|agpa|aida|aroa|anpa|aiza|ya29\.|npm_|hf_|eyj"
)


@lru_cache(maxsize=64)
def _literal_values(secrets: tuple[str, ...]) -> tuple[str, ...]:
    found: set[str] = set()
    for s in secrets:
        if len(s) >= MIN_SECRET_LEN and s not in MARK:
            found |= variants(s)
    return tuple(found)


def may_hold_secret(text: str, extra_secrets: Iterable[str] = ()) -> bool:
    """False only when ``redact`` would surely change nothing — also for the JSON-encoded form of
    ``text`` (an escaped quote or tab in front of ``:`` still counts), so encoded text can be
    skipped whole before its strings are decoded one by one."""
    if _MAYBE.search(text.lower()) is not None:
        return True
    values = _literal_values(tuple(sorted({s for s in extra_secrets if isinstance(s, str)})))
    return any(v in text for v in values)


def redact(text: str, *, extra_secrets: Iterable[str] = ()) -> str:
    """Replace every known secret value and every credential-shaped string with ``[REDACTED]``."""
    if not text:
        return text
    if not may_hold_secret(text, extra_secrets):
        return text
    literal = _literal_pattern(extra_secrets)
    for _ in range(_MAX_PASSES):
        new = _one_pass(text, literal)
        if new == text:
            return new
        text = new
    return text
