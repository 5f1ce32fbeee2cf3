"""The sandbox adapter without running srt: mode selection, settings per scope, argv wrapping, tick notes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from loop_runtime.adapters.sandbox import (
    EXEC_HELPER,
    PROCESS_ALLOWANCE,
    NoSandbox,
    SandboxLimits,
    SrtSandbox,
    endpoint_host,
    make_sandbox,
)
from loop_runtime.errors import ConfigError
from loop_runtime.ports import READ_ONLY_WRITE, AgentResult, SandboxScope
from loop_runtime.app.runner import sandbox_note
from tests.support.gitrepo import git, make_repo
from tests.test_engine import make, tick


@pytest.fixture
def fake_srt(tmp_path: Path) -> str:
    srt = tmp_path / "bin" / "srt"
    srt.parent.mkdir()
    srt.write_text("#!/bin/sh\nexit 99\n")
    srt.chmod(0o755)
    return str(srt)


def test_none_and_auto_without_srt_run_unconfined_and_say_why(tmp_path: Path) -> None:
    box = make_sandbox("none", root=tmp_path)
    assert isinstance(box, NoSandbox) and not box.active and 'sandbox = "none"' in box.reason
    auto = make_sandbox("auto", root=tmp_path, env={"PATH": str(tmp_path), "LOOP_RUNTIME_SRT": ""})
    assert isinstance(auto, NoSandbox) and "srt not found" in auto.reason


def test_srt_mode_without_srt_or_its_tools_is_a_one_line_config_error(tmp_path: Path, fake_srt: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_sandbox("srt", root=tmp_path, env={"PATH": str(tmp_path), "LOOP_RUNTIME_SRT": str(tmp_path / "nope")})
    message = str(err.value)
    assert message.startswith('loop-runtime.toml: sandbox = "srt" but srt not found') and "\n" not in message
    with pytest.raises(ConfigError) as err:  # srt present, bwrap/socat/rg not on this PATH
        make_sandbox("srt", root=tmp_path, env={"PATH": str(Path(fake_srt).parent), "LOOP_RUNTIME_SRT": fake_srt})
    if sys.platform == "linux":
        assert "bwrap" in str(err.value) and "apt-get install -y bubblewrap socat ripgrep" in str(err.value)
    with pytest.raises(ConfigError):
        make_sandbox("docker", root=tmp_path)


def _box(root: Path, srt: str, level: str = "L2", **kw: object) -> SrtSandbox:
    return SrtSandbox(srt=srt, root=str(root.resolve()), level=level, home=str(root.parent / "home"), **kw)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "proj", {"a.txt": "a\n"})
    git(root, "worktree", "add", "-q", "-b", "loop/r1", ".loop-worktrees/r1")
    git(root, "worktree", "add", "-q", "-b", "loop/r2", ".loop-worktrees/r2")
    (root / ".loop-runtime").mkdir()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".netrc").write_text("machine x password y\n")
    return root.resolve()


def test_an_l2_implementer_writes_its_worktree_and_commit_paths_only(repo: Path, fake_srt: str) -> None:
    wt = repo / ".loop-worktrees" / "r1"
    p = _box(repo, fake_srt, allow_domains=("pypi.org",)).prepare(
        SandboxScope(cwd=str(wt), writable=True, hosts=("api.anthropic.com",)))
    try:
        fs, net = p.settings["filesystem"], p.settings["network"]
        home = repo.parent / "home"
        assert {str(home / ".ssh"), str(home / ".netrc"), str(repo / ".loop-runtime"),
                str(repo / ".loop-worktrees")} <= set(fs["denyRead"])
        assert fs["allowRead"] == [str(wt)]
        git_dir = repo / ".git"
        assert set(fs["allowWrite"]) == {str(p.rw), str(wt), str(git_dir / "refs" / "heads" / "loop"),
                                         str(git_dir / "logs" / "refs" / "heads" / "loop"),
                                         str(git_dir / "worktrees" / "r1")}
        # the shared object store is never writable (an agent could overwrite history); HEAD and the
        # pointers of its git folder stay as they are
        assert str(git_dir / "objects") not in fs["allowWrite"] and p.objects == p.rw / "objects"
        assert {str(git_dir / "worktrees" / "r1" / n) for n in ("HEAD", "commondir", "gitdir")} <= set(fs["denyWrite"])
        assert net["allowedDomains"] == ["api.anthropic.com", "pypi.org"]
        assert json.loads(p.settings_path.read_text()) == p.settings
    finally:
        p.close()
    assert not p.dir.exists()


@pytest.mark.parametrize(("level", "writable", "purpose"), [("L1", False, "agent"), ("L3", False, "agent"),
                                                            ("L3", True, "tests")])
def test_read_only_agents_and_test_runs_never_write_git(repo: Path, fake_srt: str, level: str, writable: bool,
                                                        purpose: str) -> None:
    wt = repo / ".loop-worktrees" / "r1"
    p = _box(repo, fake_srt, level).prepare(SandboxScope(cwd=str(wt), writable=writable, purpose=purpose))
    try:
        writes = p.settings["filesystem"]["allowWrite"]
        assert not any("/.git" in w for w in writes)
        assert (str(wt) in writes) is writable
    finally:
        p.close()


def test_triage_in_the_project_root_cannot_read_worktrees_or_the_store(repo: Path, fake_srt: str) -> None:
    p = _box(repo, fake_srt, "L1").prepare(SandboxScope(cwd=str(repo), writable=False))
    try:
        fs = p.settings["filesystem"]
        assert fs["allowRead"] == [] and fs["allowWrite"] == [str(p.rw)]
        assert str(repo / ".loop-worktrees") in fs["denyRead"] and str(repo / ".loop-runtime") in fs["denyRead"]
    finally:
        p.close()


def test_wrap_puts_limits_inside_shims_first_and_a_private_tmp(repo: Path, fake_srt: str) -> None:
    wt = repo / ".loop-worktrees" / "r1"
    box = _box(repo, fake_srt, limits=SandboxLimits(cpu_s=60, memory_mb=512, processes=100, file_mb=10))
    p = box.prepare(SandboxScope(cwd=str(wt), writable=True, proxy_hosts=("127.0.0.1",)))
    try:
        argv, env = p.wrap(["claude", "-p", "it's a \"prompt\"\nwith lines"], {"PATH": "/usr/bin:/bin"})
        if p.cgroup is not None:  # a pids cgroup here: sandbox_exec's outer mode enters it around srt
            assert argv[:11] == [sys.executable, "-I", "-S", "-B", EXEC_HELPER, "--cgroup", str(p.cgroup),
                                 "--report", str(p.limit_report), "--", fake_srt]
            assert (p.cgroup / "pids.max").read_text().strip() == str(100 + PROCESS_ALLOWANCE)
            argv = argv[10:]
        assert argv[:4] == [fake_srt, "--settings", str(p.settings_path), "--"]  # no srt library: the CLI
        inner = argv[4:]
        assert inner[:5] == [sys.executable, "-I", "-S", "-B", EXEC_HELPER]
        pairs = dict(zip(inner[5::2], inner[6::2]))
        assert pairs["--cpu"] == "60" and pairs["--data"] == str(512 * 2**20)
        if p.cgroup is None:  # the fallback: the namespace watchdog, and an rlimit above its threshold
            assert pairs["--watch"] == "100" and int(pairs["--nproc"]) > 100 and pairs["--log"] == str(p.log)
        else:
            assert "--watch" not in pairs and "--nproc" not in pairs
        assert pairs["--proxy-host"] == "127.0.0.1"
        assert argv[-4:] == ["--", "claude", "-p", "it's a \"prompt\"\nwith lines"]
        assert env["PATH"].split(os.pathsep)[0] == str(p.dir / "shims") and env["TMPDIR"] == str(p.tmp)
        shim = (p.dir / "shims" / "git").read_text()
        assert shim.startswith(f"#!{sys.executable} -IB\n") and os.access(p.dir / "shims" / "git", os.X_OK)
        config = json.loads((p.dir / "shims.json").read_text())
        assert config["level"] == "L2" and config["branch"] == "loop/r1" and config["log"] == str(p.log)
    finally:
        p.close()


def test_denials_come_from_the_write_only_channel_and_are_re_decided(repo: Path, fake_srt: str) -> None:
    """Each record is re-decided with the shims' policy: a forged record of an allowed call is dropped, the
    reason shown is the policy's (never the record's text), junk and a dangling partial line cannot swallow
    the next record, and srt's own host-side report is listed after."""
    from loop_runtime.adapters.sandbox_exec import record

    p = _box(repo, fake_srt).prepare(SandboxScope(cwd=str(repo / ".loop-worktrees" / "r1"), writable=True))
    try:
        p.wrap(["true"], {"PATH": os.environ["PATH"]})  # writes the shims: level L2, branch loop/r1
        assert p.log.parent == p.dir and p.rw not in p.log.parents  # not in the sandbox's writable folder
        assert stat.S_ISFIFO(p.log.stat().st_mode) and stat.S_IMODE(p.log.stat().st_mode) == 0o222
        fd = os.open(p.log, os.O_WRONLY)
        os.write(fd, b'not json\n[1]\n{"tool": "git", "argv": ["status"], "reason": "forged"}\n{"dangling": "')
        os.close(fd)
        for i in range(300):  # a flood of junk and of forged records of allowed calls crowds out nothing
            record(str(p.log), {"tool": "git", "argv": ["log", f"-{i}"], "reason": "forged"})
            record(str(p.log), {"junk": i})
        record(str(p.log), {"tool": "git", "argv": ["push", "origin", "main"], "reason": "I was innocent"})
        record(str(p.log), {"tool": "git", "argv": ["push", "origin", "loop/r1"], "reason": "forged"})
        record(str(p.log), {"tool": "sandbox", "limit": "processes"})  # a cgroup holds the count: forged
        p.report.write_text(json.dumps({"violations": ["deny openat /etc/x", "deny mkdir /proc/self/fd/3/y",
                                                       "deny network-outbound evil.test:443 (not allowed)", 7]}))
        denials = p.denials()
        shims = [d for d in denials if not d.startswith("blocked")]
        assert len(shims) == 1 and shims[0].startswith("git push origin main: ") and "innocent" not in shims[0]
        assert denials[1:] == ("blocked: deny openat /etc/x", "blocked: deny network-outbound evil.test:443 "
                                                              "(not allowed)")
        if p.cgroup is None:
            assert p.watchdog
    finally:
        p.close()
    assert not p.dir.exists()


