"""No secret at rest (issue 10 §4): whatever an agent says, no file under the project and no
store column but the held diff ever holds a secret; a diff that adds one escalates."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import string
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from loop_runtime.core.redact import MARK
from loop_runtime.core.secrets import added_secrets, redact_file_text, redact_json_text, redact_markdown
from loop_runtime.ports import FileChange
from tests.conftest import run_cli
from tests.support.gitrepo import git, make_repo
from tests.test_act_path import BUGGY, FIXED, TEST

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "_-"


# --------------------------------------------------------------------------- real-format secret generators


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _aws_secret(rng: random.Random) -> str:
    while True:  # a real key is uniformly random: it has upper, lower and digits
        s = _s(rng, ALNUM + "/+", 40)
        if any(c.islower() for c in s) and any(c.isupper() for c in s) and any(c.isdigit() for c in s):
            return s


def _jwt(rng: random.Random) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return (part({"alg": "HS256", "typ": "JWT"}) + "." + part({"sub": _s(rng, ALNUM, 10), "iat": rng.randint(1, 10**9)})
            + "." + _s(rng, B64URL, 43))


# kind -> (text that carries it, the secret that must vanish)
KINDS = {
    "anthropic": lambda r: (s := "sk-ant-api03-" + _s(r, B64URL, 93) + "AA", s),
    "openai": lambda r: (s := "sk-proj-" + _s(r, B64URL, 48), s),
    "xai": lambda r: (s := "xai-" + _s(r, ALNUM, 80), s),
    "google": lambda r: (s := "AIza" + _s(r, B64URL, 35), s),
    "github-classic": lambda r: (s := "ghp_" + _s(r, ALNUM, 36), s),
    "github-oauth": lambda r: (s := "gho_" + _s(r, ALNUM, 36), s),
    "github-fine-grained": lambda r: (s := "github_pat_" + _s(r, ALNUM, 22) + "_" + _s(r, ALNUM, 59), s),
    "aws-access-key": lambda r: (s := "AKIA" + _s(r, string.ascii_uppercase + string.digits, 16), s),
    "aws-secret-key": lambda r: (f"aws_secret_access_key = {(s := _aws_secret(r))}", s),
    "aws-secret-near-id": lambda r: (f"AWS key AKIA{_s(r, string.ascii_uppercase, 16)} with {(s := _aws_secret(r))}",
                                     s),
    "slack": lambda r: (s := f"xoxb-{_s(r, string.digits, 12)}-{_s(r, string.digits, 13)}-{_s(r, ALNUM, 24)}", s),
    "jwt": lambda r: (s := _jwt(r), s),
    "password": lambda r: (f"password={(s := _s(r, ALNUM + '!@#%^&*+=._-|', 14))}", s),
    "token-colon": lambda r: (f"token: {(s := _s(r, ALNUM, 24))}", s),
    "bearer": lambda r: (f"Authorization: Bearer {(s := _s(r, ALNUM + '._-', 40))}", s),
    "url-credentials": lambda r: (f"https://deploy:{(s := _s(r, ALNUM, 18))}@git.example.com/o/r.git", s),
    "env-value": lambda r: (ENV_SECRET, ENV_SECRET),
}
PLACES = ("summary", "title", "detail", "reject-reason", "approve-reason", "test-output")
ENV_NAME = "ACME_DEPLOY_TOKEN"
ENV_SECRET = "q7Zr-" + "".join(random.Random(7).choice(ALNUM) for _ in range(22))


def _project(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\n',
    })


def _printing_calc(carried: list[tuple[str, str]]) -> str:
    """A wrong fix that prints the secrets at run time; the file holds each split, never whole
    (split after two characters, so no fragment has a credential's shape)."""
    prints = ""
    for carrier, secret in carried:
        pre, _, post = carrier.partition(secret)
        prints += f"    print(''.join({list(pre)!r}) + {secret[:2]!r} + {secret[2:]!r} + ''.join({list(post)!r}))\n"
    return f"def add(a, b):\n{prints}    return a * b\n"


def _scenario(tmp_path: Path, placed: dict[str, list[tuple[str, str]]]) -> str:
    def text(place: str, base: str) -> str:
        return " ".join([base, *(c for c, _ in placed.get(place, []))])

    doc = {
        "triage": {"decision": "act", "summary": text("summary", "CI red"), "tokens": 1000,
                   "items": [{"id": "CI-1", "title": text("title", "test_add fails"),
                              "detail": text("detail", "add() subtracts"), "files": ["calc.py"]}]},
        "implementer": [{"tokens": 3000, "files": {"calc.py": _printing_calc(placed.get("test-output", []))}},
                        {"tokens": 3000, "files": {"calc.py": FIXED}}],
        "verifier": [{"verdict": "REJECT", "reasons": [text("reject-reason", "wrong operator")], "tokens": 1000},
                     {"verdict": "APPROVE", "reasons": [text("approve-reason", "looks right")], "tokens": 1000}],
    }
    path = tmp_path / f"scenario-{random.random()}.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _leaks(repo: Path, secrets: list[str]) -> list[str]:
    """Every place under the project (files, git history, store columns but the held diff) holding a secret."""
    found: list[str] = []
    for path in repo.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(repo)}: {s[:12]}…" for s in secrets if s.encode() in data]
    history = git(repo, "log", "--all", "--format=%B%n%N")
    found += [f"git log: {s[:12]}…" for s in secrets if s in history]
    db = repo / ".loop-runtime" / "runtime.db"
    con = sqlite3.connect(db)
    try:
        for (table,) in con.execute("select name from sqlite_master where type='table'"):
            cols = [c[1] for c in con.execute(f"pragma table_info({table})")]
            for row in con.execute(f"select * from {table}"):
                for col, value in zip(cols, row):
                    if table == "escalations" and col == "diff":
                        continue  # the held diff: the one verbatim record
                    found += [f"{table}.{col}: {s[:12]}…" for s in secrets if s in str(value)]
    finally:
        con.close()
    return found


