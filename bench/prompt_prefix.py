"""Prompts that cache: the identical-prefix share of the runtime's prompt across two ticks.

Two real ticks (mock backend, real files, real discovery) of one unchanged project in a temp
git repo, where between the ticks only the discovery output changes (a new commit with a
TODO) — and, as in any real run, the state file the first tick wrote. For the triage
prompt (system + user, as the CLIs send them) it prints the byte share of tick 2's prompt
that is an identical prefix of tick 1's (target ≥ 80%).

Then both prompts go, as Anthropic Messages calls, through the metering proxy to a local
stand-in that behaves like a provider prompt cache (it reports as ``cache_read_input_tokens``
the longest prefix already seen, at ~4 bytes a token, in 64-token blocks), and the proxy's
ledger gives the cached share of tick 2's input tokens. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
BLOCK = 64  # tokens per cache block in the stand-in


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=b@x", "-c", "user.name=b", *args], cwd=root, check=True,
                   capture_output=True)


def make_project(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("# bench project\n\nA small service with a CLI.\n")
    (root / "AGENTS.md").write_text("# Agents\n\n" + "".join(
        f"- Rule {i}: keep changes small, tested and reversible; never touch deployment config.\n"
        for i in range(40)))
    (root / "loop-constraints.md").write_text("# Constraints\n\n" + "".join(
        f"- Constraint {i}: no network calls in tests; no new dependencies without review.\n" for i in range(25)))
    skill = root / ".claude" / "skills" / "issue-triage"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("# Issue triage\n\n" + "".join(
        f"{i}. Read the issue, find the owning module, label it, and propose the smallest next step.\n"
        for i in range(60)))
    if (FIXTURES / "LOOP.md").is_file():
        (root / "LOOP.md").write_text((FIXTURES / "LOOP.md").read_text())
    src = root / "src"
    src.mkdir()
    for i in range(10):
        (src / f"mod{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")


def prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def two_ticks(root: Path) -> list[Any]:
    from loop_runtime.app import runner as runner_mod
    from loop_runtime.app.runner import LoopRunner, RunOptions
    from loop_runtime.app.runtime import load_project

    backends: list[Any] = []
    real_make = runner_mod.make_backend

    def recording(*args: Any, **kw: Any) -> Any:
        backend = real_make(*args, **kw)
        backends.append(backend)
        return backend

    runner_mod.make_backend = recording
    scenario = root.parent / "scenario.yaml"
    scenario.write_text("triage: {decision: report, tokens: 100, summary: bench, items: [{id: B-1, title: b}]}\n")
    project = load_project(root)
    plan = project.plan("issue-triage", "L1")
    runner = LoopRunner(project, plan, RunOptions(scenario=str(scenario), force=True))
    try:
        asyncio.run(runner.tick())
        (root / "src" / "mod3.py").write_text("def f3():\n    # TODO: handle the empty input case\n    return 3\n")
        git(root, "commit", "-qam", "mod3: note the empty input case")
        asyncio.run(runner.tick())
    finally:
        runner.store.close()
        runner_mod.make_backend = real_make
    return [call for b in backends for call in getattr(b, "calls", []) if call.role == "triage"]


class CachingStandIn:
    """An Anthropic Messages stand-in whose usage behaves like a prefix cache."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                text = json.dumps([body.get("system"), body.get("messages")], ensure_ascii=False)
                best = max((prefix_len(text, old) for old in stand_in.seen), default=0)
                stand_in.seen.append(text)
                total = len(text.encode()) // 4
                cached = min(total, (len(text[:best].encode()) // 4) // BLOCK * BLOCK)
                usage = {"input_tokens": total - cached, "cache_read_input_tokens": cached,
                         "cache_creation_input_tokens": 0, "output_tokens": 10}
                events = [("message_start", {"type": "message_start", "message": {
                              "id": "m", "type": "message", "role": "assistant", "content": [], "usage": usage}}),
                          ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": usage}),
                          ("message_stop", {"type": "message_stop"})]
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


async def through_proxy(prompts: list[tuple[str, str]]) -> list[Any]:
    import httpx

    from loop_runtime.adapters.metering_proxy import MeteringProxy

    stand_in = CachingStandIn()
    try:
        async with MeteringProxy(stand_in.url, 10**12) as proxy:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                for system, user in prompts:
                    r = await client.post(f"{proxy.base_url}/v1/messages", json={
                        "model": "m", "stream": True, "system": system,
                        "messages": [{"role": "user", "content": user}]})
                    r.raise_for_status()
            return [c.record.usage for c in proxy.calls]
    finally:
        stand_in.httpd.shutdown()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        make_project(root)
        calls = two_ticks(root)
    if len(calls) < 2:
        print(f"expected two triage calls, got {len(calls)}")
        sys.exit(1)
    first, second = calls[0], calls[1]
    a = first.system_prompt + "\n\n" + first.prompt
    b = second.system_prompt + "\n\n" + second.prompt
    same = prefix_len(a, b)
    print(f"triage prompt: tick 1 {len(a.encode()):,} bytes, tick 2 {len(b.encode()):,} bytes; "
          f"identical prefix {len(b[:same].encode()):,} bytes = {len(b[:same].encode()) / len(b.encode()):.1%} "
          f"of tick 2 (target ≥ 80%)")
    print(f"system prompt identical across ticks: {first.system_prompt == second.system_prompt}")
    usages = asyncio.run(through_proxy([(first.system_prompt, first.prompt), (second.system_prompt, second.prompt)]))
    tick2 = usages[1]
    inputs = tick2.input + tick2.cache_read + tick2.cache_write
    print(f"through the proxy (stand-in prefix cache, {BLOCK}-token blocks): tick 2 input {inputs:,} tokens, "
          f"cache read {tick2.cache_read:,} = {tick2.cache_read / max(1, inputs):.1%} cached")
    if os.environ.get("PROMPT_PREFIX_SHOW"):
        print("--- first differing text of tick 2 ---")
        print(b[same:same + 400])


if __name__ == "__main__":
    main()
