"""ClaudeCliBackend against the fake `claude` CLI: flags, exact usage, hard limits, failures."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.adapters.agents import ClaudeCliBackend, make_backend
from loop_runtime.adapters.agents.claude_cli import find_claude, result_usage
from loop_runtime.adapters.agents.process import BASE_ENV_KEYS, UsageMeter, child_env, redact
from loop_runtime.errors import BackendError
from loop_runtime.ports import AgentBackend, AgentRequest, Permission, Usage
from tests.fakes.fake_cli import FakeCli, group_gone, process_gone

KEY = "sk-ant-test-0123456789abcdefghij"
U1 = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 500}


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    return FakeCli("claude", tmp_path / "fake")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    return wt.resolve()


def backend(fake: FakeCli, **env: str) -> ClaudeCliBackend:
    return ClaudeCliBackend(binary=fake.binary, env={"ANTHROPIC_API_KEY": KEY, **env})


def request(fake: FakeCli, cwd: Path, **kw: Any) -> AgentRequest:
    base: dict[str, Any] = {"role": "implementer", "prompt": "fix the bug", "cwd": str(cwd),
                            "permission": Permission.EDIT_WORKTREE, "token_limit": 100_000, "timeout_s": 20.0,
                            "env": fake.env()}
    base.update(kw)
    return AgentRequest(**base)


def run(b: ClaudeCliBackend, req: AgentRequest, **kw: Any) -> Any:
    return asyncio.run(b.run(req, **kw))


# --------------------------------------------------------------------------- success and usage


def test_usage_comes_exactly_from_the_result_message(fake: FakeCli, worktree: Path) -> None:
    """The final result's usage (all four fields), cost, turns and text become the AgentResult."""
    fake.script([{"assistant": {"text": "looking", "usage": U1}},
                 {"assistant": {"text": "done", "usage": U1}},
                 {"result": {"result": "all fixed", "total_cost_usd": 0.0123}}])
    events: list[tuple[str, dict[str, Any]]] = []
    res = run(backend(fake), request(fake, worktree), on_event=lambda k, p: events.append((k, dict(p))))
    assert res.status == "ok" and res.error is None
    assert res.usage == Usage(input=2000, output=400, cache_write=600, cache_read=1000, cost_usd=0.0123)
    assert res.usage.total == 4000
    assert (res.text, res.turns) == ("all fixed", 2)
    kinds = [k for k, _ in events]
    assert kinds[0] == "agent.start" and kinds[-1] == "agent.end"
    assert {"agent.text", "agent.usage"} <= set(kinds)
    assert events[-1][1]["usage"]["total"] == 4000


