"""OpenCode backend: ``opencode run --pure --format json --dir <cwd> -m loop/<model> <prompt>``.

Checked with the real ``opencode-ai`` 1.18.33 against a local OpenAI Chat Completions
stand-in (tests/test_realcli_new_backends.py):

- a private config (``OPENCODE_CONFIG``) declares one provider, ``loop``, on the bundled
  ``@ai-sdk/openai-compatible`` package with ``options.baseURL`` = the metering proxy and the
  key read from the environment (``{env:VAR}``, never written to disk); models are not
  fetched, auto-update, LSP downloads and sharing are off, and ``HOME``/XDG folders are private;
- opencode makes calls of its own (a title-generation call before the first step): the proxy
  meters them too, while its ``step_finish`` events count only the agent's steps — so the
  proxy's total can exceed the CLI's and is the bill;
- permissions: READ_ONLY runs the ``plan`` agent with edits, shell and web fetches denied;
  EDIT_WORKTREE runs ``build`` with edits allowed, the shell and web fetches denied and any path
  outside the project (``external_directory``) denied; max turns via ``agent.<name>.steps``;
- events: ``step_start``, ``text``, ``tool_use``, ``step_finish`` (per call
  ``tokens{input, output, reasoning, cache{read, write}}``, input without the cached part), ``error``;
- with no server it retries for about 64 s and exits 1; the proxy reports the dead upstream at
  the first refused connection and the run ends there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...ports import AgentRequest, EventSink, Permission, Usage
from ..metering_proxy import MeteringProxy
from .jsonl_cli import CliState, JsonLinesCliBackend, Prepared
from .process import emit, inside_root, int_field, summarize

PROVIDER = "loop"
EDIT_TOOLS = {"write": "filePath", "edit": "filePath", "patch": "filePath", "multiedit": "filePath"}


def step_usage(tokens: Any) -> Usage:
    cache = tokens.get("cache") if isinstance(tokens, Mapping) else None
    return Usage(input=int_field(tokens, "input"),
                 output=int_field(tokens, "output") + int_field(tokens, "reasoning"),
                 cache_read=int_field(cache, "read"), cache_write=int_field(cache, "write"))


def config(request: AgentRequest, model: str, base_url: str, key_var: str) -> dict[str, Any]:
    edit = request.permission is Permission.EDIT_WORKTREE
    permission = {"edit": "allow" if edit else "deny", "bash": "deny", "webfetch": "deny",
                  "external_directory": "deny"}
    steps = max(1, request.max_turns)
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": permission,
        "agent": {"build": {"steps": steps, "permission": permission},
                  "plan": {"steps": steps, "permission": {**permission, "edit": "deny"}}},
        "provider": {PROVIDER: {"npm": "@ai-sdk/openai-compatible", "name": "loop-runtime (metered)",
                                "options": {"baseURL": base_url, "apiKey": f"{{env:{key_var}}}"},
                                "models": {model: {"name": model}}}},
        "mcp": {name: {"type": "local", "command": [spec.get("command"), *spec.get("args", [])],
                       "environment": dict(spec.get("env", {}))}
                for name, spec in request.mcp_servers.items() if spec.get("command")},
    }


@dataclass
class _State(CliState):
    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        part = event.get("part") if isinstance(event.get("part"), Mapping) else {}
        if kind == "text" and isinstance(part.get("text"), str):
            self.texts.append(part["text"])
            emit(self.on_event, "agent.text", {"text": part["text"]})
        elif kind == "tool_use":
            state = part.get("state") if isinstance(part.get("state"), Mapping) else {}
            args = state.get("input") if isinstance(state.get("input"), Mapping) else {}
            emit(self.on_event, "agent.tool", {"name": part.get("tool"), "input": summarize(args)})
            key = EDIT_TOOLS.get(str(part.get("tool")))
            if key and state.get("status") == "completed" and isinstance(args.get(key), str):
                rel = inside_root(self.request.cwd, args[key])
                if rel is not None:
                    self.changed[rel] = None
        elif kind == "step_finish":
            self.turns += 1
            self.reported = (self.reported or Usage()) + step_usage(part.get("tokens"))
            self.finished = part.get("reason") in ("stop", "end_turn", "length")
        elif kind == "error":
            error = event.get("error")
            data = error.get("data") if isinstance(error, Mapping) else None
            message = (data.get("message") if isinstance(data, Mapping) else None) or \
                (error.get("name") if isinstance(error, Mapping) else None) or str(error)
            self.errors.append(str(message))
            emit(self.on_event, "agent.warning", {"message": self.errors[-1]})
        return None


class OpenCodeCliBackend(JsonLinesCliBackend):
    """Runs one agent role through ``opencode run``, metered by the proxy."""

    name = "opencode"
    binary_name = "opencode"
    install_hint = "install it with npm i -g opencode-ai"
    key_vars = ("OPENAI_API_KEY",)
    base_url_var = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    default_model = "gpt-5"
    # At start it installs @opencode-ai/plugin into its config folder from registry.npmjs.org, in the
    # background (a failure is only its warning), and fetches its default plugins: inside the sandbox each
    # would be a refused connection, a reported violation. npm's own offline switch stops the install
    # before any request. (Bun honours srt's HTTP(S)_PROXY: the metering proxy itself is reachable.)
    sandboxed_env = {"OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "npm_config_offline": "true"}

    def prepare(self, request: AgentRequest, proxy: MeteringProxy, private: Path) -> Prepared:
        model = request.model or self.model or self.default_model
        path = private / "opencode.json"
        path.write_text(json.dumps(config(request, model, proxy.base_url, self.key_var)), encoding="utf-8")
        agent = "build" if request.permission is Permission.EDIT_WORKTREE else "plan"
        prompt = "\n\n".join(p for p in (request.system_prompt, request.prompt) if p)
        argv = [self.binary, "run", "--pure", "--format", "json", "--dir", request.cwd, "--agent", agent,
                "-m", f"{PROVIDER}/{model}", "--", prompt]
        home = private / "home"
        return Prepared(argv, {
            self.key_var: self.api_key or "", "OPENCODE_CONFIG": str(path),
            "OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_SHARE": "1",
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local" / "state")})

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> CliState:
        return _State(request, on_event)


__all__ = ["OpenCodeCliBackend", "step_usage"]