# Invariant: for any mix of real-format secrets placed anywhere in an agent's text (triage summary,
# item title and detail, verifier reasons, test output), a real L2 tick leaves none of them in any
# file under the project, in git history, or in any store column except the held diff.
@settings(max_examples=int(os.environ.get("SECRET_TICK_EXAMPLES", "5")),
          phases=(Phase.explicit, Phase.reuse, Phase.generate))  # a tick is seconds: report, don't shrink
@given(seed=st.integers(0, 2**32), picks=st.lists(st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from(PLACES)),
                                                   min_size=3, max_size=8))
def test_no_secret_from_agent_text_reaches_any_file_or_store_column(
        tmp_path_factory: pytest.TempPathFactory, seed: int, picks: list[tuple[str, str]]) -> None:
    """Secrets of many real formats in every kind of agent text never reach disk (but the held diff)."""
    tmp_path = tmp_path_factory.mktemp("secrets")
    rng = random.Random(seed)
    placed: dict[str, list[tuple[str, str]]] = {}
    secrets: list[str] = []
    for kind, place in picks:
        carrier, secret = KINDS[kind](rng)
        placed.setdefault(place, []).append((carrier, secret))
        secrets.append(secret)
    repo = _project(tmp_path)
    proc = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", _scenario(tmp_path, placed), cwd=repo,
                   env={ENV_NAME: ENV_SECRET})
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    assert "tests: FAILED" in proc.stdout  # the printing attempt really ran and failed
    assert _leaks(repo, secrets) == []
    for name in ("loop-ledger.json",):
        json.loads((repo / name).read_text())  # redaction kept the JSON valid
    run_log = (repo / "loop-run-log.md").read_text()
    for line in run_log.split("<!-- Loop appends below this line -->", 1)[1].splitlines():
        if line.strip():
            json.loads(line)


