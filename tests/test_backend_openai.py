"""OpenAIBackend against the local fake OpenAI-compatible server: tool loop, confinement, usage, retries."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from loop_runtime.adapters.agents import OpenAIBackend, make_backend
from loop_runtime.errors import BackendError, ConfigError
from loop_runtime.ports import AgentBackend, AgentRequest, Permission, Usage
from tests.fakes.model_server import ModelServer
from tests.fakes.sandbox import PassthroughSandbox

Turns = list[dict[str, Any]]  # a model-server script

KEY = "sk-proj-local-test-0123456789abcdef"


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_use": {"name": name, "input": args}, "usage": usage(100, 10)}


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "app.py").write_text("VALUE = 1\n")
    return wt.resolve()


def backend(server: ModelServer, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend(base_url=f"{server.base_url}/v1", model="local-model", api_key=KEY, **kw)


def request(cwd: Path, **kw: Any) -> AgentRequest:
    base: dict[str, Any] = {"role": "implementer", "prompt": "change VALUE to 2", "cwd": str(cwd),
                            "permission": Permission.EDIT_WORKTREE, "token_limit": 100_000, "timeout_s": 20.0,
                            "env": {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}}
    base.update(kw)
    return AgentRequest(**base)


def run(b: OpenAIBackend, req: AgentRequest, **kw: Any) -> Any:
    return asyncio.run(b.run(req, **kw))


def tool_messages(server: ModelServer) -> list[str]:
    """The tool results the model saw, in order (from the last request's history)."""
    last = server.bodies("/v1/chat/completions")[-1]
    return [m["content"] for m in last["messages"] if m["role"] == "tool"]


# --------------------------------------------------------------------------- usage and the loop


def test_text_answer_usage_is_exact(worktree: Path) -> None:
    """prompt 1,200 (200 cached) + completion 50 → Usage(input 1000, output 50, cache_read 200)."""
    with ModelServer([{"text": "nothing to do", "usage": usage(1200, 50, cached=200)}]) as server:
        res = run(backend(server), request(worktree, system_prompt="be brief"))
        (body,) = server.bodies("/v1/chat/completions")
        headers = server.requests[0]["headers"]
    assert res.status == "ok" and res.text == "nothing to do" and res.turns == 1
    assert res.usage == Usage(input=1000, output=50, cache_read=200)
    assert body["model"] == "local-model" and body["messages"][1] == {"role": "user", "content": "change VALUE to 2"}
    assert "be brief" in body["messages"][0]["content"]
    assert headers.get("Authorization") == f"Bearer {KEY}"


def test_tool_loop_reads_writes_and_edits_inside_the_worktree(worktree: Path) -> None:
    """read → write → edit → answer: files change on disk and usage is the sum of all four responses."""
    turns: Turns = [call("read_file", path="app.py"), call("write_file", path="pkg/new.py", content="X = 1\n"),
             call("edit_file", path="app.py", old="VALUE = 1", new="VALUE = 2"),
             {"text": "done", "usage": usage(500, 20, cached=100)}]
    events: list[str] = []
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree), on_event=lambda k, p: events.append(k))
        seen = tool_messages(server)
    assert res.status == "ok" and res.text == "done" and res.turns == 4
    assert (worktree / "app.py").read_text() == "VALUE = 2\n"
    assert (worktree / "pkg" / "new.py").read_text() == "X = 1\n"
    assert res.usage == Usage(input=300 + 400, output=30 + 20, cache_read=100)
    assert seen == ["VALUE = 1\n", "wrote 6 bytes to pkg/new.py", "edited app.py"]
    assert res.files_changed == ("pkg/new.py", "app.py")
    assert events.count("agent.tool") == 3 and events[0] == "agent.start" and events[-1] == "agent.end"


def test_read_only_offers_no_write_tools_and_refuses_them(worktree: Path) -> None:
    """READ_ONLY exposes read/list/search only; a write_file call anyway is refused, file unchanged."""
    turns: Turns = [call("write_file", path="app.py", content="pwned"), call("run_command", command="touch x"),
             {"text": "ok", "usage": usage(10, 1)}]
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree, permission=Permission.READ_ONLY))
        first = server.bodies("/v1/chat/completions")[0]
        seen = tool_messages(server)
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["list_files", "read_file", "search"]
    assert all(m.startswith("error: tool") for m in seen)
    assert (worktree / "app.py").read_text() == "VALUE = 1\n" and not (worktree / "x").exists()
    assert res.status == "ok" and res.files_changed == ()


def test_escaping_paths_come_back_as_tool_errors(worktree: Path, tmp_path: Path) -> None:
    """`..`, absolute paths and an outward symlink are refused as tool results; the run continues."""
    (tmp_path / "outside").mkdir()
    (worktree / "out").symlink_to(tmp_path / "outside")
    turns: Turns = [call("write_file", path="../evil.txt", content="x"),
                    call("write_file", path="/tmp/evil.txt", content="x"),
             call("write_file", path="out/evil.txt", content="x"), call("read_file", path="../../etc/passwd"),
             {"text": "gave up", "usage": usage(10, 1)}]
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree))
        seen = tool_messages(server)
    assert res.status == "ok" and len(seen) == 4 and all(m.startswith("error:") for m in seen)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "outside" / "evil.txt").exists()