def test_a_read_only_agents_writes_in_its_own_worktree_are_marked_as_no_escape(repo: Path, fake_srt: str) -> None:
    wt = repo / ".loop-worktrees" / "r1"
    p = _box(repo, fake_srt, "L1").prepare(SandboxScope(cwd=str(wt), writable=False))
    try:
        p.report.write_text(json.dumps({"violations": [f"deny openat {wt}/.pytest_cache/v", f"deny openat {repo}/x",
                                                       "deny network-outbound evil.test:443"]}))
        assert p.denials() == (f"{READ_ONLY_WRITE}deny openat {wt}/.pytest_cache/v", f"blocked: deny openat {repo}/x",
                               "blocked: deny network-outbound evil.test:443")
    finally:
        p.close()


@pytest.mark.parametrize(("url", "entries", "loop"), [
    (None, ("api.anthropic.com",), False),
    ("https://api.anthropic.com", ("api.anthropic.com",), False),
    ("http://127.0.0.1:8123", ("127.0.0.1:8123",), True),
    ("http://localhost:9000/v1", ("127.0.0.1:9000", "localhost:9000"), True),
    ("https://127.0.0.5", ("127.0.0.5:443",), True),
    ("http://[::1]:7000", ("[::1]:7000",), True),
    ("https://proxy.corp.example:8443/anthropic", ("proxy.corp.example",), False),
])
def test_the_model_endpoint_allowlist_entries(url: str | None, entries: tuple[str, ...], loop: bool) -> None:
    assert endpoint_host(url, "api.anthropic.com") == (entries, loop)


