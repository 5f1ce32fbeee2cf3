"""A length cap never leaves a partial secret at rest (issue 10 §4, the truncation class).

Agent text is capped (state-file spans at 160, decisions at 200, ledger actions at 200, commit
subjects at 72, notifications at 300) before it reaches a writer. A cap applied before redaction
cuts a key so that its prefix no longer matches any credential shape, and the prefix reached
the file. These tests place every kind of secret so the cap cuts it at every offset.
"""

from __future__ import annotations

import random

import pytest

from loop_runtime.core.redact import MARK, clip, redact
from loop_runtime.core.sanitize import clean, inert
from loop_runtime.core.secrets import redact_file_text
from loop_runtime.dashboard.views import safe
from tests.test_secrets_at_rest import ENV_SECRET, KINDS


def _leaked(out: str, secret: str, kind: str) -> str | None:
    """The longest prefix of ``secret`` still visible, if long enough to matter."""
    floor = 8 if kind.startswith("aws-secret") else 5  # a few chars of a random key are no key
    for k in range(len(secret), floor - 1, -1):
        if secret[:k] in out:
            return secret[:k]
    return None


def _cut_everywhere(carrier: str, secret: str, cap: int) -> list[str]:
    """``carrier`` behind filler so that a ``cap``-long cut lands at every offset inside ``secret``."""
    start = carrier.index(secret)
    texts = []
    for j in range(len(secret) + 1):
        pad = cap - 1 - (start + j)
        if pad < 2:
            continue
        texts.append("a" * (pad - 1) + " " + carrier + " and some more words after it")
    return texts


CAPS = (72, 160, 200)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("cap", CAPS)
def test_clean_and_inert_redact_before_they_cut(kind: str, cap: int) -> None:
    carrier, secret = KINDS[kind](random.Random(hash(kind) & 0xFFFF))
    for text in _cut_everywhere(carrier, secret, cap):
        for out in (clean(text, cap), inert(text, cap)):
            written = redact_file_text("STATE.md", out, (ENV_SECRET,))
            assert _leaked(written, secret, kind) is None, (kind, out)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("cap", CAPS)
def test_clip_redacts_before_it_cuts_and_marks_the_cut(kind: str, cap: int) -> None:
    carrier, secret = KINDS[kind](random.Random(cap))
    for text in _cut_everywhere(carrier, secret, cap):
        out = clip(text, cap)
        assert len(out) <= cap
        # a writer that knows the literal values hides a prefix a cap left before the mark
        for path in ("loop-ledger.json", "loop-run-log.md", "STATE.md", "notes.txt"):
            body = f'{{"action": "{out}"}}' if path.endswith(".json") else out
            assert _leaked(redact_file_text(path, body, (ENV_SECRET,)), secret, kind) is None, (kind, path, out)


def test_a_writer_hides_a_known_value_cut_by_a_cap_it_did_not_apply() -> None:
    """The cap ran where the literal secrets are unknown; the writer still recognises the prefix."""
    for j in range(5, len(ENV_SECRET)):
        cut = f"deploy with {ENV_SECRET[:j]}…"
        assert ENV_SECRET[:5] not in redact(cut, extra_secrets=(ENV_SECRET,)), cut
    # and text that merely ends in an ellipsis is left alone
    assert redact("wait for it…", extra_secrets=(ENV_SECRET,)) == "wait for it…"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_dashboard_redacts_before_it_caps(kind: str) -> None:
    carrier, secret = KINDS[kind](random.Random(3))
    for text in _cut_everywhere(carrier, secret, 120):
        assert _leaked(safe(text, (ENV_SECRET,), 120), secret, kind) is None


@pytest.mark.parametrize("value", ['abc,def;ghi', 'ab"cd"ef', "x'y'z,w", "p@ss;w0rd,1", "a(b)c{d}e"])
def test_a_bare_password_value_is_hidden_whole(value: str) -> None:
    out = redact(f"set password={value} then retry")
    assert out == f"set password={MARK} then retry"
    # inside a JSON string the value still stops at the closing quote: the JSON stays valid
    import json

    doc = json.dumps({"note": "password=hunter2,x", "n": 1})
    assert json.loads(redact(doc))["n"] == 1


def test_a_real_tick_leaves_no_cut_secret_anywhere_nor_on_stdout_or_stderr(tmp_path) -> None:
    """End to end: an item title long enough that every cap (commit subject 72, state spans 160,
    ledger 200) cuts a key part-way; no prefix of it is left in any file, store column (but the
    held diff), git history, or the CLI's stdout/stderr (`run`, `status --json`, `escalations --json`)."""
    from tests.test_secrets_at_rest import ENV_NAME, _leaks, _project, _scenario
    from tests.conftest import run_cli

    rng = random.Random(11)
    _, early = KINDS["github-classic"](rng)  # spans the 72 cut
    _, late = KINDS["github-classic"](rng)  # spans the 200 cut
    # the title follows "test_add fails " in the scenario; place each key so a cap leaves 20 of its
    # first characters (too few for any credential shape): the commit subject "loop(ci-sweeper): …"
    # is cut at 72, the ledger action "fix CI-1: …" at 200
    title = "w" * 18 + " " + early + " " + "v" * 94 + " " + late + " tail words"
    assert title.index(early) == 19 and title.index(late) == 155
    placed = {"title": [(title, early)], "summary": [(f"{'s' * 150} {ENV_SECRET}", ENV_SECRET)]}
    repo = _project(tmp_path)
    proc = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", _scenario(tmp_path, placed), cwd=repo,
                   env={ENV_NAME: ENV_SECRET})
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    outs = [proc.stdout + proc.stderr]
    for args in (("status", "--json"), ("escalations", "--json")):
        p = run_cli(*args, cwd=repo, env={ENV_NAME: ENV_SECRET})
        outs.append(p.stdout + p.stderr)
    fragments = [early[:14], late[:14], ENV_SECRET[:10]]
    assert _leaks(repo, fragments) == []
    for out in outs:
        assert [f for f in fragments if f in out] == [], out