def test_model_usage_sum_wins_when_larger(fake: FakeCli, worktree: Path) -> None:
    """A helper model's tokens appear only in modelUsage; the larger sum is billed."""
    model_usage = {"claude-sonnet": {"inputTokens": 2000, "outputTokens": 400, "cacheReadInputTokens": 1000,
                                     "cacheCreationInputTokens": 600, "costUSD": 0.02},
                   "claude-haiku": {"inputTokens": 50, "outputTokens": 10, "costUSD": 0.001}}
    fake.script([{"assistant": {"text": "x", "usage": U1}}, {"assistant": {"text": "y", "usage": U1}},
                 {"result": {"modelUsage": model_usage, "total_cost_usd": 0.021}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.usage == Usage(input=2050, output=410, cache_write=600, cache_read=1000, cost_usd=0.021)


def test_partial_messages_usage_counts_towards_the_live_total(fake: FakeCli, worktree: Path) -> None:
    """stream_event message_start/message_delta usage feeds the running total (agent.usage events)."""
    fake.script([{"stream_usage": {"input_tokens": 700, "output_tokens": 300}}, {"result": {}}])
    seen: list[int] = []
    run(backend(fake), request(fake, worktree),
        on_event=lambda k, p: seen.append(p["total"]) if k == "agent.usage" else None)
    assert seen and seen[-1] == 1000


# invariant: the billed usage never under-counts either report in the result message
@given(usage=st.fixed_dictionaries({k: st.integers(0, 10**7) for k in U1}),
       per_model=st.lists(st.fixed_dictionaries({"inputTokens": st.integers(0, 10**7),
                                                 "outputTokens": st.integers(0, 10**7),
                                                 "cacheReadInputTokens": st.integers(0, 10**7),
                                                 "cacheCreationInputTokens": st.integers(0, 10**7)}), max_size=3))
def test_result_usage_never_undercounts(usage: dict[str, int], per_model: list[dict[str, int]]) -> None:
    """The billed total is at least the usage total and at least the modelUsage sum."""
    billed = result_usage({"usage": usage, "modelUsage": {f"m{i}": m for i, m in enumerate(per_model)}})
    assert billed.total >= sum(usage.values())
    assert billed.total >= sum(sum(m.values()) for m in per_model)


def test_garbage_result_fields_are_ignored_not_trusted(fake: FakeCli, worktree: Path) -> None:
    """Negative, string or boolean token counts in a result count as zero instead of crashing."""
    fake.script([{"result": {"usage": {"input_tokens": -5, "output_tokens": "lots", "cache_read_input_tokens": True},
                             "num_turns": "x", "total_cost_usd": "free"}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "ok" and res.usage.total == 0 and res.usage.cost_usd is None


# --------------------------------------------------------------------------- argv, env, cwd


def test_read_only_flags_on_received_argv(fake: FakeCli, worktree: Path) -> None:
    """READ_ONLY: dontAsk and only the cwd-confined Read rule; every writing tool and Bash disallowed."""
    fake.script([{"result": {}}])
    run(backend(fake), request(fake, worktree, permission=Permission.READ_ONLY, role="verifier", max_turns=7,
                               model="sonnet", system_prompt="be strict"))
    (call,) = fake.calls()
    argv = call["argv"]
    assert argv[:5] == ["-p", "--output-format", "stream-json", "--verbose", "--max-turns"] and argv[5] == "7"
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--append-system-prompt") + 1] == "be strict"
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert argv[argv.index("--allowedTools") + 1] == "Read(./**)"  # also covers Glob/Grep, confined
    assert argv[argv.index("--disallowedTools") + 1] == "Bash,Write,Edit,NotebookEdit,WebFetch,WebSearch"
    assert argv[-2:] == ["--", "fix the bug"]
    assert call["cwd"] == str(worktree) and call["stdin_devnull"] is True
    assert call["pgid"] == call["pid"]  # its own process group


def test_edit_worktree_flags_never_grant_bare_write_or_edit(fake: FakeCli, worktree: Path) -> None:
    """EDIT_WORKTREE: reads and edits only through the ./** path rules; Bash stays disallowed."""
    fake.script([{"result": {}}])
    run(backend(fake), request(fake, worktree))
    argv = fake.calls()[0]["argv"]
    allowed = argv[argv.index("--allowedTools") + 1].split(",")
    assert allowed == ["Read(./**)", "Edit(./**)"]
    assert not {"Write", "Edit", "Glob", "Grep", "Read"} & set(allowed)  # no bare, unconfined grant
    assert argv[argv.index("--disallowedTools") + 1] == "Bash,WebFetch,WebSearch"
    assert "--append-system-prompt" not in argv and "--model" not in argv


def test_prompt_starting_with_a_dash_stays_a_prompt(fake: FakeCli, worktree: Path) -> None:
    """The prompt follows `--`, so text such as `--help me` is never read as a flag."""
    fake.script([{"result": {}}])
    run(backend(fake), request(fake, worktree, prompt="--help me"))
    assert fake.calls()[0]["argv"][-2:] == ["--", "--help me"]


def test_child_env_is_request_env_plus_credentials_only(fake: FakeCli, worktree: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from our own environment leaks in; the backend's credential variables are added.

    ANTHROPIC_BASE_URL becomes the upstream of the metering proxy; the CLI gets the proxy's
    own loopback address, with its per-run secret as the first path segment.
    """
    monkeypatch.setenv("LEAKY_SECRET", "do-not-pass")
    fake.script([{"result": {}}])
    b = backend(fake, ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    run(b, request(fake, worktree))
    env = fake.calls()[0]["env"]
    assert "LEAKY_SECRET" not in env
    assert b.upstream == "http://127.0.0.1:9"
    assert env["ANTHROPIC_API_KEY"] == KEY
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]{32}", env["ANTHROPIC_BASE_URL"])
    assert env["HOME"] == str(fake.home)


# --------------------------------------------------------------------------- error results


def test_error_max_turns_is_billed_and_reported(fake: FakeCli, worktree: Path) -> None:
    """error_max_turns (exit 1) still bills its usage; status error names the subtype."""
    fake.script([{"assistant": {"text": "x", "usage": U1}},
                 {"result": {"subtype": "error_max_turns", "errors": ["Reached maximum number of turns (2)"],
                             "total_cost_usd": 0.01}}], exit_code=1)
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "error" and res.usage.total == 2000
    assert "error_max_turns" in res.error and "Reached maximum number of turns" in res.error


def test_api_error_result_is_billed(fake: FakeCli, worktree: Path) -> None:
    """A failed API call arrives as success + is_error + api_error_status and is still billed."""
    fake.script([{"assistant": {"text": "x", "usage": U1}},
                 {"result": {"subtype": "success", "is_error": True, "result": "API Error: 529 Overloaded",
                             "api_error_status": 529}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "error" and res.usage.total == 2000
    assert "529" in res.error


def test_not_logged_in_result_is_a_credentials_error(fake: FakeCli, worktree: Path) -> None:
    """The CLI's own 'Not logged in' result becomes a one-line BackendError naming the variable."""
    fake.script([{"assistant": {"text": "Not logged in · Please run /login"}},
                 {"result": {"subtype": "success", "is_error": True, "result": "Not logged in · Please run /login",
                             "terminal_reason": "api_error"}}], exit_code=1)
    with pytest.raises(BackendError, match="ANTHROPIC_API_KEY") as info:
        run(backend(fake), request(fake, worktree))
    assert "\n" not in str(info.value)


def test_rejected_key_retries_stop_at_once(fake: FakeCli, worktree: Path) -> None:
    """An api_retry for authentication_failed ends the run now with the credentials error, group killed."""
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "retry_delay_ms": 500,
             "error_status": 401, "error": "authentication_failed", "session_id": "s", "uuid": "u"}
    fake.script([{"raw": retry}, {"hang": True}], spawn_child=True)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"rejected.*set ANTHROPIC_API_KEY"):
        run(backend(fake), request(fake, worktree))
    assert time.monotonic() - started < 5
    assert group_gone(fake.calls()[0]["pgid"])


def test_rate_limit_retries_are_warnings_not_failures(fake: FakeCli, worktree: Path) -> None:
    """api_retry for a 429 is reported as agent.warning and the run carries on to its result."""
    retry = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "retry_delay_ms": 5,
             "error_status": 429, "error": "rate_limit", "session_id": "s", "uuid": "u"}
    fake.script([{"raw": retry}, {"assistant": {"text": "x", "usage": U1}}, {"result": {}}])
    kinds: list[str] = []
    res = run(backend(fake), request(fake, worktree), on_event=lambda k, p: kinds.append(k))
    assert res.status == "ok" and "agent.warning" in kinds


def test_nonzero_exit_without_result_fails_closed(fake: FakeCli, worktree: Path) -> None:
    """No result and exit 3: status error, the stderr line in the error, the reservation charged."""
    fake.script([{"assistant": {"text": "x", "usage": U1}}, {"stderr": "boom: segfault in tool"}, {"exit": 3}])
    res = run(backend(fake), request(fake, worktree, token_limit=9000))
    assert res.status == "error"
    assert res.usage.total == 9000 and res.usage.cache_read == 500  # known parts kept, rest booked as input
    assert "code 3" in res.error and "boom: segfault in tool" in res.error


def test_garbage_lines_are_skipped_when_a_result_follows(fake: FakeCli, worktree: Path) -> None:
    """Non-JSON lines in the stream are skipped; the run still succeeds with exact usage."""
    fake.script([{"garbage": "Warning: something odd"}, {"garbage": "{not json"}, {"raw": [1, 2]},
                 {"assistant": {"text": "x", "usage": U1}}, {"result": {}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.status == "ok" and res.usage.total == 2000 and res.error is None


def test_only_garbage_is_a_clear_error(fake: FakeCli, worktree: Path) -> None:
    """A stream of garbage with no result reports how many lines could not be parsed."""
    fake.script([{"garbage": "<html>502 Bad Gateway</html>", "repeat": 3}], no_init=True, exit_code=1)
    res = run(backend(fake), request(fake, worktree, token_limit=5000))
    assert res.status == "error" and res.usage.total == 5000
    assert "3 unparseable output line(s)" in res.error


# --------------------------------------------------------------------------- hard limits


def test_runaway_stops_within_one_event_of_its_reservation(fake: FakeCli, worktree: Path) -> None:
    """A run streaming 1,000-token messages forever is killed before the next message would pass 5,500."""
    step = {"input_tokens": 400, "output_tokens": 100, "cache_read_input_tokens": 500}
    fake.script([{"assistant": {"text": "more", "usage": step}, "repeat": 10_000}], interval=0.01,
                spawn_child=True)
    res = run(backend(fake), request(fake, worktree, token_limit=5500))
    assert (res.status, res.stop_reason) == ("halted", "budget")
    assert 5500 - 1000 < res.usage.total <= 5500
    call = fake.calls()[0]
    assert group_gone(call["pgid"]) and all(process_gone(p) for p in fake.child_pids())


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_timeout_kills_the_whole_process_group(fake: FakeCli, worktree: Path, ignore_sigterm: bool) -> None:
    """A hung CLI (and the child it spawned) is killed at the deadline, SIGKILL if SIGTERM is ignored."""
    fake.script([{"assistant": {"text": "x", "usage": U1}}, {"hang": True}], spawn_child=True,
                ignore_sigterm=ignore_sigterm)
    started = time.monotonic()
    res = run(backend(fake), request(fake, worktree, timeout_s=1.0, token_limit=7000))
    assert time.monotonic() - started < 1.0 + 2.0 + 1.5  # deadline + SIGTERM grace + slack
    assert (res.status, res.stop_reason) == ("halted", "timeout")
    assert res.usage.total == 7000  # the in-flight call's usage is unknown: fail closed
    call = fake.calls()[0]
    assert group_gone(call["pgid"])
    assert fake.child_pids() and all(process_gone(p) for p in fake.child_pids())


def test_stop_check_kills_a_silent_run_promptly(fake: FakeCli, worktree: Path) -> None:
    """stop() is polled while the CLI prints nothing; its reason becomes the stop_reason."""
    fake.script([{"hang": True}], spawn_child=True)
    flag: dict[str, float] = {}

    def stop() -> str | None:
        # count from the moment the fake CLI has recorded its start (a loaded machine can take
        # longer than the grace period just to start the interpreter)
        if not fake.calls():
            return None
        flag.setdefault("first", time.monotonic())
        return "kill" if time.monotonic() - flag["first"] > 0.5 else None

    res = run(backend(fake), request(fake, worktree, timeout_s=30), stop=stop)
    assert (res.status, res.stop_reason) == ("halted", "kill")
    assert time.monotonic() - flag["first"] < 4.0  # stopped within the poll interval + kill grace
    assert group_gone(fake.calls()[0]["pgid"])


def test_cancelling_the_run_leaves_no_process(fake: FakeCli, worktree: Path) -> None:
    """If the engine cancels the coroutine (shutdown), the CLI's process group is killed anyway."""
    fake.script([{"hang": True}], spawn_child=True)

    async def main() -> None:
        task = asyncio.ensure_future(backend(fake).run(request(fake, worktree)))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if fake.child_pids():
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert group_gone(fake.calls()[0]["pgid"]) and all(process_gone(p) for p in fake.child_pids())


# invariant: fed any positive increments, the meter trips before the total passes limit + last increment,
# and never trips while the total plus the last increment still fits
@given(limit=st.integers(1, 10**6), increments=st.lists(st.integers(1, 10**5), min_size=1, max_size=60))
def test_usage_meter_trips_within_one_increment(limit: int, increments: list[int]) -> None:
    """The meter stops a run no later than the event that reaches the limit, never one event too early."""
    meter = UsageMeter(limit)
    for i, inc in enumerate(increments):
        meter.observe(f"m{i}", Usage(input=inc))
        if meter.over():
            assert meter.total >= limit or meter.total + inc > limit
            return
        assert meter.total < limit
    assert meter.total < limit


# --------------------------------------------------------------------------- transcript, files


def test_transcript_is_written_and_redacted(fake: FakeCli, worktree: Path, tmp_path: Path) -> None:
    """The raw stream lands in <dir>/<role>-<timestamp>.jsonl with the API key redacted."""
    fake.script([{"assistant": {"text": f"the key is {KEY}", "usage": U1}}, {"result": {}}])
    res = run(backend(fake), request(fake, worktree, transcript_dir=str(tmp_path / ".loop-runtime" / "t")))
    path = Path(res.transcript)
    assert path.parent == tmp_path / ".loop-runtime" / "t" and path.name.startswith("implementer-")
    text = path.read_text()
    assert KEY not in text and "[REDACTED]" in text
    assert [json.loads(line)["type"] for line in text.splitlines()] == ["system", "assistant", "result"]
    assert not list(path.parent.glob("*.part"))


def test_files_changed_lists_successful_edits_inside_the_worktree(fake: FakeCli, worktree: Path) -> None:
    """Write/Edit tool calls that succeeded inside the worktree are reported; denied or outside ones are not."""
    fake.script([
        {"assistant": {"tool_use": {"name": "Write", "input": {"file_path": str(worktree / "src/a.py")}}}},
        {"tool_result": {"content": "ok"}},
        {"assistant": {"tool_use": {"name": "Edit", "input": {"file_path": "b.py"}}}},
        {"tool_result": {"content": "denied", "is_error": True}},
        {"assistant": {"tool_use": {"name": "Write", "input": {"file_path": "/etc/passwd"}}}},
        {"tool_result": {"content": "ok"}},
        {"result": {}}])
    res = run(backend(fake), request(fake, worktree))
    assert res.files_changed == ("src/a.py",)


# --------------------------------------------------------------------------- setup errors


def test_missing_binary_names_what_to_install() -> None:
    """An explicit binary that does not exist is a one-line error naming the install command."""
    with pytest.raises(BackendError, match=r"npm i -g @anthropic-ai/claude-code"):
        ClaudeCliBackend(binary="/nonexistent/claude")


def test_falls_back_to_the_cli_bundled_in_the_sdk_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no claude on PATH the claude-agent-sdk wheel's bundled CLI is used."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_claude().endswith(os.path.join("_bundled", "claude"))


def test_missing_credentials_name_the_variable(fake: FakeCli, worktree: Path) -> None:
    """No key variable and no login under HOME: a one-line error before anything runs."""
    fake.script([{"result": {}}])
    bare = ClaudeCliBackend(binary=fake.binary, env={})
    with pytest.raises(BackendError, match="set ANTHROPIC_API_KEY"):
        run(bare, request(fake, worktree))
    assert fake.calls() == []
    (fake.home / ".claude").mkdir()
    (fake.home / ".claude" / ".credentials.json").write_text("{}")
    assert run(bare, request(fake, worktree)).status == "ok"


def test_missing_worktree_is_a_backend_error(fake: FakeCli, tmp_path: Path) -> None:
    """A working directory that does not exist is reported, not a FileNotFoundError traceback."""
    with pytest.raises(BackendError, match="working directory not found"):
        run(backend(fake), request(fake, tmp_path / "nope"))


def test_make_backend_builds_a_claude_backend(fake: FakeCli) -> None:
    """The factory returns a ClaudeCliBackend that satisfies the AgentBackend port."""
    b = make_backend("claude", binary=fake.binary, model="opus", env={"ANTHROPIC_API_KEY": KEY},
                     base_url="ignored")
    assert isinstance(b, ClaudeCliBackend) and isinstance(b, AgentBackend)
    assert (b.name, b.model) == ("claude", "opus")


# --------------------------------------------------------------------------- shared runner pieces


def test_redact_removes_exact_values_and_key_shapes() -> None:
    """Known secret values go exactly; key-shaped strings go by pattern, also in the regex fallback."""
    text = f"value=hunter2-long-pass and {KEY} and Authorization: Bearer abcdefghijklmnopqrstuvwxyz"
    out = redact(text, ["hunter2-long-pass"])
    assert "hunter2-long-pass" not in out and KEY not in out and "abcdefghijklmnopqrstuvwxyz" not in out
    other = redact(f"{KEY} token=abcdefgh12345678 ghp_{'a' * 30}")
    assert KEY not in other and "abcdefgh12345678" not in other and "a" * 30 not in other
    assert redact("plain words stay") == "plain words stay"


def test_empty_request_env_passes_only_the_base_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no scrubbed env from the engine, only PATH/HOME-like variables of ours go to the child."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    env = child_env({}, {"ANTHROPIC_API_KEY": KEY})
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["ANTHROPIC_API_KEY"] == KEY
    assert set(env) <= {*BASE_ENV_KEYS, "ANTHROPIC_API_KEY"} and "PATH" in env
