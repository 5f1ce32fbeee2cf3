"""Temporal payloads encrypted with the operator's key (``temporal/encryption.py``).

The per-port path puts what a tick reads and writes into Temporal's history — prompts, diffs and the
project's secret values. With ``LOOP_RUNTIME_TEMPORAL_KEY`` set, every client and worker seals each
payload with AES-256-GCM before the server sees it: the raw history (read without the key) holds none
of it, a payload changed on the way or sealed with another key is refused with one line, and the tick
itself runs exactly as before.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loop_runtime.errors import ConfigError
from tests.conftest import run_cli
from tests.support.temporal import arun, client_for, run_log_entries, show, wait_for
from tests.test_temporal import project, queue, temporal_server, workers  # noqa: F401 — fixtures

temporalio = pytest.importorskip("temporalio")

from temporalio.api.common.v1 import Payload  # noqa: E402

from loop_runtime.temporal.encryption import (  # noqa: E402
    ENCODING,
    KEY_ENV,
    KEY_FILE_ENV,
    DecryptError,
    EncryptionCodec,
    payload_key,
)

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()
SECRET = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def codec(key: str = KEY) -> EncryptionCodec:
    return EncryptionCodec(base64.b64decode(key))


def roundtrip(c: EncryptionCodec, payloads: list[Payload], d: EncryptionCodec | None = None) -> list[Payload]:
    sealed = asyncio.run(c.encode(payloads))
    return asyncio.run((d or c).decode(sealed))


@settings(max_examples=60)
@given(st.lists(st.tuples(st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=16), max_size=3),
                          st.binary(max_size=300)), max_size=4))
def test_any_payload_comes_back_as_it_was_and_is_never_sent_in_clear(items: list[tuple[dict, bytes]]) -> None:
    payloads = [Payload(metadata={k: v for k, v in md.items()}, data=data) for md, data in items]
    c = codec()
    sealed = asyncio.run(c.encode(payloads))
    for p, s in zip(payloads, sealed, strict=True):
        assert s.metadata["encoding"] == ENCODING and s.metadata["encryption-key-id"] == c.key_id.encode()
        if len(p.data) >= 8:
            assert p.data not in s.data  # the content never appears as is
    assert roundtrip(c, payloads) == payloads


def test_a_payload_changed_on_the_way_or_sealed_with_another_key_is_refused_in_one_line() -> None:
    c = codec()
    [sealed] = asyncio.run(c.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"' + SECRET.encode() + b'"')]))
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(DecryptError, match="integrity check"):
        asyncio.run(c.decode([flipped]))
    with pytest.raises(DecryptError, match="give every client and worker the same") as e:
        asyncio.run(codec(OTHER).decode([sealed]))
    assert "\n" not in str(e.value) and KEY not in str(e.value)
    forged = Payload(metadata={**dict(sealed.metadata), "encryption-key-id": codec(OTHER).key_id.encode()},
                     data=sealed.data)
    with pytest.raises(DecryptError):  # the key id is bound to the ciphertext: relabelling does not help
        asyncio.run(codec(OTHER).decode([forged]))


def test_payloads_written_before_encryption_was_turned_on_still_read() -> None:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    assert asyncio.run(codec().decode([plain])) == [plain]


def test_the_key_comes_from_the_variable_or_the_file_it_names_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    assert payload_key({}) is None
    assert payload_key({KEY_ENV: f"  {KEY}\n"}) == bytes(range(32))
    f = tmp_path / "key"
    f.write_text(KEY + "\n")
    assert payload_key({KEY_FILE_ENV: str(f)}) == bytes(range(32))
    for bad in ("short", base64.b64encode(b"x" * 16).decode(), "not base64 at all!!" * 3):
        with pytest.raises(ConfigError) as e:
            payload_key({KEY_ENV: bad})
        assert KEY_ENV in str(e.value) and "32 bytes" in str(e.value) and bad not in str(e.value)
    with pytest.raises(ConfigError, match=KEY_FILE_ENV):
        payload_key({KEY_FILE_ENV: str(tmp_path / "missing")})


def test_a_worker_with_a_malformed_key_refuses_to_start(tmp_path: Path) -> None:
    out = run_cli("worker", "--temporal", "127.0.0.1:1", "--work-dir", str(tmp_path / "w"),
                  env={KEY_ENV: "short"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert KEY_ENV in out.stderr and "32 bytes" in out.stderr


def _raw_history(addr: str, wid_prefix: str) -> tuple[list[Any], bytes]:
    """Every payload of the tick workflow's history, read WITHOUT the key (as the server holds them)."""
    async def go() -> tuple[list[Any], bytes]:
        client = await client_for(addr)  # no codec
        wids = [wf.id async for wf in client.list_workflows("WorkflowType = 'LoopTick'")
                if wf.id.startswith(wid_prefix)]
        assert wids, "no tick workflow"
        payloads: list[Any] = []
        raw = b""
        for wid in wids:
            async for event in client.get_workflow_handle(wid).fetch_history_events():
                blob = event.SerializeToString()
                raw += blob
                for attr in ("activity_task_scheduled_event_attributes", "activity_task_completed_event_attributes",
                             "workflow_execution_started_event_attributes",
                             "workflow_execution_completed_event_attributes"):
                    if event.HasField(attr):
                        holder = getattr(event, attr)
                        for field in ("input", "result"):
                            if holder.HasField(field) if field in holder.DESCRIPTOR.fields_by_name else False:
                                payloads.extend(getattr(holder, field).payloads)
        return payloads, raw

    return arun(go())


