"""A workflow that breaks determinism on purpose (reads a file): the sandbox must stop it."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="Careless")
class Careless:
    @workflow.run
    async def run(self) -> str:
        with open("/etc/hostname") as f:  # I/O in workflow code: not replay-safe
            return f.read()
