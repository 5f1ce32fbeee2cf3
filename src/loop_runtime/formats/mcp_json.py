"""The project's ``.mcp.json`` (Claude Code's project MCP file): server name → definition.

loop-runtime never hands this file to an agent as is: ``loop-runtime.toml``'s ``[mcp]``
table names, per autonomy level, which of these servers an agent may see, and the
backend gets a generated config holding only those (see ``project_config``). So this
parser only needs the names and their definitions, validated enough that a typo is a
one-line error naming the file, the field and the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

FILE_NAME = ".mcp.json"
#: Claude Code's tool names are ``mcp__<server>__<tool>``: a server name is one plain word
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_mcp_json(text: str, *, file: str = FILE_NAME) -> Mapping[str, Mapping[str, Any]]:
    """``{"mcpServers": {name: {...}}}`` → ``{name: definition}`` (read-only)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(file, "json", None, message=f"JSON syntax error: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise ConfigError(file, "mcpServers", None, message="mcpServers must be an object of server definitions")
    servers: dict[str, Mapping[str, Any]] = {}
    for name, spec in data.get("mcpServers", {}).items():
        field = f"mcpServers.{name}"
        if not SERVER_NAME_RE.fullmatch(name):
            raise ConfigError(file, "mcpServers", name,
                              message=f"server name invalid: {name!r} (letters, digits, '-' and '_' only)")
        if not isinstance(spec, dict):
            raise ConfigError(file, field, spec, message=f"{field} must be an object")
        kind = spec.get("type", "stdio")
        if kind == "stdio" and not (isinstance(spec.get("command"), str) and spec["command"].strip()):
            raise ConfigError(file, f"{field}.command", spec.get("command"),
                              message=f"{field}.command must be a non-empty string")
        if kind in ("http", "sse") and not (isinstance(spec.get("url"), str) and spec["url"].strip()):
            raise ConfigError(file, f"{field}.url", spec.get("url"), message=f"{field}.url must be a non-empty string")
        if kind not in ("stdio", "http", "sse"):
            raise ConfigError(file, f"{field}.type", kind, valid=("stdio", "http", "sse"))
        servers[name] = MappingProxyType(dict(spec))
    return MappingProxyType(servers)