def test_bad_tool_arguments_are_reported_to_the_model(worktree: Path) -> None:
    """Invalid JSON arguments, wrong types and unknown tools become tool errors, never exceptions."""
    turns: Turns = [{"tool_calls": [{"name": "read_file", "raw_arguments": "{not json"},
                             {"name": "read_file", "input": {"path": 7}},
                             {"name": "rm_rf", "input": {}}], "usage": usage(10, 1)},
             {"text": "ok", "usage": usage(10, 1)}]
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree))
        seen = tool_messages(server)
    assert res.status == "ok" and len(seen) == 3
    assert "not a valid JSON object" in seen[0] and "must be a string" in seen[1] and "not available" in seen[2]


def test_run_command_runs_in_the_worktree_with_the_scrubbed_env(worktree: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """run_command's cwd is the worktree; neither our API key nor our environment reaches it."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("LEAKY_SECRET", "nope")
    turns: Turns = [call("run_command", command="pwd; env; echo to-stderr >&2; exit 3"),
                    {"text": "ok", "usage": usage(1, 1)}]
    with ModelServer(turns) as server:
        run(backend(server, sandbox=PassthroughSandbox()), request(worktree))
        (out,) = tool_messages(server)
    assert out.startswith("exit code 3\n") and str(worktree) in out and "to-stderr" in out
    assert KEY not in out and "LEAKY_SECRET" not in out


def test_run_command_is_offered_only_inside_a_sandbox(worktree: Path) -> None:
    """No sandbox: run_command is neither offered nor run (a shell cannot be confined by path checks)."""
    turns: Turns = [call("run_command", command="touch made-by-shell"), {"text": "ok", "usage": usage(1, 1)}]
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree))
        offered = {t["function"]["name"] for t in server.bodies("/v1/chat/completions")[0]["tools"]}
        (out,) = tool_messages(server)
    assert "run_command" not in offered and "not available" in out
    assert not (worktree / "made-by-shell").exists() and res.status == "ok"
    with ModelServer([call("run_command", command="true"), {"text": "ok", "usage": usage(1, 1)}]) as server:
        box = PassthroughSandbox(denials=("git push origin main: denied",))
        res = run(backend(server, sandbox=box), request(worktree))
        offered = {t["function"]["name"] for t in server.bodies("/v1/chat/completions")[0]["tools"]}
    assert "run_command" in offered and box.scopes[0].writable and box.scopes[0].cwd == str(worktree)
    assert res.sandbox_denials == ("git push origin main: denied",)


def test_run_command_timeout_is_reported(worktree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command past its time limit is killed and the model is told it timed out."""
    monkeypatch.setattr("loop_runtime.adapters.agents.openai_api.COMMAND_TIMEOUT_S", 0.5)
    turns: Turns = [call("run_command", command="sleep 30"), {"text": "ok", "usage": usage(1, 1)}]
    started = time.monotonic()
    with ModelServer(turns) as server:
        run(backend(server, sandbox=PassthroughSandbox()), request(worktree))
        (out,) = tool_messages(server)
    assert out.startswith("timed out") and time.monotonic() - started < 10


# --------------------------------------------------------------------------- limits


def test_max_turns_ends_a_model_that_never_stops(worktree: Path) -> None:
    """A model calling tools forever stops at max_turns with an error, usage still exact."""
    with ModelServer([call("list_files")] * 10) as server:
        res = run(backend(server), request(worktree, max_turns=3))
    assert res.status == "error" and "maximum number of turns (3)" in res.error
    assert res.turns == 3 and res.usage.total == 330


def test_budget_halts_before_a_call_that_would_pass_the_reservation(worktree: Path) -> None:
    """After a 600-token response, another of that size would pass 1,000: halted, usage exact."""
    turns: Turns = [{"tool_use": {"name": "list_files", "input": {}}, "usage": usage(500, 100)}] * 5
    with ModelServer(turns) as server:
        res = run(backend(server), request(worktree, token_limit=1000))
        assert len(server.bodies("/v1/chat/completions")) == 1
    assert (res.status, res.stop_reason) == ("halted", "budget") and res.usage.total == 600


def test_stop_check_halts_an_in_flight_request_and_fails_closed(worktree: Path) -> None:
    """A kill while the server is still thinking halts within a poll; the unknown spend is charged."""
    with ModelServer([{"text": "late", "delay": 5, "usage": usage(1, 1)}]) as server:
        started = time.monotonic()
        res = run(backend(server), request(worktree, token_limit=4000),
                  stop=lambda: "kill" if time.monotonic() - started > 0.3 else None)
    assert (res.status, res.stop_reason) == ("halted", "kill")
    assert time.monotonic() - started < 3 and res.usage.total == 4000


def test_timeout_halts_an_in_flight_request(worktree: Path) -> None:
    """The request deadline applies to a slow server too."""
    with ModelServer([{"text": "late", "delay": 5}]) as server:
        started = time.monotonic()
        res = run(backend(server), request(worktree, timeout_s=0.6, token_limit=50))
    assert (res.status, res.stop_reason, res.usage.total) == ("halted", "timeout", 50)
    assert time.monotonic() - started < 3


def test_missing_usage_fails_closed(worktree: Path) -> None:
    """A server that reports no usage cannot be billed exactly: the reservation is charged."""
    with ModelServer([{"text": "hi", "no_usage": True}]) as server:
        res = run(backend(server), request(worktree, token_limit=2500))
    assert res.status == "ok" and res.usage.total == 2500 and "no usage" in res.error


# --------------------------------------------------------------------------- retries and HTTP errors


def test_rate_limits_and_server_errors_are_retried(worktree: Path) -> None:
    """429 (Retry-After 0) and 500 are retried with backoff; the third attempt's usage is billed."""
    turns: Turns = [{"status": 429, "retry_after": 0}, {"status": 500}, {"text": "ok", "usage": usage(10, 2)}]
    with ModelServer(turns) as server:
        res = run(backend(server, max_retries=4), request(worktree))
        assert len(server.bodies("/v1/chat/completions")) == 3
    assert res.status == "ok" and res.usage.total == 12


def test_persistent_server_errors_give_up_after_max_retries(worktree: Path) -> None:
    """max_retries=2 → three attempts, then status error naming the HTTP status; nothing billed."""
    with ModelServer([{"status": 503, "repeat": 10}]) as server:
        res = run(backend(server, max_retries=2), request(worktree))
        assert len(server.bodies("/v1/chat/completions")) == 3
    assert res.status == "error" and "HTTP 503" in res.error and res.usage.total == 0


def test_retries_stop_at_the_deadline(worktree: Path) -> None:
    """A long Retry-After is not waited out past the request's deadline."""
    with ModelServer([{"status": 429, "retry_after": 30, "repeat": 5}]) as server:
        started = time.monotonic()
        res = run(backend(server, max_retries=4), request(worktree, timeout_s=1.0))
    assert res.status in ("error", "halted") and time.monotonic() - started < 3


def test_rejected_key_names_the_variable(worktree: Path) -> None:
    """HTTP 401 is an error telling the user which variable to set."""
    with ModelServer([{"status": 401}]) as server:
        res = run(backend(server), request(worktree))
    assert res.status == "error" and "OPENAI_API_KEY" in res.error


def test_unreachable_server_is_a_clear_error(worktree: Path) -> None:
    """Connection refused is retried, then reported as 'cannot reach <url>'."""
    with ModelServer() as server:
        url = f"{server.base_url}/v1"
    res = run(OpenAIBackend(base_url=url, model="m", max_retries=1), request(worktree))
    assert res.status == "error" and "cannot reach" in res.error and res.usage.total == 0


def test_transcript_holds_requests_responses_and_tools_without_the_key(worktree: Path, tmp_path: Path) -> None:
    """The transcript records the exchange as JSON lines and never the API key."""
    turns: Turns = [call("run_command", command=f"echo {KEY}"), {"text": "done", "usage": usage(1, 1)}]
    with ModelServer(turns) as server:
        res = run(backend(server, sandbox=PassthroughSandbox()), request(worktree, transcript_dir=str(tmp_path / "tr")))
        (out,) = tool_messages(server)
    text = Path(res.transcript).read_text()
    kinds = [json.loads(line)["kind"] for line in text.splitlines()]
    assert kinds == ["request", "response", "tool", "request", "response"]
    assert KEY not in text and KEY not in out


# --------------------------------------------------------------------------- construction


def test_remote_server_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key for a non-local base URL: a one-line error naming the variables."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("LOOP_RUNTIME_OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match=r"set OPENAI_API_KEY \(or LOOP_RUNTIME_OPENAI_API_KEY\)"):
        OpenAIBackend(base_url="https://api.openai.com/v1", model="gpt-5")
    for local in ("http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8080/v1"):
        assert OpenAIBackend(base_url=local, model="llama").api_key is None


def test_make_backend_openai_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory builds the openai backend from config keys; bad names and a missing model are ConfigErrors."""
    b = make_backend("openai", model="qwen", base_url="http://127.0.0.1:1/v1", env={}, binary="ignored")
    assert isinstance(b, OpenAIBackend) and isinstance(b, AgentBackend)
    assert (b.name, b.base_url, b.model) == ("openai", "http://127.0.0.1:1/v1", "qwen")
    with pytest.raises(ConfigError, match="needs a model"):
        make_backend("openai", env={})
    with pytest.raises(ConfigError, match=r"backend invalid: 'gpt'.*valid: claude, codex, openai"):
        make_backend("gpt")
