"""A tiny stdio MCP server on the official SDK, for agent tests: one tool, ``echo``.

``echo(text)`` answers ``echo: <text>`` and appends the text to the file named by the
``ECHO_MCP_LOG`` argument (argv[1]) when given, so a test can prove the tool really ran
(and did not run when the agent was not allowed to see the server).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo", log_level="WARNING")
LOG = Path(sys.argv[1]) if len(sys.argv) > 1 else None


@server.tool(description="Echo the text back (test tool).")
def echo(text: str) -> str:
    if LOG is not None:
        with LOG.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
    return f"echo: {text}"


if __name__ == "__main__":
    server.run("stdio")
