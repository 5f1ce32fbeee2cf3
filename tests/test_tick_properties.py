"""Issue 10's property, on real ticks: misbehaviours combined at random, each example a real
`run` (mock backend) at L2 or L3 on a fresh temp git repository.

Invariants, whatever the mix:
* the user's HEAD (symbolic ref and target), index, refs, config and hooks are unchanged —
  except a legitimate L3 merge of a safe change;
* nothing is committed or merged unless the change is safe;
* every secret is absent from every file under the project and from every store column but
  the held diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.gitrepo import git
from tests.test_git_hijack import FIXED, TEST, fingerprint, project, tick
from tests.test_secrets_at_rest import _leaks

SECRET_TEXT = "ghp_" + "Zq7Wm2Xk9Lp4Rt6Yv8Bn3Cd5Fg1Hj0Ks2Ma"
SECRET_FILE = "sk-ant-api03-" + "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5Nm7" * 2 + "AA"

DOTGIT = {  # a gitdir pointer, a nested repository, a config alone, a case-variant
    "gitdir pointer": {".git": "gitdir: {root}/.git\n"},
    "nested repo": {"sub/.git/HEAD": "ref: refs/heads/main\n", "sub/.git/config": "[core]\n", "sub/a.py": "a = 1\n"},
    "sub/.git/config": {"sub/.git/config": "[core]\n\thooksPath = /tmp\n"},
    ".GIT": {"vendor/.GIT/config": "[core]\n"},
}
CONTROL = ["patterns/registry.yaml", "LOOP.md", "STATE.md", "ci-sweeper-state.md", ".claude/skills/x/SKILL.md",
           ".claude/agents/v.md", ".claude/settings.json", ".github/workflows/x.yml", "src/deep/.gitattributes"]
SKIPS = {
    "pytestmark": "import pytest\npytestmark = pytest.mark.skip\n" + TEST,
    "mark.skip": TEST.replace("def test_add", "from pytest import mark\n\n\n@mark.skip\ndef test_add"),
}
SYMLINKS = {"to outside": {"docs/out": "/etc/passwd"}, "to a control file": {"docs/g.yaml": "../gate.yaml"}}
EVIL = {  # the project's test run (agent code) misbehaves in the user's checkout
    "HEAD": "(common / 'HEAD').write_text('ref: refs/heads/hijacked\\n')",
    "hook": "(common / 'hooks').mkdir(exist_ok=True); (common / 'hooks' / 'pre-commit').write_text('#!/bin/sh\\n')",
}


def _evil_test(code: str) -> str:
    return ("import pathlib, subprocess\n\n\ndef test_evil():\n"
            "    common = pathlib.Path(subprocess.check_output(['git', 'rev-parse', '--path-format=absolute', "
            "'--git-common-dir'], text=True).strip())\n"
            f"    {code}\n")


misbehaviour = st.fixed_dictionaries({
    "level": st.sampled_from(["L2", "L3"]),
    "ordinary": st.lists(st.sampled_from(["src/new.py", "docs/notes2.md"]), max_size=2, unique=True),
    "dotgit": st.sampled_from([None, *sorted(DOTGIT)]),
    "control": st.sampled_from([None, *CONTROL]),
    "skip": st.sampled_from([None, *sorted(SKIPS)]),
    "secret_text": st.booleans(),
    "secret_file": st.booleans(),
    "symlink": st.sampled_from([None, *sorted(SYMLINKS)]),
    "evil": st.sampled_from([None, *sorted(EVIL)]),
})


def _weights(m: dict[str, Any]) -> bool:
    return bool(m["dotgit"] or m["control"] or m["skip"] or m["secret_file"] or m["symlink"] or m["evil"])


@settings(max_examples=int(os.environ.get("TICK_PROPERTY_EXAMPLES", "15")), deadline=None,
          phases=(Phase.explicit, Phase.reuse, Phase.generate), suppress_health_check=list(HealthCheck))
@given(m=misbehaviour)
def test_random_misbehaviour_on_a_real_tick_keeps_every_invariant(tmp_path_factory: Any, m: dict[str, Any]) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    repo = project(tmp)
    base = git(repo, "rev-parse", "HEAD")
    before = fingerprint(repo)
    files: dict[str, str] = {"calc.py": FIXED}
    files.update({rel: "x = 1\n" for rel in m["ordinary"]})
    if m["dotgit"]:
        files.update({k: v.replace("{root}", str(repo)) for k, v in DOTGIT[m["dotgit"]].items()})
    if m["control"]:
        files[m["control"]] = "changed by the agent\n"
    if m["skip"]:
        files["tests/test_calc.py"] = SKIPS[m["skip"]]
    if m["secret_file"]:
        files["src/settings.py"] = f'ANTHROPIC_KEY = "{SECRET_FILE}"\n'
    if m["evil"]:
        files["tests/test_evil.py"] = _evil_test(EVIL[m["evil"]])
    title = f"test_add fails {SECRET_TEXT}" if m["secret_text"] else "test_add fails"
    doc = {
        "triage": {"decision": "act", "summary": f"CI red {SECRET_TEXT if m['secret_text'] else ''}", "tokens": 1000,
                   "items": [{"id": "CI-1", "title": title, "detail": "add() subtracts"}]},
        "implementer": [{"tokens": 3000, "files": files, "symlinks": SYMLINKS[m["symlink"]] if m["symlink"] else {}}],
        "verifier": [{"verdict": "APPROVE", "tokens": 1000,
                      "reasons": [f"fine {SECRET_TEXT}"] if m["secret_text"] else []}],
    }
    scen = tmp / "scenario.json"
    scen.write_text(json.dumps(doc))
    proc = tick(repo, str(scen), m["level"])
    unsafe = _weights(m)
    after = fingerprint(repo)
    runtime_files = ("ci-sweeper-state.md", "loop-run-log.md", "loop-ledger.json", "docs/last-run.json")
    if unsafe:
        assert proc.returncode == 2, (m, proc.stdout + proc.stderr)
        assert git(repo, "rev-list", "--all").split() == [base], m  # nothing committed, nothing merged
        same = {k: v for k, v in after.items() if k != "tracked"}
        assert same == {k: v for k, v in before.items() if k != "tracked"}, m
        for path, data in before["tracked"].items():
            if path not in runtime_files:
                assert after["tracked"].get(path) == data, (m, path)
    else:
        assert proc.returncode == 0, (m, proc.stdout + proc.stderr)
        assert after["head_ref"] == before["head_ref"] and after["config"] == before["config"], m
        assert after["hooks"] == before["hooks"], m
        if m["level"] == "L2":
            assert after["head"] == base and after["index"] == before["index"], m
        else:
            assert git(repo, "show", "main:calc.py") + "\n" == FIXED, m
    secrets = [SECRET_TEXT, SECRET_FILE] if m["secret_file"] else [SECRET_TEXT]
    leaks = _leaks(repo, secrets if (m["secret_text"] or m["secret_file"]) else [])
    # the store's file holds the held diff; its columns are checked one by one by _leaks
    assert [p for p in leaks if not p.startswith(".loop-runtime/runtime.db")] == [], m
