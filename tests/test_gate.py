"""The path gate (R13, R14): gate.yaml parsing, minimatch semantics, decision order and output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.adapters.project_files import load_gate_policy
from loop_runtime.core.gate import GateDecision, check, format_decision, glob_match, js_trim, split_paths_arg
from loop_runtime.errors import ConfigError
from loop_runtime.formats.gate_config import (
    DEFAULT_POLICY,
    GatePolicy,
    parse_gate_yaml,
    render_gate_yaml,
)

FIXTURES = Path(__file__).parent / "fixtures"
ROOT_DENYLIST = ("**/.env", "**/.env.*", "**/secrets/**", "**/credentials/**", "**/*_key*", "**/*_secret*",
                 "**/.terraform/**", "**/k8s/production/**", "**/migrations/**", "**/auth/**", "**/payments/**",
                 "**/billing/**")
ROOT_POLICY = GatePolicy(ROOT_DENYLIST, 10, ("docs/**", "**/*.md"), "root")


def coaligne() -> GatePolicy:
    return parse_gate_yaml((FIXTURES / "examples__coaligne__gate.yaml").read_text(), file="gate.yaml")


# ------------------------------------------------------------------ minimatch {dot: true}


@pytest.mark.parametrize(("path", "glob", "hit"), [
    ("secrets/x", "**/secrets/**", True),
    ("a/secrets/.env", "**/secrets/**", True),
    (".cfg/secrets/y", "**/secrets/**", True),
    ("secrets", "**/secrets/**", False),
    (".aws_key", "**/*_key*", True),
    ("deep/er/id_key.pem", "**/*_key*", True),
    (".env", ".env", True),
    ("a/.env", ".env", False),
    ("a/.env", "**/.env", True),
    (".env.local", ".env.*", True),
    ("a/.env.local", ".env.*", False),
    ("docs/a/b.md", "docs/**", True),
    ("docs", "docs/**", False),
    ("x/.hidden.md", "**/*.md", True),
    ("a/../secrets/x", "**/secrets/**", False),  # ** never crosses a ".." portion
    ("./.env", "**/.env", False),
    ("/.env", "**/.env", True),
    ("docs//x.md", "docs/*.md", True),
    ("docs/x.md/", "docs/*.md", True),
    ("server/app/x/y/authz.py", "server/app/**/auth*", True),
    ("README.md", "!**/*.md", False),
    ("src/a.ts", "!**/*.md", True),
    ("(foo)", "!(foo)", False),  # a leading ! negates the whole pattern, as in minimatch
    (".env/a.pem", "!(foo)", True),
    ("anything", "#comment", False),
    ("", "", True),
    ("a.pem", "*.{pem,key}", True),
    ("c", "{a,b}/../c", True),
    (".", ".*", False),
    ("..", "*", False),
    ("😀", "?", False),  # JS sees two UTF-16 code units
    ("😀", "??", True),
])
def test_glob_match_has_minimatch_dot_semantics(path: str, glob: str, hit: bool) -> None:
    """Spot checks of minimatch(path, glob, {dot: true}); the parity test covers thousands more."""
    assert glob_match(path, glob) is hit


# ------------------------------------------------------------------ decisions


def test_denylist_wins_over_file_count_and_allowlist() -> None:
    """Check order: denylist first, whatever the action, listing only the denylisted paths."""
    paths = [f"docs/{i}.md" for i in range(20)] + ["a/.env"]
    d = check(ROOT_POLICY, paths, "auto-merge")
    assert (d.allowed, d.trigger, d.matched_paths) == (False, "denylist", ("a/.env",))
    assert d.reason == "1 path(s) match the denylist: a/.env. Escalating for human review."


def test_file_count_before_allowlist() -> None:
    """More than maxFiles paths escalates with every path listed."""
    paths = [f"src/{i}.ts" for i in range(11)]
    d = check(ROOT_POLICY, paths, "auto-merge")
    assert (d.trigger, d.matched_paths) == ("file-count", tuple(paths))
    assert d.reason == "11 changed file(s) exceeds the max-files threshold (10). Escalating for human review."
    assert check(ROOT_POLICY, paths[:10], "commit").allowed


def test_allowlist_only_applies_to_auto_merge() -> None:
    """A non-allowlisted path blocks auto-merge but not commit or merge."""
    paths = ["docs/guide.md", "src/app.ts"]
    assert check(ROOT_POLICY, paths, "commit").allowed
    assert check(ROOT_POLICY, paths, "merge").allowed
    d = check(ROOT_POLICY, paths, "auto-merge")
    assert (d.trigger, d.matched_paths) == ("not-allowlisted", ("src/app.ts",))
    assert d.reason == ("1 path(s) are not on the auto-merge allowlist: src/app.ts. "
                        "Escalating for human review.")


def test_ok_decision_shape_and_outputs() -> None:
    """An allowed change: loop-gate's JSON keys in order, its human line and exit code 0."""
    d = check(ROOT_POLICY, ["docs/README.md"], "auto-merge")
    assert d == GateDecision(True, "ok", "Within policy — cleared to proceed.", ())
    assert list(d.as_json().items()) == [("allowed", True), ("trigger", "ok"),
                                         ("reason", "Within policy — cleared to proceed."), ("matchedPaths", [])]
    assert format_decision(d) == "ALLOWED [ok] — Within policy — cleared to proceed."
    assert d.exit_code == 0
    denied = check(ROOT_POLICY, ["x/auth/y"])
    assert format_decision(denied).startswith("ESCALATE [denylist] — ") and denied.exit_code == 2


