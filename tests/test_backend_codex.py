"""CodexCliBackend against the fake `codex` CLI: flags, usage mapping, fail-closed failures, limits."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.adapters.agents import CodexCliBackend, make_backend
from loop_runtime.adapters.agents.codex_cli import codex_usage, toml_string
from loop_runtime.errors import BackendError
from loop_runtime.ports import AgentBackend, AgentRequest, Permission, Usage
from tests.fakes.fake_cli import FakeCli, group_gone, process_gone

KEY = "sk-proj-test-0123456789abcdefghij"
WARNING = "Model metadata for `gpt-test` not found. Defaulting to fallback metadata"


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    return FakeCli("codex", tmp_path / "fake")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    return wt.resolve()


def backend(fake: FakeCli, **kw: Any) -> CodexCliBackend:
    return CodexCliBackend(binary=fake.binary, env={"OPENAI_API_KEY": KEY}, **kw)


def request(fake: FakeCli, cwd: Path, **kw: Any) -> AgentRequest:
    base: dict[str, Any] = {"role": "implementer", "prompt": "fix the bug", "cwd": str(cwd),
                            "permission": Permission.EDIT_WORKTREE, "token_limit": 100_000, "timeout_s": 20.0,
                            "env": fake.env()}
    base.update(kw)
    return AgentRequest(**base)


def run(b: CodexCliBackend, req: AgentRequest, **kw: Any) -> Any:
    return asyncio.run(b.run(req, **kw))


# --------------------------------------------------------------------------- usage


def test_turn_completed_usage_maps_cached_as_a_subset_of_input(fake: FakeCli, worktree: Path) -> None:
    """input 1,500 of which 500 cached, output 300 → Usage(1000, 300, cache_read 500), total 1,800."""
    fake.script([{"warning": WARNING}, {"message": "the answer"},
                 {"usage": {"input_tokens": 1500, "cached_input_tokens": 500, "output_tokens": 300}}])
    events: list[str] = []
    res = run(backend(fake), request(fake, worktree), on_event=lambda k, p: events.append(k))
    assert res.status == "ok" and res.error is None
    assert res.usage == Usage(input=1000, output=300, cache_read=500)
    assert res.usage.total == 1800
    assert (res.text, res.turns) == ("the answer", 1)
    assert events[0] == "agent.start" and events[-1] == "agent.end"
    assert {"agent.warning", "agent.text", "agent.usage"} <= set(events)


def test_usage_is_cumulative_so_the_last_report_wins(fake: FakeCli, worktree: Path) -> None:
    """Two turn.completed reports are thread totals: the second replaces the first, never adds."""
    fake.script([{"usage": {"input_tokens": 100, "output_tokens": 10}},
                 {"usage": {"input_tokens": 300, "cached_input_tokens": 50, "output_tokens": 30}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.usage == Usage(input=250, output=30, cache_read=50)


# invariant: for consistent reports the total is exactly input_tokens + output_tokens, and it is never less
@given(inp=st.integers(0, 10**8), cached=st.integers(0, 10**8), written=st.integers(0, 10**8),
       out=st.integers(0, 10**8))
def test_codex_usage_total_is_input_plus_output(inp: int, cached: int, written: int, out: int) -> None:
    """Usage.total == input_tokens + output_tokens when the subsets fit; otherwise it over-counts."""
    usage = codex_usage({"input_tokens": inp, "cached_input_tokens": cached, "cache_write_input_tokens": written,
                         "output_tokens": out})
    assert usage.total >= inp + out
    if cached + written <= inp:
        assert usage.total == inp + out


# --------------------------------------------------------------------------- argv


@pytest.mark.parametrize(("permission", "sandbox"), [(Permission.READ_ONLY, "read-only"),
                                                      (Permission.EDIT_WORKTREE, "workspace-write")])
def test_sandbox_flag_per_level_on_received_argv(fake: FakeCli, worktree: Path, permission: Permission,
                                                 sandbox: str) -> None:
    """exec --json -C <worktree> -s <sandbox>, prompt after `--`, stdin /dev/null, own process group."""
    fake.script([{"usage": {"input_tokens": 1}}])
    run(backend(fake), request(fake, worktree, permission=permission, prompt="-x"))
    (call,) = fake.calls()
    argv = call["argv"]
    assert argv[:2] == ["exec", "--json"]
    assert argv[argv.index("-C") + 1] == str(worktree)
    assert argv[argv.index("-s") + 1] == sandbox
    assert "--dangerously-bypass-approvals-and-sandbox" not in argv and "--full-auto" not in argv
    tmp_excluded = {"sandbox_workspace_write.exclude_slash_tmp=true",
                    "sandbox_workspace_write.exclude_tmpdir_env_var=true"}
    overrides = {argv[i + 1] for i, a in enumerate(argv) if a == "-c"}
    assert (tmp_excluded <= overrides) == (sandbox == "workspace-write")  # worktree is the only writable root
    assert argv[-2:] == ["--", "-x"]
    assert call["stdin_devnull"] is True and call["pgid"] == call["pid"]


def test_model_and_system_prompt_become_flags(fake: FakeCli, worktree: Path) -> None:
    """-m carries the model; the system prompt is a developer_instructions override that parses as TOML."""
    system = 'Be "careful".\nNo \\ escapes lost — ünïcode, tab\tand \x7f too.'
    fake.script([{"usage": {"input_tokens": 1}}])
    run(backend(fake, model="gpt-5"), request(fake, worktree, system_prompt=system))
    argv = fake.calls()[0]["argv"]
    assert argv[argv.index("-m") + 1] == "gpt-5"
    (override,) = [argv[i + 1] for i, a in enumerate(argv) if a == "-c" and "developer" in argv[i + 1]]
    assert override.startswith("developer_instructions=")
    assert tomllib.loads(override)["developer_instructions"] == system


# invariant: any system prompt survives the trip through a TOML `-c` override unchanged
@given(st.text())
def test_toml_string_round_trips(text: str) -> None:
    """toml_string output is a TOML basic string that parses back to the same text."""
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_env_and_codex_home(fake: FakeCli, worktree: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The child sees the request env plus OPENAI_* credentials and CODEX_HOME, nothing else of ours."""
    monkeypatch.setenv("LEAKY_SECRET", "nope")
    fake.script([{"usage": {"input_tokens": 1}}])
    run(backend(fake, codex_home=str(tmp_path / "ch")), request(fake, worktree))
    env = fake.calls()[0]["env"]
    assert env["OPENAI_API_KEY"] == KEY and env["CODEX_HOME"] == str(tmp_path / "ch")
    assert "LEAKY_SECRET" not in env


