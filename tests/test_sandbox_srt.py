"""Agents and test runs inside the REAL sandbox runtime (srt + bubblewrap), attacked from inside.

srt is installed from npm into the tests' tool cache (tests/support/npm_tools.py); bubblewrap,
socat and ripgrep come from Debian (.ci/run installs them). These tests skip when any is
missing, except under ``CI=true`` where they must run. Nothing here touches a real outside
host: "outside" is a listener on 127.0.0.2 or a name under ``.invalid``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import ClaudeCliBackend
from loop_runtime.adapters.sandbox import SandboxLimits, SrtSandbox, make_sandbox
from loop_runtime.adapters.test_runner import run_tests
from loop_runtime.ports import AgentRequest, Permission, SandboxScope
from tests.conftest import run_cli
from tests.fakes.model_server import ModelServer
from tests.test_realcli_claude import claude_bin  # noqa: F401 - fixture
from tests.support import npm_tools
from tests.support.srt import srt, unavailable  # noqa: F401  (srt: the module's fixture)
from tests.support.gitrepo import git, make_repo

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

SECRET_KEY = "PRIVATE-KEY-MATERIAL-0123456789"
STORE_SECRET = "store-secret-abcdef"
OTHER_SECRET = "other-attempt-secret"


class Listener:
    """A TCP listener standing in for an outside host; records every connection it accepts."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nreached")
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Any:
    ln = Listener()
    yield ln
    ln.close()


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    """parent/proj: a git repo with our worktree r1 (loop/r1), another attempt's r2, a store; a fake HOME."""
    parent = tmp_path / "parent"
    root = make_repo(parent / "proj", {"calc.py": "def add(a, b):\n    return a + b\n",
                                       "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
                                                             "    assert add(2, 3) == 5\n",
                                       "conftest.py": ""})
    (root / ".loop-runtime").mkdir()
    (root / ".loop-runtime" / "runs.sqlite").write_text(STORE_SECRET)
    git(root, "worktree", "add", "-q", "-b", "loop/r1", ".loop-worktrees/r1")
    git(root, "worktree", "add", "-q", "-b", "loop/r2", ".loop-worktrees/r2")
    (root / ".loop-worktrees" / "r2" / "secret.txt").write_text(OTHER_SECRET)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRET_KEY)
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = " + SECRET_KEY)
    (home / ".gitconfig").write_text("[user]\n\tname = Agent\n\temail = agent@example.com\n")
    return {"root": root.resolve(), "wt": (root / ".loop-worktrees" / "r1").resolve(),
            "other": (root / ".loop-worktrees" / "r2").resolve(), "home": home.resolve(), "parent": parent.resolve()}


def sandbox(srt: str, p: dict[str, Path], level: str = "L2", **kw: Any) -> SrtSandbox:
    env = {"PATH": os.environ["PATH"], "HOME": str(p["home"]), "LOOP_RUNTIME_SRT": srt}
    box = make_sandbox("srt", root=p["root"], level=level, env=env, **kw)
    assert isinstance(box, SrtSandbox) and box.active
    return box


def agent_env(p: dict[str, Path], **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(p["home"]), **extra}