def test_config_keys_are_validated_and_the_env_overrides_the_mode() -> None:
    from loop_runtime.formats.project_config import apply_env, parse_project_config

    cfg = parse_project_config('sandbox = "srt"\nsandbox_allow_domains = ["pypi.org", "*.pythonhosted.org", '
                               '"127.0.0.1:8080"]\nsandbox_processes = 64\n')
    assert cfg.sandbox == "srt" and cfg.sandbox_processes == 64 and "*.pythonhosted.org" in cfg.sandbox_allow_domains
    assert parse_project_config("").sandbox == "auto"
    for bad in ('sandbox = "docker"', 'sandbox_allow_domains = ["*"]', 'sandbox_allow_domains = ["http://x.io"]',
                'sandbox_allow_domains = ["a b"]', "sandbox_cpu_s = 0", "sandbox_memory_mb = true"):
        with pytest.raises(ConfigError) as err:
            parse_project_config(bad)
        assert str(err.value).startswith("loop-runtime.toml: sandbox") and "\n" not in str(err.value)
    assert apply_env(cfg, {"LOOP_RUNTIME_SANDBOX": "none"}).sandbox == "none"
    with pytest.raises(ConfigError):
        apply_env(cfg, {"LOOP_RUNTIME_SANDBOX": "off"})