def test_default_policy_disables_auto_merge() -> None:
    """R14: the fallback policy lets nothing auto-merge and still denies secrets."""
    assert DEFAULT_POLICY.auto_merge_allowlist is None and DEFAULT_POLICY.source == "default"
    assert check(DEFAULT_POLICY, ["docs/typo.md"], "auto-merge").trigger == "not-allowlisted"
    assert check(DEFAULT_POLICY, ["docs/typo.md"], "commit").allowed
    assert check(DEFAULT_POLICY, ["db/migrations/001.sql"], "commit").trigger == "denylist"


def test_invalid_action_is_a_config_error() -> None:
    """Actions are commit | merge | auto-merge; anything else names the valid ones."""
    with pytest.raises(ConfigError, match="Invalid --action: push. Use one of: commit, merge, auto-merge."):
        check(ROOT_POLICY, ["a"], "push")


def test_empty_change_is_allowed() -> None:
    """No paths, nothing to refuse (the CLI itself insists on at least one)."""
    assert check(ROOT_POLICY, [], "auto-merge").allowed


def test_split_paths_arg_trims_like_javascript() -> None:
    """--paths splitting: commas, JS trim (incl. NBSP and BOM), empty entries dropped."""
    assert split_paths_arg(" a , ,b,\u00a0c\ufeff,,") == ["a", "b", "c"]
    assert js_trim("\x1cx\x1c") == "\x1cx\x1c"  # Python's strip() would remove these; JS does not


# ------------------------------------------------------------------ drills (loop-drill's gate group)


def _sample_path(glob: str) -> str:
    """loop-drill's samplePathFor: a concrete path that should match a denylist glob."""
    segments = []
    for segment in glob.split("/"):
        if segment == "**":
            segments.append("src")
        elif segment == "*":
            segments.append("sample")
        else:
            segments.append(re.sub(r"\*", lambda m: "drill" if m.start() == 0 else "sample", segment))
    concrete = "/".join(segments)
    return f"{concrete}/drill-file.txt" if re.search(r"(^|/)src$", concrete) else concrete


@pytest.mark.parametrize("policy", [ROOT_POLICY, coaligne()], ids=["root", "coaligne"])
def test_gate_drills_pass(policy: GatePolicy) -> None:
    """R13: every loop-drill gate drill passes — sensitivity and specificity."""
    for glob in policy.denylist:
        d = check(policy, [_sample_path(glob)], "commit")
        assert d.trigger == "denylist", (glob, _sample_path(glob))
    assert policy.max_files is not None
    count = check(policy, [f"docs/drill-{i}.md" for i in range(policy.max_files + 1)], "commit")
    assert count.trigger == "file-count"
    assert not check(policy, ["src/drill-not-allowlisted.bin"], "auto-merge").allowed
    assert check(policy, ["docs/README.md"], "commit").allowed


# Invariant: check() returns a decision for ANY list of path strings and any policy globs;
# it never raises, and the decision is internally consistent.
@given(st.lists(st.text(max_size=30), max_size=15),
       st.lists(st.text(alphabet="ab.*?/![]{},-#\\()@+ü😀", max_size=12), max_size=5),
       st.sampled_from(["commit", "merge", "auto-merge"]))
def test_check_never_raises(paths: list[str], globs: list[str], action: str) -> None:
    """Property: any paths × arbitrary globs → a decision whose fields agree with each other."""
    policy = GatePolicy(tuple(globs), 10, tuple(globs), "hypothesis")
    for p in (policy, ROOT_POLICY, DEFAULT_POLICY):
        d = check(p, paths, action)
        assert d.allowed == (d.trigger == "ok")
        assert set(d.matched_paths) <= set(paths)
        assert d.allowed or d.matched_paths


# ------------------------------------------------------------------ gate.yaml


