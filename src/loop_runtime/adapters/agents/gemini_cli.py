"""Gemini CLI backend: ``gemini --skip-trust -m <model> -o stream-json --approval-mode … -p <prompt>``.

Checked with the real ``@google/gemini-cli`` 0.61.0 against a local Gemini API stand-in
(tests/test_realcli_new_backends.py):

- the model calls go to ``GOOGLE_GEMINI_BASE_URL`` — here the metering proxy — as
  ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` with ``usageMetadata``;
- a private ``HOME`` whose ``.gemini/settings.json`` selects API-key auth, turns telemetry,
  auto-update and folder trust off, sets ``general.maxAttempts: 1`` (else a dead endpoint is
  retried for minutes) and ``model.maxSessionTurns`` (the request's max turns); ``-m`` is always
  passed (the "auto" model makes routing calls first);
- permissions: ``--approval-mode default`` at READ_ONLY (headless, tools needing approval —
  writes and the shell — are not offered), ``auto_edit`` at EDIT_WORKTREE (file edits, which
  gemini confines to its workspace, the cwd; the shell still needs approval, so it is not offered);
- events: ``init``, ``message`` (assistant text, ``delta`` pieces), ``tool_use``, ``tool_result``,
  ``error``, ``result`` with cumulative ``stats`` (``input_tokens`` includes ``cached``), the
  cross-check for the proxy's count;
- exit codes: 41 auth, 55 untrusted folder, and an HTTP error status cut to one byte (400 → 144).

There is no system-prompt flag that appends (``GEMINI_SYSTEM_MD`` replaces gemini's own), so
the role's system prompt leads the prompt text (stable part first, for caching).
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

EDIT_TOOLS = {"write_file": "file_path", "replace": "file_path"}
EXIT_CODES = {41: "authentication failed", 42: "bad input", 44: "sandbox error", 52: "bad configuration",
              53: "turn limit reached", 55: "folder not trusted"}


def gemini_usage(stats: Any) -> Usage:
    """Our usage from a ``result.stats`` (``cached`` is part of ``input_tokens``)."""
    inp = int_field(stats, "input_tokens")
    cached = int_field(stats, "cached")
    return Usage(input=max(0, inp - cached), output=int_field(stats, "output_tokens"), cache_read=cached)


def settings(request: AgentRequest) -> dict[str, Any]:
    return {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "telemetry": {"enabled": False},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True, "maxAttempts": 1},
        "model": {"maxSessionTurns": max(1, request.max_turns)},
        "mcpServers": {k: dict(v) for k, v in request.mcp_servers.items()},
    }


@dataclass
class _State(CliState):
    edits: dict[str, str] | None = None

    def handle(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind == "message" and event.get("role") == "assistant" and isinstance(event.get("content"), str):
            if event.get("delta") and self.texts:
                self.texts[-1] += event["content"]
            else:
                self.texts.append(event["content"])
            emit(self.on_event, "agent.text", {"text": event["content"]})
        elif kind == "tool_use":
            self.turns += 1
            params = event.get("parameters") if isinstance(event.get("parameters"), Mapping) else {}
            emit(self.on_event, "agent.tool", {"name": event.get("tool_name"), "input": summarize(params)})
            key = EDIT_TOOLS.get(str(event.get("tool_name")))
            if key and isinstance(params.get(key), str):
                self.edits = self.edits or {}
                self.edits[str(event.get("tool_id"))] = params[key]
        elif kind == "tool_result" and self.edits and event.get("status") == "success":
            path = self.edits.pop(str(event.get("tool_id")), None)
            rel = inside_root(self.request.cwd, path) if path else None
            if rel is not None:
                self.changed[rel] = None
        elif kind == "error":
            self.errors.append(str(event.get("message") or event.get("error") or "error"))
            emit(self.on_event, "agent.warning", {"message": self.errors[-1]})
        elif kind == "result":
            self.finished = event.get("status") == "success"
            if isinstance(event.get("stats"), Mapping):
                self.reported = gemini_usage(event["stats"])
            error = event.get("error")
            if isinstance(error, Mapping) and error.get("message"):
                self.errors.append(str(error["message"]))
        return None


class GeminiCliBackend(JsonLinesCliBackend):
    """Runs one agent role through the Gemini CLI, metered by the proxy."""

    name = "gemini"
    binary_name = "gemini"
    install_hint = "install it with npm i -g @google/gemini-cli"
    key_vars = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_url_var = "GOOGLE_GEMINI_BASE_URL"
    default_base_url = "https://generativelanguage.googleapis.com"
    default_model = "gemini-2.5-pro"

    def prepare(self, request: AgentRequest, proxy: MeteringProxy, private: Path) -> Prepared:
        folder = private / "home" / ".gemini"
        folder.mkdir(parents=True)
        (folder / "settings.json").write_text(json.dumps(settings(request)), encoding="utf-8")
        mode = "auto_edit" if request.permission is Permission.EDIT_WORKTREE else "default"
        prompt = "\n\n".join(p for p in (request.system_prompt, request.prompt) if p)
        argv = [self.binary, "--skip-trust", "-m", request.model or self.model or self.default_model,
                "-o", "stream-json", "--approval-mode", mode, "-p", prompt]
        return Prepared(argv, {"GEMINI_API_KEY": self.api_key or "", "GOOGLE_GEMINI_BASE_URL": proxy.base_url,
                               "GEMINI_CLI_NO_RELAUNCH": "true", "NO_COLOR": "1"})

    def new_state(self, request: AgentRequest, on_event: EventSink | None) -> CliState:
        return _State(request, on_event)

    def failure(self, state: CliState, outcome: Any, proxy: MeteringProxy) -> str | None:
        code = outcome.returncode
        if code not in (0, None):
            meaning = EXIT_CODES.get(code) or (f"HTTP error {code + 256}" if 128 <= code < 256 else None)
            return f"gemini exited with code {code}" + (f" ({meaning})" if meaning else "")
        return super().failure(state, outcome, proxy)


__all__ = ["GeminiCliBackend", "gemini_usage"]