def test_every_tick_of_a_real_agent_logs_that_the_sandbox_is_off() -> None:
    off = NoSandbox("srt not found")
    assert sandbox_note(off, "claude") == "sandbox off: srt not found — agents get no shell; tests run unconfined"
    assert sandbox_note(off, "mock") is None
    engine, *_ = make(sandbox_note=sandbox_note(off, "claude"))
    result = tick(engine)
    assert result.lines[0].startswith("sandbox off: srt not found")


@pytest.mark.parametrize(("role", "denial", "escalates"), [
    ("implementer", "git push origin main: push: only the attempt's own branch loop/x", True),
    ("implementer", "blocked: deny openat /home/u/pwned.txt", True),
    ("verifier", "blocked: deny network-outbound evil.test:443", True),
    ("verifier", f"{READ_ONLY_WRITE}deny openat /wt/.pytest_cache/v", False),
    ("triage", "blocked: deny openat /etc/passwd", False),
])
def test_sandbox_denials_reach_the_tick_and_escalate_when_the_result_depends_on_them(
        role: str, denial: str, escalates: bool) -> None:
    """What the shims denied and the sandbox blocked is listed in the tick result, per role. An implementer
    or verifier that was blocked escalates (its change or verdict may rest on what did not happen), with the
    change held; a read-only agent's refused cache write in its own worktree, and triage, are only reported."""
    engine, backend, *_ = make()
    real_run = backend.run

    async def run(request, **kw):  # the mock agent, as if its shell had been refused something
        res: AgentResult = await real_run(request, **kw)
        if request.role == role:
            res = dataclasses.replace(res, sandbox_denials=(denial,))
        return res

    backend.run = run  # type: ignore[method-assign]
    result = asyncio.run(engine.tick())
    assert f"sandbox denied ({role}): {denial}" in result.lines
    if escalates:
        assert result.outcome == "escalated" and "sandbox-violation" in result.note, result.lines
        assert any(line.startswith("escalated") and "sandbox blocked the " + role in line for line in result.lines)
    else:
        assert result.outcome != "escalated", result.lines


def test_claude_scope_names_its_model_endpoint_and_writes_only_when_editing(tmp_path: Path, fake_srt: str) -> None:
    """The CLI's scope: api.anthropic.com by default, a loopback stand-in through the proxy, a cloud provider's
    hosts when switched to it; the worktree is writable only at EDIT_WORKTREE."""
    from loop_runtime.adapters.agents.claude_cli import ClaudeCliBackend
    from loop_runtime.ports import AgentRequest, Permission

    def scope(env: dict[str, str], permission: Permission = Permission.EDIT_WORKTREE) -> SandboxScope:
        request = AgentRequest(role="implementer", prompt="x", cwd=str(tmp_path), permission=permission,
                               token_limit=1)
        return ClaudeCliBackend(binary=fake_srt, env=env).scope(request)

    default = scope({"ANTHROPIC_API_KEY": "k"})
    assert default.hosts == ("api.anthropic.com", "console.anthropic.com") and default.writable
    assert default.proxy_hosts == ()
    local = scope({"ANTHROPIC_BASE_URL": "http://127.0.0.1:8123"}, Permission.READ_ONLY)
    assert local.hosts == ("127.0.0.1:8123",) and local.proxy_hosts == ("127.0.0.1", "localhost")
    assert not local.writable
    assert "*.amazonaws.com" in scope({"CLAUDE_CODE_USE_BEDROCK": "1"}).hosts