def test_parse_fixture_gate_yaml() -> None:
    """The coaligne gate.yaml parses to its denylist, maxFiles 12 and allowlist."""
    p = coaligne()
    assert p.denylist[:2] == (".env", ".env.*") and len(p.denylist) == 10
    assert p.max_files == 12 and p.auto_merge_allowlist is not None and len(p.auto_merge_allowlist) == 8
    assert p.source == "gate.yaml"


@pytest.mark.parametrize(("text", "field", "detail"), [
    ("denylist: []\n", "version", "expected { version: 1, denylist: string[], ... }."),
    ("version: 2\ndenylist: []\n", "version", "expected { version: 1, denylist: string[], ... }."),
    ("version: '1'\ndenylist: []\n", "version", "expected { version: 1, denylist: string[], ... }."),
    ("version: true\ndenylist: []\n", "version", "expected { version: 1, denylist: string[], ... }."),
    ("version: 1\n", "denylist", '"denylist" must be an array of strings.'),
    ("version: 1\ndenylist: .env\n", "denylist", '"denylist" must be an array of strings.'),
    ("version: 1\ndenylist: [3]\n", "denylist", '"denylist" must be an array of strings.'),
    ("version: 1\ndenylist: []\nmaxFiles: many\n", "maxFiles", '"maxFiles" must be a number.'),
    ("version: 1\ndenylist: []\nmaxFiles: 2.5\n", "maxFiles", '"maxFiles" must be a whole number.'),
    ("version: 1\ndenylist: []\nautoMergeAllowlist: docs\n", "autoMergeAllowlist",
     '"autoMergeAllowlist" must be an array of strings.'),
])
def test_gate_yaml_errors_name_the_field(text: str, field: str, detail: str) -> None:
    """Bad gate.yaml → one-line ConfigError naming file and field, with loop-gate's wording."""
    with pytest.raises(ConfigError) as err:
        parse_gate_yaml(text, file="proj/gate.yaml")
    assert err.value.file == "proj/gate.yaml" and err.value.field == field
    assert str(err.value).startswith(f"proj/gate.yaml: {field} ") and str(err.value).endswith(detail)
    assert "\n" not in str(err.value)


def test_gate_yaml_syntax_error_gives_the_line() -> None:
    """A YAML syntax error is a ConfigError with the line, not a yaml traceback."""
    with pytest.raises(ConfigError, match=r"gate.yaml: invalid YAML: .*\(line 4"):
        parse_gate_yaml("version: 1\ndenylist:\n  - [unclosed\n")


def test_gate_yaml_uses_yaml_1_2_scalars() -> None:
    """on/yes/dates stay strings (as in loop-gate's YAML 1.2 reader); duplicate keys are refused."""
    assert parse_gate_yaml("version: 1\ndenylist: [on, yes, 2024-01-01]\n").denylist == ("on", "yes", "2024-01-01")
    assert parse_gate_yaml("version: 1\ndenylist: []\nmaxFiles: 0x10\n").max_files == 16
    with pytest.raises(ConfigError, match="unique"):
        parse_gate_yaml("version: 1\ndenylist: []\ndenylist: [a]\n")


def test_render_round_trips() -> None:
    """render_gate_yaml → parse_gate_yaml gives the same policy back."""
    for policy in (ROOT_POLICY, DEFAULT_POLICY, GatePolicy((), None, (), "x"), coaligne()):
        back = parse_gate_yaml(render_gate_yaml(policy))
        assert (back.denylist, back.max_files, back.auto_merge_allowlist) == \
            (policy.denylist, policy.max_files, policy.auto_merge_allowlist)


def test_load_gate_policy_reads_the_project_file(tmp_path: Path) -> None:
    """<root>/gate.yaml is used when present, with no warning."""
    (tmp_path / "gate.yaml").write_text((FIXTURES / "examples__coaligne__gate.yaml").read_text())
    policy, warning = load_gate_policy(tmp_path)
    assert warning is None and policy.max_files == 12 and policy.source == str(tmp_path / "gate.yaml")


def test_load_gate_policy_falls_back_with_a_warning(tmp_path: Path) -> None:
    """R14: no gate.yaml → DEFAULT_POLICY and a warning saying auto-merge is disabled."""
    policy, warning = load_gate_policy(tmp_path)
    assert policy is DEFAULT_POLICY
    assert warning is not None and "gate.yaml not found" in warning and "auto-merge is disabled" in warning


def test_load_gate_policy_refuses_a_broken_file(tmp_path: Path) -> None:
    """A present but invalid gate.yaml is an error, never a silent fallback to the default."""
    (tmp_path / "gate.yaml").write_text("version: 2\n")
    with pytest.raises(ConfigError, match="version invalid"):
        load_gate_policy(tmp_path)