def test_a_per_port_tick_with_a_key_leaves_no_secret_prompt_or_file_in_the_history(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """The key turns the per-port path on; the tick runs as before (its run log is pushed) while the server's
    copy of the history holds only sealed payloads: no secret value, no state-file text, no prompt."""
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue)
    env = {KEY_ENV: KEY, "DEPLOY_API_TOKEN": SECRET}
    sync = run_cli("schedule", "sync", "--json", cwd=checkout, env=env)
    assert sync.returncode == 0, sync.stderr
    doc = json.loads(sync.stdout)
    workers("w1", env=env)

    async def trigger() -> None:
        from loop_runtime.temporal.connect import TemporalSettings, connect

        os_env = __import__("os").environ
        os_env[KEY_ENV] = KEY
        try:
            client = await connect(TemporalSettings(address=addr))
        finally:
            del os_env[KEY_ENV]
        await client.get_schedule_handle(f"loop-{doc['projectKey']}-ci-sweeper").trigger()

    arun(trigger())
    wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 180, what="the pushed run log")
    [entry] = run_log_entries(show(bare, "loop-run-log.md"))
    assert entry["outcome"] == "report-only"

    payloads, raw = _raw_history(addr, f"loop-tick-{doc['projectKey']}-")
    assert payloads, "no payloads read"
    assert b"port_batch" in raw and b"run_tick" not in raw  # the key chose the per-port path
    assert all(p.metadata.get("encoding") == ENCODING for p in payloads), {
        p.metadata.get("encoding") for p in payloads}
    state_line = show(bare, "ci-sweeper-state.md").splitlines()[0].encode()
    for needle in (SECRET.encode(), b"ci-sweeper-state.md", state_line, b"observe", b"triage"):
        assert needle not in raw, needle


def test_without_a_key_the_per_port_history_would_hold_the_secret_so_it_is_not_the_default(
        temporal_server: Any, queue: str, workers: Any, tmp_path: Path) -> None:
    """Why the key matters (and why the check above can fail): forced on without a key, the per-port path
    leaves the secret value in the server's history in clear. Without a key and without the override, a
    schedule uses the whole-tick path."""
    addr = temporal_server.address
    bare, checkout = project(tmp_path, addr, queue)
    env = {"LOOP_RUNTIME_TEMPORAL_PER_PORT": "1", "DEPLOY_API_TOKEN": SECRET}
    sync = run_cli("schedule", "sync", "--json", cwd=checkout, env=env)
    assert sync.returncode == 0, sync.stderr
    doc = json.loads(sync.stdout)
    workers("w1", env=env)

    async def trigger() -> None:
        client = await client_for(addr)
        await client.get_schedule_handle(f"loop-{doc['projectKey']}-ci-sweeper").trigger()

    arun(trigger())
    wait_for(lambda: run_log_entries(show(bare, "loop-run-log.md")), 180, what="the pushed run log")
    _payloads, raw = _raw_history(addr, f"loop-tick-{doc['projectKey']}-")
    assert b"port_batch" in raw and SECRET.encode() in raw