def run_boxed(box: SrtSandbox, cwd: Path, script: str, *, writable: bool = True, env: dict[str, str] | None = None,
              timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], tuple[str, ...]]:
    boxed = box.prepare(SandboxScope(cwd=str(cwd), writable=writable))
    try:
        argv, child = boxed.wrap(["/bin/bash", "-c", script], env or {"PATH": os.environ["PATH"]})
        proc = subprocess.run(argv, cwd=cwd, env=child, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        return proc, boxed.denials()
    finally:
        boxed.close()


# --------------------------------------------------------------------------- a shell agent attacks

ESCAPES = r"""
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=open"; else echo "$name=blocked"; fi; }
{
try write-own sh -c 'echo ok > own.txt'
try write-tmp sh -c 'echo ok > "$TMPDIR/scratch"'
try write-main sh -c 'echo x > "$ROOT/pwned.txt"'
try write-main-git sh -c 'echo x > "$ROOT/.git/hooks/pre-commit"'
try write-parent sh -c 'echo x > "$ROOT/../pwned.txt"'
try write-home sh -c 'echo x > "$HOME/pwned.txt"'
try read-ssh cat "$HOME/.ssh/id_rsa"
try read-aws cat "$HOME/.aws/credentials"
try read-store cat "$ROOT/.loop-runtime/runs.sqlite"
try read-other cat "$ROOT/.loop-worktrees/r2/secret.txt"
try curl-listener curl -sS -f -m 5 "http://127.0.0.2:$PORT/"
try py-listener python3 -c "import socket; socket.create_connection(('127.0.0.2', $PORT), timeout=5)"
try curl-name curl -sS -f -m 5 http://not-allowed.example.invalid/
try git-push git push origin main
try git-tag git tag v9
} > "$TMPDIR/report.txt" 2>&1
cat "$TMPDIR/report.txt" >&2
python3 -c 'import json,sys; print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
    "result": open(sys.argv[1]).read(), "num_turns": 1, "usage": {"input_tokens": 1, "output_tokens": 1}}))' \
    "$TMPDIR/report.txt"
"""


def test_a_shell_agent_attempting_every_escape_is_blocked_and_each_is_reported(
        srt: str, project: dict[str, Path], listener: Listener, tmp_path: Path) -> None:
    """The agent writes only in its worktree and temp dir; every other write, read, connect and push fails,
    and the agent's result lists what the sandbox blocked and what the git shim denied."""
    script = tmp_path / "shell-agent"
    script.write_text("#!/bin/bash\n" + ESCAPES)
    script.chmod(0o755)
    p = project
    backend = ClaudeCliBackend(binary=str(script), env={"ANTHROPIC_API_KEY": "test",
                                                        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
                               sandbox=sandbox(srt, p))
    request = AgentRequest(role="implementer", prompt="attack", cwd=str(p["wt"]), permission=Permission.EDIT_WORKTREE,
                           token_limit=10_000, timeout_s=120, transcript_dir=str(tmp_path / "transcripts"),
                           env=agent_env(p, ROOT=str(p["root"]), PORT=str(listener.port)))
    res = asyncio.run(backend.run(request))
    assert res.status == "ok", res.error
    report = dict(line.split("=", 1) for line in res.text.split() if "=" in line)
    assert report.pop("write-own") == "open" and report.pop("write-tmp") == "open"
    assert report and all(v == "blocked" for v in report.values()), report
    assert (p["wt"] / "own.txt").read_text() == "ok\n"
    for path in (p["root"] / "pwned.txt", p["parent"] / "pwned.txt", p["home"] / "pwned.txt",
                 p["root"] / ".git" / "hooks" / "pre-commit"):
        assert not path.exists(), path
    assert listener.accepted == 0
    denials = "\n".join(res.sandbox_denials)
    assert f"deny openat {p['root']}/pwned.txt" in denials and f"deny openat {p['home']}/pwned.txt" in denials
    assert f"deny openat {p['parent']}/pwned.txt" in denials
    assert "network-outbound 127.0.0.2" in denials and "network-outbound not-allowed.example.invalid" in denials
    assert "git push origin main: push: only the attempt's own branch loop/r1" in denials
    assert "git tag v9" in denials
    transcript = Path(res.transcript or "").read_text()
    assert "loop_runtime.sandbox_denied" in transcript and SECRET_KEY not in transcript
    assert STORE_SECRET not in transcript and OTHER_SECRET not in transcript


HOSTILE = r"""
t() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "$n=open"; else echo "$n=blocked"; fi; }
echo change >> calc.py && git commit -qam agent && echo commit=ok
new=$(git rev-parse HEAD)
priv="$(dirname "$TMPDIR")/objects"
t symlink-write sh -c 'ln -s "$ROOT/calc.py" lnk && echo x >> lnk'
t symlink-read-store sh -c 'ln -s "$ROOT/.loop-runtime/runs.sqlite" l2 && grep -q "$STORE" l2'
t proc-root-write sh -c 'echo x > "/proc/self/root$ROOT/pwned.txt"'
t hardlink-write sh -c 'ln "$ROOT/calc.py" hl && echo x >> hl'
t unix-socket python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect("/var/run/docker.sock")'
t read-parent-env sh -c 'grep -qa ANTHROPIC /proc/1/environ'
t proc-root-read-ssh sh -c 'grep -q "$KEY" "/proc/self/root$HOME/.ssh/id_rsa"'
t read-other-worktree sh -c 'grep -q "$OTHER" ../r2/secret.txt'
t read-store sh -c 'grep -q "$STORE" "$ROOT/.loop-runtime/runs.sqlite"'
t shim-git-C-main sh -c 'git -C ../.. commit -q --allow-empty -m pwn'
t real-git-C-main sh -c '/usr/bin/git -C ../.. commit -q --allow-empty -m pwn'
t envi-push-main sh -c 'env -i /usr/bin/git push -q "$ROOT" HEAD:main'
t real-push-main sh -c 'GIT_OBJECT_DIRECTORY="$priv" GIT_ALTERNATE_OBJECT_DIRECTORIES="$ROOT/.git/objects" /usr/bin/git push -q "$ROOT" HEAD:main'
t real-update-main sh -c '/usr/bin/git update-ref refs/heads/main HEAD~1'
t real-move-other-branch sh -c 'GIT_OBJECT_DIRECTORY="$priv" GIT_ALTERNATE_OBJECT_DIRECTORIES="$ROOT/.git/objects" /usr/bin/git -c core.logAllRefUpdates=false update-ref refs/heads/loop/r2 "$new"'
t overwrite-other-branch sh -c 'echo "$new" > "$ROOT/.git/refs/heads/loop/r2"'
t real-tag sh -c '/usr/bin/git tag pwn'
t real-config sh -c '/usr/bin/git config core.hooksPath /tmp'
t hook-write sh -c 'echo x > ../../.git/hooks/post-checkout'
t channel-read sh -c 'timeout 2 cat "$LOG"'
t channel-reopen-read sh -c 'exec 7>"$LOG"; timeout 2 cat /proc/self/fd/7'
t channel-remove sh -c 'rm -f "$LOG" && test ! -p "$LOG"'
t channel-chmod sh -c 'chmod 666 "$LOG"'
t shim-rewrite sh -c 'echo "exit 0" > "$(dirname "$LOG")/shims/git"'
t shim-config-rewrite sh -c 'echo "{}" > "$(dirname "$LOG")/shims.json"'
t mount sh -c 'mount -t tmpfs x "$ROOT"'
t new-user-namespace unshare -r true
t curl-out curl -sS -f -m 5 http://example.com/
printf 'a dangling partial record without a newline' > "$LOG"
git push -q origin main 2>/dev/null
printf '{"tool": "git", "argv": ["status"], "reason": "forged"}
{"tool": "git", "argv": ["tag", "x"], "reason": "innocent"}
' > "$LOG"
grep CapEff /proc/self/status | tr -d '	' | sed 's/:/=/'
"""


def test_a_hostile_agent_cannot_get_past_the_shims_the_sandbox_or_the_denial_channel(
        srt: str, project: dict[str, Path]) -> None:
    """An L2 agent with a shell tries symlinks and /proc/self/root out of its worktree, reads the store and
    another attempt, bypasses the shims with /usr/bin/git and `env -i` (pushing main, moving another
    attempt's branch with objects from its private store, tags, config, hooks), and attacks the denial
    channel (read, reopen via /proc/self/fd, remove, chmod, forge, glue). Only its own commit lands; every
    shim refusal is recorded with the policy's reason; a forged record of an allowed call is dropped."""
    p = project
    before = {ref: git(p["root"], "rev-parse", ref) for ref in ("main", "loop/r2")}
    calc = (p["root"] / "calc.py").read_bytes()
    box = sandbox(srt, p)
    boxed = box.prepare(SandboxScope(cwd=str(p["wt"]), writable=True))
    try:
        env = agent_env(p, ROOT=str(p["root"]), LOG=str(boxed.log), STORE=STORE_SECRET, OTHER=OTHER_SECRET,
                        KEY=SECRET_KEY, ANTHROPIC_API_KEY="sk-ant-test-not-for-the-agent")
        argv, child = boxed.wrap(["/bin/bash", "-c", HOSTILE], env)
        proc = subprocess.run(argv, cwd=p["wt"], env=child, capture_output=True, text=True, timeout=240,
                              stdin=subprocess.DEVNULL)
        denials = boxed.denials()
    finally:
        boxed.close()
    seen = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    assert seen.pop("commit") == "ok" and seen.pop("CapEff") == "0000000000000000", proc.stdout
    opened = {name for name, verdict in seen.items() if verdict != "blocked"}
    assert len(seen) == 28 and not opened, (opened, proc.stderr[-2000:])
    assert {ref: git(p["root"], "rev-parse", ref) for ref in before} == before  # main and loop/r2 unmoved
    assert git(p["root"], "log", "-1", "--format=%s", "loop/r1") == "agent"  # its own commit landed
    assert not git(p["root"], "tag", "--list") and not (p["root"] / "pwned.txt").exists()
    assert (p["root"] / "calc.py").read_bytes() == calc
    assert "hooksPath" not in (p["root"] / ".git" / "config").read_text()
    shims = [d for d in denials if not d.startswith("blocked")]
    assert any(d.startswith("git -C ../.. commit") for d in shims), shims
    assert any(d.startswith("git push -q origin main: push: only the attempt's own branch") for d in shims), shims
    assert any(d.startswith("git tag x: ") and "innocent" not in d for d in shims), shims  # the policy's reason
    assert not any(d.startswith("git status") for d in shims)  # a forged record of an allowed call
    assert "network-outbound example.com" in "\n".join(denials)


@pytest.mark.parametrize("cgroup", [True, False], ids=["pids-cgroup", "namespace-watchdog"])
def test_a_fork_bomb_stops_at_the_process_limit(srt: str, project: dict[str, Path], cgroup: bool) -> None:
    """A fork bomb inside the sandbox is killed with everything in the sandbox and reported; the host is
    unaffected. With a pids cgroup (kernel-enforced, also for root) and with the fallback watchdog."""
    from loop_runtime.adapters import pids_cgroup

    if cgroup and pids_cgroup.parent() is None:
        # a property of the host, not of the tool: the watchdog variant below is what runs there
        pytest.skip("no writable pids cgroup on this machine (the namespace watchdog holds the limit)")
    box = sandbox(srt, project, limits=SandboxLimits(processes=64), cgroups=cgroup)
    boxed = box.prepare(SandboxScope(cwd=str(project["wt"]), writable=True))
    try:
        made = boxed.cgroup
        assert (made is not None) == cgroup
        argv, child = boxed.wrap(["/bin/bash", "-c", "f(){ f | f & }; f; sleep 60; echo never"],
                                 {"PATH": os.environ["PATH"]})
        # The watchdog variant tests the fallback; where the host has a pids cgroup anyway, the test puts
        # the whole run in a roomy one (2,000) so that a watchdog regression fails this test instead of
        # exhausting the shared machine's process table for every other job on it.
        shield = None if cgroup else pids_cgroup.create(2000)
        enter = None if shield is None else (lambda: (shield / "cgroup.procs").write_text(str(os.getpid())))
        try:
            proc = subprocess.run(argv, cwd=project["wt"], env=child, capture_output=True, text=True, timeout=240,
                                  stdin=subprocess.DEVNULL, preexec_fn=enter)
        finally:
            if shield is not None:
                pids_cgroup.remove(shield)
        denials = boxed.denials()
    finally:
        boxed.close()
    assert proc.returncode == 125 and "process limit exceeded" in proc.stderr, (proc.returncode, proc.stderr[-500:])
    assert "never" not in proc.stdout, proc.stderr[-3000:]
    if cgroup:
        assert any(d.startswith("blocked: process limit exceeded") for d in denials), denials
        assert made is not None and not made.exists()  # the cgroup is removed with the process
    assert subprocess.run(["true"]).returncode == 0  # the host can still fork


def test_cpu_memory_and_file_size_limits_bind_inside(srt: str, project: dict[str, Path]) -> None:
    """sandbox_cpu_s ends a busy loop (SIGXCPU: 152, never a pass), sandbox_memory_mb refuses a large
    allocation, and a file larger than the file-size limit cannot be written."""
    box = sandbox(srt, project, limits=SandboxLimits(cpu_s=2, memory_mb=256, file_mb=1))
    proc, _ = run_boxed(box, project["wt"], "exec python3 -c 'while True: pass'", timeout=240)
    assert proc.returncode in (128 + 24, 128 + 9), proc  # SIGXCPU at the soft limit (SIGKILL at the hard one)
    proc, _ = run_boxed(box, project["wt"], "python3 -c 'b = bytearray(1024 * 1024 * 1024)' || echo refused")
    assert "MemoryError" in proc.stderr and "refused" in proc.stdout
    proc, _ = run_boxed(box, project["wt"], "head -c 2000000 /dev/zero > big.bin || echo too-big")
    assert "too-big" in proc.stdout and (project["wt"] / "big.bin").stat().st_size <= 1024 * 1024


def test_a_signal_death_inside_is_never_a_pass(srt: str, project: dict[str, Path]) -> None:
    """`kill -TERM $$` (srt's CLI would exit 0) ends as 143; a plain exit code passes through."""
    box = sandbox(srt, project)
    assert run_boxed(box, project["wt"], "kill -TERM $$")[0].returncode == 143
    assert run_boxed(box, project["wt"], "exit 7")[0].returncode == 7


def test_an_allowlisted_host_is_reachable_through_the_proxy(srt: str, project: dict[str, Path],
                                                            listener: Listener) -> None:
    """sandbox_allow_domains opens exactly that host:port (here the stand-in's IP literal); others stay shut."""
    box = sandbox(srt, project, allow_domains=(f"127.0.0.2:{listener.port}",))
    proc, denials = run_boxed(box, project["wt"], f"curl -sS -m 5 http://127.0.0.2:{listener.port}/; "
                                                  "curl -sS -f -m 5 http://other.example.invalid/ || echo shut")
    assert "reached" in proc.stdout and "shut" in proc.stdout and listener.accepted == 1
    assert any("other.example.invalid" in d for d in denials)


def test_a_read_only_scope_cannot_write_even_its_own_cwd(srt: str, project: dict[str, Path]) -> None:
    """Triage and the verifier: nothing writable but the private temp dir."""
    box = sandbox(srt, project, level="L1")
    proc, denials = run_boxed(box, project["wt"], 'echo x > mine.txt || echo refused; echo y > "$TMPDIR/t" && echo tmp',
                              writable=False)
    assert "refused" in proc.stdout and "tmp" in proc.stdout and not (project["wt"] / "mine.txt").exists()
    assert any("mine.txt" in d for d in denials)


# --------------------------------------------------------------------------- git and gh shims per level


@pytest.fixture
def fake_gh(tmp_path: Path) -> str:
    folder = tmp_path / "bin"
    folder.mkdir()
    gh = folder / "gh"
    gh.write_text('#!/bin/sh\necho "gh-called $*"\n')
    gh.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


SHIM_SCRIPT = r"""
echo change >> calc.py
git add calc.py && git commit -q -m "fix" && echo commit=ok || echo commit=denied
(cd "$TMPDIR" && git init -q --bare remote.git)
git push -q "$TMPDIR/remote.git" loop/r1 && echo push-own=ok || echo push-own=denied
git push -q "$TMPDIR/remote.git" HEAD:main && echo push-main=ok || echo push-main=denied
git tag v1 && echo tag=ok || echo tag=denied
git reset -q --hard HEAD~1 && echo reset-back=ok || echo reset-back=denied
git log --oneline -1 >/dev/null && echo log=ok
gh pr view 1 && echo gh-view=ok
gh pr create --fill && echo gh-create=ok || echo gh-create=denied
gh pr merge 1 --squash && echo gh-merge=ok || echo gh-merge=denied
gh issue close 1 && echo gh-close=ok || echo gh-close=denied
/usr/bin/git update-ref refs/heads/main HEAD && echo bypass=ok || echo bypass=denied
"""


@pytest.mark.parametrize(("level", "expected"), [
    ("L1", {"commit": "denied", "push-own": "denied", "push-main": "denied", "tag": "denied",
            "gh-create": "denied", "gh-merge": "denied", "gh-close": "denied"}),
    ("L2", {"commit": "ok", "push-own": "ok", "push-main": "denied", "tag": "denied", "reset-back": "denied",
            "gh-create": "denied", "gh-merge": "denied", "gh-close": "denied"}),
    ("L3", {"commit": "ok", "push-own": "ok", "push-main": "denied", "tag": "denied", "reset-back": "denied",
            "gh-create": "ok", "gh-merge": "denied", "gh-close": "denied"}),
])
def test_git_and_gh_shims_gate_by_level(srt: str, project: dict[str, Path], fake_gh: str, level: str,
                                        expected: dict[str, str]) -> None:
    """Real git, a fake gh: L1 reads only, L2 commits and pushes its own branch, L3 may also open its PR.
    gh pr merge is denied unless the gate allows an auto-merge (the default gate does not for calc.py).
    Calling /usr/bin/git directly skips the shim, but the sandbox still refuses to move main."""
    p = project
    main_before = git(p["root"], "rev-parse", "main")
    box = sandbox(srt, p, level=level)
    proc, denials = run_boxed(box, p["wt"], SHIM_SCRIPT, writable=level != "L1",
                              env={"PATH": fake_gh, "HOME": str(p["home"])})
    seen = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line and "gh-called" not in line)
    for key, value in expected.items():
        assert seen.get(key) == value, (level, key, proc.stdout, proc.stderr)
    assert seen["log"] == "ok" and seen["gh-view"] == "ok" and seen["bypass"] == "denied"
    assert git(p["root"], "rev-parse", "main") == main_before
    assert not git(p["root"], "tag", "--list")
    denied = [d for d in denials if not d.startswith("blocked:")]
    assert any(d.startswith("git tag v1") for d in denied) and any(d.startswith("gh issue close 1") for d in denied)
    assert any("refs/heads/main" in d or "deny" in d for d in denials if d.startswith("blocked:"))
    if level != "L1":
        assert git(p["root"], "log", "-1", "--format=%s", "loop/r1") == "fix"


def test_l3_gh_pr_merge_is_allowed_only_when_the_gate_allows_the_changed_paths(
        srt: str, project: dict[str, Path], fake_gh: str) -> None:
    """gate.yaml allowlists docs/** for auto-merge: a docs-only commit may `gh pr merge`; a code change may not."""
    p = project
    (p["root"] / "gate.yaml").write_text('version: 1\ndenylist: ["**/.env"]\nautoMergeAllowlist: ["docs/**"]\n')
    box = sandbox(srt, p, level="L3")
    env = {"PATH": fake_gh, "HOME": str(p["home"])}
    docs = "mkdir -p docs && echo hi > docs/a.md && git add docs && git commit -q -m docs && gh pr merge 1"
    proc, denials = run_boxed(box, p["wt"], docs, env=env)
    assert "gh-called pr merge 1" in proc.stdout, proc.stderr
    proc, denials = run_boxed(box, p["wt"], "echo x >> calc.py && git commit -qam code && gh pr merge 1", env=env)
    assert "gh-called" not in proc.stdout and "gate does not allow auto-merge" in proc.stderr
    assert any(d.startswith("gh pr merge 1: gate does not allow auto-merge") for d in denials)


def test_an_l2_agent_cannot_rewrite_history_or_repoint_its_git_folder(srt: str, project: dict[str, Path]) -> None:
    """Commits are allowed, but existing objects, HEAD and the worktree's git pointers are not writable:
    overwriting main's commit object or aiming `commondir` at a config of its own would reach past the
    sandbox (the runtime runs git in the worktree afterwards)."""
    p = project
    head = git(p["root"], "rev-parse", "main")
    obj = p["root"] / ".git" / "objects" / head[:2] / head[2:]
    gitdir = p["root"] / ".git" / "worktrees" / "r1"
    before = {f: f.read_bytes() for f in (obj, gitdir / "HEAD", gitdir / "commondir", gitdir / "gitdir")}
    script = "\n".join(f'printf x > "{f}" && echo {name}=open || echo {name}=blocked' for name, f in
                       (("object", obj), ("head", gitdir / "HEAD"), ("commondir", gitdir / "commondir"),
                        ("gitdir", gitdir / "gitdir"), ("config", p["root"] / ".git" / "config"),
                        ("packed", p["root"] / ".git" / "packed-refs"),
                        ("new-object", p["root"] / ".git" / "objects" / "ff" / ("0" * 38))))
    proc, _ = run_boxed(sandbox(srt, p), p["wt"], f'mkdir -p "{p["root"]}/.git/objects/ff"; {script}',
                        env=agent_env(p))
    seen = dict(line.split("=", 1) for line in proc.stdout.split())
    assert seen and set(seen.values()) == {"blocked"}, proc.stdout
    assert {f: f.read_bytes() for f in before} == before


# --------------------------------------------------------------------------- test runs


def test_the_project_tests_run_inside_the_sandbox_and_escapes_are_noted(srt: str, project: dict[str, Path]) -> None:
    """The test command passes in the sandbox; a test writing outside the worktree is refused and noted."""
    p = project
    (p["wt"] / "tests" / "test_escape.py").write_text(
        "import os, pytest\n\n\ndef test_cannot_write_the_main_checkout():\n"
        f"    with pytest.raises(OSError):\n        open({str(p['root'] / 'from-tests.txt')!r}, 'w')\n")
    run = run_tests(p["wt"], f"{sys.executable} -m pytest -q -p no:cacheprovider", timeout_s=120,
                    env={"PATH": os.environ["PATH"], "HOME": str(p["home"])}, sandbox=sandbox(srt, p))
    assert run.passed, run.output
    assert "2 passed" in run.output and "[sandbox]" in run.output and "from-tests.txt" in run.output
    assert not (p["root"] / "from-tests.txt").exists()
    # the per-test JUnit report was written inside the sandbox to the private report folder
    assert run.report is not None and run.report.source == "junit", run.output
    assert run.report.passed == 2 and run.report.failed == 0 and run.report.cases is not None


def test_a_scaffolds_test_command_runs_sandboxed_in_a_real_tick(srt: str, tmp_path: Path) -> None:
    """`loop-runtime run` at L2 with sandbox = "srt": the project's tests run inside srt and pass."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    repo = make_repo(tmp_path / "repo", {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "tests/test_sandboxed.py": "import os\n\n\ndef test_home_is_not_writable():\n"
                                   "    try:\n        open(os.path.expanduser('~/x'), 'w')\n"
                                   "    except OSError:\n        return\n    raise AssertionError('wrote HOME')\n",
        "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\nsandbox = "srt"\n',
    })
    scen = tmp_path / "scenario.json"
    scen.write_text(json.dumps({
        "triage": {"decision": "act", "summary": "red", "tokens": 100,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "-", "files": ["calc.py"]}]},
        "implementer": [{"tokens": 100, "files": {"calc.py": "def add(a, b):\n    return a + b\n"}}],
        "verifier": [{"verdict": "APPROVE", "tokens": 100}]}))
    proc = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", str(scen), cwd=repo,
                   env={"LOOP_RUNTIME_SRT": srt, "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert "tests: passed" in proc.stdout and "sandbox off" not in proc.stdout
    assert not (home / "x").exists()


@pytest.mark.parametrize("weaken", [False, True], ids=["legitimate-fix", "conftest-skips-the-failing-test"])
def test_sandboxed_ticks_keep_the_per_test_base_comparison(srt: str, tmp_path: Path, weaken: bool) -> None:
    """With sandbox = "srt" both the attempt's and the base commit's tests run inside srt and still
    produce per-test reports: a legitimate fix commits, an attempt that skips the failing test escalates
    naming it, and the cached base run holds the per-test outcomes."""
    from tests.test_tests_weakened import BUGGY, FIXED, HOOK_SKIP, TEST, escalation, loop_commits

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    repo = make_repo(tmp_path / "repo", {
        "calc.py": BUGGY, "tests/test_calc.py": TEST, "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\nsandbox = "srt"\n',
    })
    files = {"calc.py": FIXED, **({"conftest.py": HOOK_SKIP} if weaken else {})}
    scen = tmp_path / "scenario.json"
    scen.write_text(json.dumps({
        "triage": {"decision": "act", "summary": "red", "tokens": 100,
                   "items": [{"id": "CI-1", "title": "test_add fails", "detail": "-", "files": ["calc.py"]}]},
        "implementer": [{"tokens": 100, "files": files}],
        "verifier": [{"verdict": "APPROVE", "tokens": 100}]}))
    proc = run_cli("run", "ci-sweeper", "--level", "L2", "--scenario", str(scen), cwd=repo,
                   env={"LOOP_RUNTIME_SRT": srt, "HOME": str(home)}, timeout=240)
    assert "sandbox off" not in proc.stdout
    cached = list((repo / ".loop-runtime" / "test-baselines").glob("*.json"))
    assert len(cached) == 1, proc.stdout + proc.stderr
    doc = json.loads(cached[0].read_text())
    assert doc["base_commit"] == git(repo, "rev-parse", "main")
    assert {n: o for n, o in doc["report"]["cases"]} == {
        "tests.test_calc::test_add": "failed", "tests.test_calc::test_sub": "passed"}
    if weaken:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        esc = escalation(repo)
        assert esc["reason"] == "tests-weakened" and "tests.test_calc::test_add" in esc["detail"], esc
        assert loop_commits(repo) == []
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "committed: safe + allowlisted" in proc.stdout and len(loop_commits(repo)) == 1
    assert not list((repo / ".loop-runtime" / "base-checkouts").glob("*"))


def test_sandbox_srt_without_srt_is_a_one_line_error(tmp_path: Path) -> None:
    """sandbox = "srt" and no srt: exit 1, one line naming the file, the key and the fix; never a downgrade."""
    repo = make_repo(tmp_path / "repo", {"loop-runtime.toml": 'sandbox = "srt"\n', "conftest.py": ""})
    proc = run_cli("run", "ci-sweeper", "--level", "L1", "--scenario", "report-only", cwd=repo,
                   env={"LOOP_RUNTIME_SRT": str(tmp_path / "no-such-srt")})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'loop-runtime.toml: sandbox = "srt" but srt not found' in lines[0]
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- the real Claude CLI


def test_real_claude_runs_the_tests_with_bash_but_cannot_escape(srt: str, claude_bin: str, project: dict[str, Path],
                                                                 listener: Listener, tmp_path: Path) -> None:
    """The scripted model uses Bash: the project's tests run in the worktree (works); a write into the main
    checkout and a curl to an outside host fail. The CLI itself reaches the model stand-in through srt's
    proxy (allowlisted 127.0.0.1:<port>, removed from NO_PROXY)."""
    p = project
    U = {"input_tokens": 10, "output_tokens": 5}
    bash = [f"{sys.executable} -m pytest -q -p no:cacheprovider",
            f"echo pwned > {p['root'] / 'pwned.txt'}",
            f"curl -sS -f -m 5 http://127.0.0.2:{listener.port}/"]
    turns = [{"tool_use": {"name": "Bash", "input": {"command": c}}, "usage": U} for c in bash]
    with ModelServer([*turns, {"text": "tests pass; could not write outside", "usage": U}]) as server:
        backend = ClaudeCliBackend(binary=claude_bin, env={"ANTHROPIC_API_KEY": "test",
                                                           "ANTHROPIC_BASE_URL": server.base_url},
                                   sandbox=sandbox(srt, p))
        env = agent_env(p, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
        request = AgentRequest(role="implementer", prompt="run the tests", cwd=str(p["wt"]),
                               permission=Permission.EDIT_WORKTREE, token_limit=1_000_000, timeout_s=120,
                               max_turns=10, env=env, transcript_dir=str(tmp_path / "tr"))
        res = asyncio.run(backend.run(request))
        offered = {t["name"] for t in server.bodies("/v1/messages")[0]["tools"]}
        last = server.bodies("/v1/messages")[-1]
    results = [b for m in last["messages"] if isinstance(m.get("content"), list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert res.status == "ok", res.error
    assert "Bash" in offered and len(results) == 3
    assert "1 passed" in str(results[0]["content"]) and results[0].get("is_error") is not True
    assert results[1]["is_error"] is True and "Read-only file system" in str(results[1]["content"])
    assert results[2]["is_error"] is True
    assert not (p["root"] / "pwned.txt").exists() and listener.accepted == 0
    denials = "\n".join(res.sandbox_denials)
    assert f"{p['root']}/pwned.txt" in denials and "network-outbound 127.0.0.2" in denials


def test_without_a_sandbox_claude_gets_no_bash(claude_bin: str, tmp_path: Path) -> None:
    """sandbox off (or none): today's tool set — Bash is neither offered nor allowed."""
    wt = tmp_path / "wt"
    wt.mkdir()
    with ModelServer([{"tool_use": {"name": "Bash", "input": {"command": "touch made"}},
                       "usage": {"input_tokens": 1, "output_tokens": 1}}, {"text": "ok"}]) as server:
        backend = ClaudeCliBackend(binary=claude_bin, env={"ANTHROPIC_API_KEY": "test",
                                                           "ANTHROPIC_BASE_URL": server.base_url},
                                   sandbox=make_sandbox("none", root=tmp_path))
        home = tmp_path / "home"
        home.mkdir()
        request = AgentRequest(role="implementer", prompt="x", cwd=str(wt), permission=Permission.EDIT_WORKTREE,
                               token_limit=100_000, timeout_s=60, max_turns=4,
                               env={"PATH": os.environ["PATH"], "HOME": str(home),
                                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
        asyncio.run(backend.run(request))
        offered = {t["name"] for t in server.bodies("/v1/messages")[0]["tools"]}
    assert "Bash" not in offered and not (wt / "made").exists()


def test_a_real_claude_tick_that_the_sandbox_blocked_escalates_with_the_violation(
        srt: str, claude_bin: str, tmp_path: Path, listener: Listener) -> None:
    """`loop-runtime run --backend claude` at L2 with sandbox = "srt": the implementer (the real CLI, scripted
    by the model stand-in) fixes calc.py with Bash, then tries to write into the main checkout and to reach an
    outside host. Both fail; the tick lists what was blocked, the transcript records it, and — since the
    agent's result may rest on what did not happen — the tick escalates (exit 2) with the change held."""
    from tests.test_tests_weakened import escalation, loop_commits

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    repo = make_repo(tmp_path / "repo", {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q -p no:cacheprovider"\nsandbox = "srt"\n',
    }).resolve()
    U = {"input_tokens": 10, "output_tokens": 5}
    triage = json.dumps({"decision": "act", "summary": "red", "items": [
        {"id": "CI-1", "title": "test_add fails", "detail": "calc.add subtracts", "files": ["calc.py"]}]})
    bash = ["printf 'def add(a, b):\\n    return a + b\\n' > calc.py",
            f"echo pwned > {repo / 'pwned.txt'}",
            f"curl -sS -f -m 5 http://127.0.0.2:{listener.port}/"]
    turns = [{"text": triage, "usage": U},
             *({"tool_use": {"name": "Bash", "input": {"command": c}}, "usage": U} for c in bash),
             {"text": "fixed calc.add; also saved a note in the main checkout", "usage": U}]
    with ModelServer(turns) as server:
        env = {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "test", "HOME": str(home),
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
               "LOOP_RUNTIME_AGENT_ENV": "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC,DISABLE_AUTOUPDATER",
               "LOOP_RUNTIME_SRT": srt}
        proc = run_cli("run", "ci-sweeper", "--backend", "claude", "--level", "L2", cwd=repo, env=env, timeout=280)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "sandbox off" not in out and not (repo / "pwned.txt").exists() and listener.accepted == 0
    assert f"sandbox denied (implementer): blocked: deny openat {repo}/pwned.txt" in proc.stdout, out
    assert "network-outbound 127.0.0.2" in proc.stdout, out
    esc = escalation(repo)
    assert esc["reason"] == "sandbox-violation" and "pwned.txt" in esc["detail"], esc
    assert loop_commits(repo) == []
    transcripts = "\n".join(t.read_text() for t in (repo / ".loop-runtime" / "transcripts").rglob("*.jsonl"))
    assert "loop_runtime.sandbox_denied" in transcripts and "pwned.txt" in transcripts


def test_a_real_claude_tick_that_runs_the_tests_in_the_sandbox_commits_without_false_violations(
        srt: str, claude_bin: str, tmp_path: Path) -> None:
    """The clean path with the real CLI at L2 under srt: the implementer fixes calc.py and runs the tests with
    Bash; the read-only verifier runs them too (its refused cache writes in its own worktree are no escape);
    the change commits (exit 0) — the CLI's own home state, temp files and proxying raise no violation."""
    from tests.test_tests_weakened import loop_commits

    home = tmp_path / "home"
    home.mkdir()
    repo = make_repo(tmp_path / "repo", {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "conftest.py": "",
        "loop-runtime.toml": f'test_command = "{sys.executable} -m pytest -q"\nsandbox = "srt"\n',
        ".gitignore": ".pytest_cache/\n",
    }).resolve()
    U = {"input_tokens": 10, "output_tokens": 5}
    triage = json.dumps({"decision": "act", "summary": "red", "items": [
        {"id": "CI-1", "title": "test_add fails", "detail": "calc.add subtracts", "files": ["calc.py"]}]})
    pytest_cmd = f"{sys.executable} -m pytest -q"
    turns = [{"text": triage, "usage": U},
             {"tool_use": {"name": "Bash", "input": {"command": "printf 'def add(a, b):\\n    return a + b\\n' "
                                                                  "> calc.py"}}, "usage": U},
             {"tool_use": {"name": "Bash", "input": {"command": pytest_cmd}}, "usage": U},
             {"text": "fixed calc.add; the tests pass", "usage": U},
             {"tool_use": {"name": "Bash", "input": {"command": pytest_cmd}}, "usage": U},
             {"text": "The fix is right and the tests pass.\n\n## Verdict: APPROVE", "usage": U}]
    with ModelServer(turns) as server:
        env = {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "test", "HOME": str(home),
               "LOOP_RUNTIME_SRT": srt}
        proc = run_cli("run", "ci-sweeper", "--backend", "claude", "--level", "L2", cwd=repo, env=env, timeout=280)
        bodies = server.bodies("/v1/messages")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "sandbox off" not in out and "escalated" not in proc.stdout, out
    results = [str(b.get("content")) for body in bodies for m in body["messages"] if isinstance(m.get("content"), list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert any("1 passed" in r for r in results), results  # the tests ran inside the sandbox
    assert "tests: passed" in proc.stdout and len(loop_commits(repo)) == 1, out
    assert not [line for line in proc.stdout.splitlines()
                if line.strip().startswith("sandbox denied") and "read-only worktree" not in line], out
    assert "proposed change touching calc.py\n" in proc.stdout, out  # no bytecode in the change
    assert not list(repo.rglob("__pycache__")), "bytecode went to the private temp folder"