# --------------------------------------------------------------------------- failures


def test_turn_failed_without_usage_charges_the_reservation(fake: FakeCli, worktree: Path) -> None:
    """Reconnecting errors then turn.failed (exit 1): status error, usage = token_limit, said in error."""
    fake.script([{"error": "Reconnecting... 1/5 (server error)", "repeat": 2},
                 {"error": "stream disconnected"}, {"turn_failed": "stream disconnected"}], exit_code=1)
    res = run(backend(fake), request(fake, worktree, token_limit=12_000))
    assert res.status == "error"
    assert res.usage == Usage(input=12_000)
    assert "stream disconnected" in res.error and "charged the full reservation of 12,000" in res.error


def test_reconnect_errors_that_recover_are_not_failures(fake: FakeCli, worktree: Path) -> None:
    """Transient `error` events followed by turn.completed end ok with the reported usage."""
    fake.script([{"error": "Reconnecting... 1/5"}, {"message": "ok"},
                 {"usage": {"input_tokens": 10, "output_tokens": 2}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "ok" and res.usage.total == 12


def test_exit_without_any_event_reports_stderr(fake: FakeCli, worktree: Path) -> None:
    """A startup failure (message only on stderr, exit 1) is an error carrying that line, fail closed."""
    fake.script([{"stderr": "Not inside a trusted directory and --skip-git-repo-check was not specified."},
                 {"exit": 1}], no_preamble=True)
    res = run(backend(fake), request(fake, worktree, token_limit=3000))
    assert res.status == "error" and res.usage.total == 3000
    assert "code 1" in res.error and "trusted directory" in res.error


def test_garbage_lines_are_skipped(fake: FakeCli, worktree: Path) -> None:
    """Non-JSON lines between events are ignored; the usage is still exact."""
    fake.script([{"garbage": "WARNING: proceeding"}, {"message": "hi"},
                 {"usage": {"input_tokens": 40, "output_tokens": 2}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "ok" and res.usage.total == 42


def test_only_garbage_then_nonzero_exit_is_a_clear_error(fake: FakeCli, worktree: Path) -> None:
    """With no turn at all, the error counts the unparseable lines."""
    fake.script([{"garbage": "panic at src/main.rs", "repeat": 2}, {"exit": 101}], no_preamble=True)
    res = run(backend(fake), request(fake, worktree, token_limit=100))
    assert res.status == "error" and res.usage.total == 100
    assert "2 unparseable output line(s)" in res.error and "101" in res.error


def test_nonzero_exit_after_a_completed_turn_keeps_the_reported_usage(fake: FakeCli, worktree: Path) -> None:
    """Exit 1 after turn.completed is an error, billed exactly as reported (the turn did finish)."""
    fake.script([{"usage": {"input_tokens": 500, "output_tokens": 5}}, {"error": "shutdown failed"}], exit_code=1)
    res = run(backend(fake), request(fake, worktree, token_limit=99_999))
    assert res.status == "error" and res.usage.total == 505 and "shutdown failed" in res.error


# --------------------------------------------------------------------------- hard limits


def test_runaway_cumulative_usage_stops_at_the_reservation(fake: FakeCli, worktree: Path) -> None:
    """Growing thread totals stop the run at the first report that reaches the limit, group killed."""
    steps = [{"usage": {"input_tokens": 1000 * (i + 1)}} for i in range(50)]
    fake.script([*steps, {"hang": True}], interval=0.02, spawn_child=True)
    res = run(backend(fake), request(fake, worktree, token_limit=4500))
    assert (res.status, res.stop_reason) == ("halted", "budget")
    assert res.usage.total == 5000  # the first report at or past 4,500
    assert group_gone(fake.calls()[0]["pgid"]) and all(process_gone(p) for p in fake.child_pids())


def test_hang_waiting_for_network_is_killed_at_the_deadline(fake: FakeCli, worktree: Path) -> None:
    """`Reconnecting... waiting for network` forever ends at the wall-clock deadline, group killed."""
    fake.script([{"error": "Reconnecting... waiting for network"}, {"hang": True}], spawn_child=True)
    started = time.monotonic()
    res = run(backend(fake), request(fake, worktree, timeout_s=1.0, token_limit=8000))
    assert time.monotonic() - started < 4.5
    assert (res.status, res.stop_reason, res.usage.total) == ("halted", "timeout", 8000)
    assert group_gone(fake.calls()[0]["pgid"]) and all(process_gone(p) for p in fake.child_pids())


def test_stop_check_reason_ends_the_run(fake: FakeCli, worktree: Path) -> None:
    """A kill switch seen by stop() halts the run with that reason."""
    fake.script([{"hang": True}])
    res = run(backend(fake), request(fake, worktree, timeout_s=30),
              stop=lambda: "kill" if fake.calls() else None)
    assert (res.status, res.stop_reason) == ("halted", "kill")
    assert group_gone(fake.calls()[0]["pgid"])


# --------------------------------------------------------------------------- files, setup


def test_file_change_items_become_files_changed(fake: FakeCli, worktree: Path) -> None:
    """Completed file_change items inside the worktree are reported; failed or outside ones are not."""
    fake.script([{"file_change": [{"path": str(worktree / "a.txt"), "kind": "update"},
                                  {"path": "new/b.txt", "kind": "add"}, {"path": "/tmp/x", "kind": "add"}]},
                 {"file_change": [{"path": "c.txt", "kind": "update"}], "status": "failed"},
                 {"command": {"command": "pytest", "output": "1 passed", "exit_code": 0}},
                 {"usage": {"input_tokens": 1}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.files_changed == ("a.txt", "new/b.txt")


def test_transcript_redacts_the_key(fake: FakeCli, worktree: Path, tmp_path: Path) -> None:
    """The raw JSONL transcript never contains the API key."""
    fake.script([{"message": f"key={KEY}"}, {"usage": {"input_tokens": 1}}])
    res = run(backend(fake), request(fake, worktree, transcript_dir=str(tmp_path / "tr")))
    text = Path(res.transcript).read_text()
    assert KEY not in text and "thread.started" in text


def test_missing_binary_names_the_npm_package() -> None:
    """A codex binary that cannot be found is a one-line error naming `npm i -g @openai/codex`."""
    with pytest.raises(BackendError, match=r"npm i -g @openai/codex"):
        CodexCliBackend(binary="/nonexistent/codex")


def test_missing_credentials_name_the_variable(fake: FakeCli, worktree: Path, tmp_path: Path) -> None:
    """No key, no login and no config in CODEX_HOME: a one-line error; a config.toml is enough to try."""
    fake.script([{"usage": {"input_tokens": 1}}])
    home = tmp_path / "codex-home"
    home.mkdir()
    bare = CodexCliBackend(binary=fake.binary, env={}, codex_home=str(home))
    with pytest.raises(BackendError, match="set OPENAI_API_KEY"):
        run(bare, request(fake, worktree))
    (home / "config.toml").write_text('model_provider = "local"\n')
    assert run(bare, request(fake, worktree)).status == "ok"


def test_make_backend_builds_a_codex_backend(fake: FakeCli, tmp_path: Path) -> None:
    """The factory returns a CodexCliBackend satisfying the port, with codex_home passed through."""
    b = make_backend("codex", binary=fake.binary, model="gpt-5", codex_home=str(tmp_path), env={})
    assert isinstance(b, CodexCliBackend) and isinstance(b, AgentBackend)
    assert b.name == "codex" and b.credentials["CODEX_HOME"] == str(tmp_path)