def test_a_diff_that_adds_a_secret_escalates_and_only_the_held_diff_keeps_it(tmp_path: Path) -> None:
    """An implementer hard-coding a key: escalated `secret-in-diff`, nothing committed, the store's
    held diff is the only verbatim copy (state, run log, ledger and other columns are clean)."""
    repo = _project(tmp_path)
    key = "sk-ant-api03-" + _s(random.Random(3), B64URL, 93) + "AA"
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps({
        "triage": {"decision": "act", "summary": "CI red", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "fix it", "files": ["calc.py"]}]},
        "implementer": [{"tokens": 3000, "files": {"calc.py": FIXED + f'\nANTHROPIC_KEY = "{key}"\n'}}],
        "verifier": [{"verdict": "APPROVE", "tokens": 1000}],
    }))
    proc = run_cli("run", "ci-sweeper", "--level", "L3", "--scenario", str(scen), cwd=repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    esc = json.loads(run_cli("escalations", "--json", cwd=repo).stdout)["escalations"]
    assert [e["reason"] for e in esc] == ["secret-in-diff"]
    assert "calc.py" in proc.stdout and key not in proc.stdout
    assert "loop(" not in git(repo, "log", "--all", "--format=%s")  # never committed
    con = sqlite3.connect(repo / ".loop-runtime" / "runtime.db")
    try:
        (diff,) = con.execute("select diff from escalations").fetchone()
    finally:
        con.close()
    assert key in diff  # verbatim, so a human can see exactly what was proposed
    # the held change itself: the agent's worktree, its patch file and the store's held diff
    held = (".loop-worktrees/", ".loop-runtime/patches/", ".loop-runtime/runtime.db", ".git/")
    assert [p for p in _leaks(repo, [key]) if not p.startswith(held)] == []


# --------------------------------------------------------------------------- the detector and the encoders


@pytest.mark.parametrize("line", [
    'API_KEY = "sk-proj-' + "a1B2" * 12 + '"',
    "token = 'ghp_" + "x9Y8" * 9 + "'",
    'password: "Tr0ub4dor&3-horse"',
    "db = 'postgres://app:S3cretPassw0rd@db.internal/app'",
    "-----BEGIN RSA PRIVATE KEY-----",
    'headers = {"Authorization": "Bearer abcDEF1234567890ghijKLMN"}',
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ9k4vLr8X",
    f"deploy_with('{ENV_SECRET}')",
])
def test_the_diff_detector_finds_added_credentials(line: str) -> None:
    """Each added line carrying a credential (or a known secret value) is a finding, by kind, without the value."""
    found = added_secrets([FileChange("app.py", "modified", added_lines=("x = 1", line))], [ENV_SECRET])
    assert found and found[0].path == "app.py" and found[0].line == 2
    assert all(line not in f.kind for f in found)


@pytest.mark.parametrize("line", [
    "token = get_token()",
    'password = os.environ["DB_PASSWORD"]',
    'api_key: str = ""',
    'secret = "${SECRET_FROM_VAULT}"',
    'password = "changeme"',
    "API_KEY=your-api-key-here",
    "self.token_limit = reservation.amount",
    "sha = '0123456789abcdef0123456789abcdef01234567'",
])
def test_the_diff_detector_leaves_ordinary_code_alone(line: str) -> None:
    """Reading a secret from config, placeholders and hashes are not secrets."""
    assert added_secrets([FileChange("app.py", "modified", added_lines=(line,))]) == ()


@pytest.mark.parametrize(("path", "line"), [
    (".env", "STRIPE_SECRET_KEY=rk_9fKq2LmZ8xVt4WbN"),
    ("config/app.yaml", "db_password: Zq8#mLx2!vR4"),
    ("deploy/settings.ini", "api_key = 4f9b2c7e1a8d3f6b"),
])
def test_config_files_need_no_quotes(path: str, line: str) -> None:
    """In .env, YAML, INI files a bare secret-named value is a finding; the same line in code is not required."""
    assert added_secrets([FileChange(path, "added", added_lines=(line,))])
    assert added_secrets([FileChange(path, "added", added_lines=("db_password: ${DB_PASSWORD}",))]) == ()


def test_binary_and_removed_lines_are_not_findings() -> None:
    """Only added text lines count (a removed key is a fix, a binary blob is not read)."""
    blob = FileChange("x.bin", "added", is_binary=True, added_lines=("ghp_" + "a" * 36,))
    assert added_secrets([blob]) == ()


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


# Invariant: redacting JSON text keeps it valid JSON of the same shape, and no planted secret survives,
# whatever quotes, backslashes, pipes or unicode surround it.
@given(st.dictionaries(st.text(max_size=10), st.one_of(_TEXT, st.integers(), st.lists(_TEXT, max_size=3)),
                       max_size=5), _TEXT, _TEXT, st.sampled_from(sorted(KINDS)), st.integers(0, 2**16),
       st.booleans())
def test_json_redaction_keeps_json_valid(doc: dict, before: str, after: str, kind: str, seed: int,
                                         indent: bool) -> None:
    """A secret inside any JSON string vanishes; the text still parses to the same keys and types."""
    carrier, secret = KINDS[kind](random.Random(seed))
    doc = {**doc, "planted": f"{before} {carrier} {after}", "nested": [{"x": f"{carrier}\\\"|`"}]}
    text = json.dumps(doc, indent=2 if indent else None, ensure_ascii=bool(seed % 2))
    out = redact_json_text(text, [ENV_SECRET])
    parsed = json.loads(out)
    assert set(parsed) == set(doc) and secret not in out
    assert secret not in json.dumps(parsed, ensure_ascii=False)


def test_secret_named_json_keys_hide_their_whole_value() -> None:
    """`"api_key": "anything"` is a secret whatever the value looks like; numbers and other keys stay."""
    text = '{"api_key": "plainwords", "tokens": 5000, "client_secret":"x y z", "title": "ok"}'
    assert json.loads(redact_json_text(text)) == {"api_key": MARK, "tokens": 5000, "client_secret": MARK,
                                                  "title": "ok"}


def test_markdown_tables_keep_their_cells_and_json_lines_stay_json() -> None:
    """A secret with `|` in a table row, or a bare value right against a border, never eats a cell."""
    secret = "ab|cd-Secret-99"
    text = (f"| when | what |\n|---|---|\n| today |password=hunter2hunter2| next |\n"
            f"| x | {secret.replace('|', chr(92) + '|')} |\n"
            + json.dumps({"note": f"token: {secret}"}) + "\n")
    out = redact_markdown(text, [secret])
    rows = out.splitlines()
    assert [r.count("|") - r.count("\\|") for r in rows[:4]] == [3, 3, 4, 3]
    assert "hunter2" not in out and "cd-Secret" not in out
    json.loads(rows[4])


def test_pem_blocks_go_whole_even_when_cut() -> None:
    """A private key in a Markdown file goes entirely, body lines included, even without its END line."""
    body = "\n".join(_s(random.Random(i), ALNUM + "+/", 64) for i in range(4))
    text = f"# State\n\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n\nLast run: x\n"
    out = redact_file_text("STATE.md", text)
    assert all(line not in out for line in body.splitlines()) and "Last run: x" in out


def test_a_key_split_over_two_run_log_lines_never_breaks_their_json() -> None:
    """BEGIN in one JSON line and END in the next: each line is redacted alone and stays valid JSON."""
    text = ("<!-- Loop appends below this line -->\n"
            + json.dumps({"note": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "A" * 40}) + "\n"
            + json.dumps({"note": "x" * 10 + "\n-----END RSA PRIVATE KEY-----"}) + "\n")
    out = redact_file_text("loop-run-log.md", text)
    rows = [json.loads(ln) for ln in out.splitlines()[1:] if ln]
    assert len(rows) == 2 and "MIIEow" not in out