def test_a_sandboxed_claude_cli_runs_without_nonessential_traffic(tmp_path: Path) -> None:
    """Telemetry and update checks would only be refused by the allowlist (each a violation that escalates):
    a sandboxed CLI runs with them off unless the user's env says otherwise; an unsandboxed one is untouched."""
    from loop_runtime.adapters.agents.claude_cli import ClaudeCliBackend
    from loop_runtime.ports import AgentRequest, Permission
    from tests.fakes.sandbox import PassthroughSandbox

    seen = tmp_path / "env.txt"
    cli = tmp_path / "claude"
    cli.write_text(f"#!/bin/sh\nenv > {seen}\n"
                   "echo '{\"type\": \"result\", \"subtype\": \"success\", \"is_error\": false, \"result\": \"ok\", "
                   "\"num_turns\": 1, \"usage\": {\"input_tokens\": 1, \"output_tokens\": 1}}'\n")
    cli.chmod(0o755)
    request = AgentRequest(role="implementer", prompt="x", cwd=str(tmp_path), permission=Permission.EDIT_WORKTREE,
                           token_limit=1000, timeout_s=60, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    for sandbox, expected in ((PassthroughSandbox(), True), (None, False)):
        backend = ClaudeCliBackend(binary=str(cli), env={"ANTHROPIC_API_KEY": "k"}, sandbox=sandbox)
        assert asyncio.run(backend.run(request)).status == "ok"
        env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
        assert (env.get("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC") == "1") is expected
        assert (env.get("DISABLE_AUTOUPDATER") == "1") is expected


def test_a_long_record_keeps_its_subcommand_and_stays_one_atomic_write(tmp_path: Path) -> None:
    """The Claude CLI prefixes its git calls with ~70 `-c` options: a record drops arguments from the middle
    (marked clipped) so the subcommand at the end survives, and never exceeds one PIPE_BUF write."""
    from loop_runtime.adapters.sandbox_exec import record

    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        argv = [a for i in range(200) for a in ("-c", f"hook.h{i}.enabled=false")] + ["config", "user.name"]
        record(str(fifo), {"tool": "git", "argv": argv, "reason": "r"})
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    assert data.startswith(b"\n") and data.endswith(b"\n") and len(data) <= 4000
    entry = json.loads(data)
    assert entry["clipped"] is True and entry["argv"][:2] == ["-c", "hook.h0.enabled=false"]
    assert entry["argv"][-2:] == ["config", "user.name"]


@pytest.mark.parametrize(("configured", "effective", "shims"), [
    ("L3", "L2", "L2"), ("L3", None, "L3"), ("L2", "L3", "L2"), ("L3", "L1", "L1"), ("L3", "L9", "L1")])
def test_the_shims_never_grant_more_than_the_ticks_effective_level(repo: Path, fake_srt: str, configured: str,
                                                                    effective: str | None, shims: str) -> None:
    """A tick held down (e.g. L3 configured, L2 effective) gets the lower level's shims and git paths."""
    wt = repo / ".loop-worktrees" / "r1"
    p = _box(repo, fake_srt, configured).prepare(SandboxScope(cwd=str(wt), writable=True, level=effective))
    try:
        p.wrap(["true"], {"PATH": os.environ["PATH"]})
        assert json.loads((p.dir / "shims.json").read_text())["level"] == shims
        commits = any("/refs/heads/loop" in w for w in p.settings["filesystem"]["allowWrite"])
        assert commits is (shims in ("L2", "L3"))
    finally:
        p.close()


def test_the_engine_passes_the_effective_level_to_the_agent() -> None:
    engine, backend, *_ = make()
    seen: list[str | None] = []
    real_run = backend.run

    async def run(request, **kw):
        seen.append(request.level)
        return await real_run(request, **kw)

    backend.run = run  # type: ignore[method-assign]
    result = asyncio.run(engine.tick())
    assert seen and set(seen) == {result.effective_level}


def test_pids_cgroup_candidates_for_cgroup_v1_and_v2(tmp_path: Path) -> None:
    """v2: only a folder that enables pids for its children (a session scope does not; the root does);
    v1: the pids hierarchy's own cgroup, then its root; hierarchies without pids are ignored."""
    from loop_runtime.adapters.pids_cgroup import candidates

    v2 = tmp_path / "v2"
    scope = v2 / "user.slice" / "session-1.scope"
    scope.mkdir(parents=True)
    (scope / "cgroup.subtree_control").write_text("\n")
    (v2 / "cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    mountinfo = f"30 25 0:26 / {v2} rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"
    assert candidates(mountinfo, "0::/user.slice/session-1.scope\n") == [v2]
    (v2 / "cgroup.subtree_control").write_text("cpu memory\n")
    assert candidates(mountinfo, "0::/user.slice/session-1.scope\n") == []
    v1 = tmp_path / "v1"
    mountinfo = (f"40 25 0:30 / {tmp_path / 'cpu'} rw - cgroup cgroup rw,cpu\n"
                 f"41 25 0:31 / {v1} rw,nosuid - cgroup cgroup rw,pids\n")
    assert candidates(mountinfo, "9:cpu:/x\n8:pids:/docker/abc\n") == [v1 / "docker" / "abc", v1]
    assert candidates("garbage\n", "nonsense") == []


def test_only_a_runtime_made_cgroup_is_ever_swept(tmp_path: Path) -> None:
    """kill_cgroup refuses any folder not named loop-sandbox-*: a wrong path never kills the host's processes."""
    from loop_runtime.adapters.sandbox_exec import kill_cgroup

    folder = tmp_path / "pids"
    folder.mkdir()
    (folder / "cgroup.procs").write_text(f"{os.getpid()}\n")
    assert kill_cgroup(str(folder)) is False  # and we are still here


# --------------------------------------------------------------------------- agent CLIs' scope (issue 14)


@pytest.mark.parametrize(("endpoint", "hosts", "proxy_hosts"), [
    ("http://127.0.0.1:4100", ("127.0.0.1:4100",), ("127.0.0.1", "localhost")),
    ("http://localhost:4100/v1", ("127.0.0.1:4100", "localhost:4100"), ("127.0.0.1", "localhost")),
    ("https://api.example.com/v1", ("api.example.com",), ()),
])
def test_an_agent_cli_scope_allows_its_endpoint_its_private_folder_and_writes_only_at_edit_worktree(
        endpoint: str, hosts: tuple[str, ...], proxy_hosts: tuple[str, ...]) -> None:
    from loop_runtime.adapters.agents.boxed import agent_scope
    from loop_runtime.ports import AgentRequest, Permission

    for permission, writable in ((Permission.READ_ONLY, False), (Permission.EDIT_WORKTREE, True)):
        req = AgentRequest(role="implementer", prompt="p", cwd="/w", permission=permission, level="L2",
                           token_limit=1000)
        scope = agent_scope(req, endpoint, "default.example", writable=("/tmp/loop-gemini-x",))
        assert (scope.cwd, scope.writable, scope.purpose, scope.level) == ("/w", writable, "agent", "L2")
        assert scope.hosts == hosts and scope.proxy_hosts == proxy_hosts
        assert scope.extra_writable == ("/tmp/loop-gemini-x",)


def test_grok_is_refused_under_an_active_sandbox_before_anything_starts(tmp_path: Path) -> None:
    """Its API client ignores HTTPS_PROXY (the only way out of srt): refused with one line, even with
    ``sandboxed = true``; the sandbox is never prepared, so it can never run outside it."""
    from loop_runtime.adapters.agents.grok_cli import UNREACHABLE_IN_SANDBOX, GrokCliBackend
    from loop_runtime.errors import AgentNotStarted
    from loop_runtime.ports import AgentRequest, Permission

    class Active:
        name, active, reason = "srt", True, "srt"
        prepared = 0

        def prepare(self, scope: SandboxScope) -> None:
            Active.prepared += 1

    grok = tmp_path / "grok"
    grok.write_text("#!/bin/sh\nexit 0\n")
    grok.chmod(0o755)
    for sandboxed in (False, True):
        backend = GrokCliBackend(binary=str(grok), env={"GROK_API_KEY": "k"}, sandboxed=sandboxed,
                                 sandbox=Active())  # type: ignore[arg-type]
        req = AgentRequest(role="implementer", prompt="p", cwd=str(tmp_path), permission=Permission.EDIT_WORKTREE,
                           token_limit=1000)
        with pytest.raises(AgentNotStarted) as err:
            asyncio.run(backend.run(req))
        assert str(err.value) == UNREACHABLE_IN_SANDBOX and "\n" not in UNREACHABLE_IN_SANDBOX
    assert Active.prepared == 0
