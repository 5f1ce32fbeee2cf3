"""Payloads encrypted before they reach Temporal: the workflow history holds no prompt, diff or secret in clear.

Why: on the per-port path (``port_workflow``) the core's tick runs in the workflow, so what it reads and
writes crosses Temporal as activity inputs and results — state files, prompts, agent output, diffs, and the
project's secret values (the tick checks that a diff adds none of them, and redacts them from what it
writes). Temporal stores all of it in its database. The remedy Temporal itself documents is a payload
codec: clients and workers encrypt every payload with a key the server never sees. This is that codec,
AES-256-GCM (``cryptography``), one random nonce per payload, the key's id in the payload's metadata so a
worker holding another key says so in one line instead of failing obscurely.

The key: ``LOOP_RUNTIME_TEMPORAL_KEY`` (32 bytes, base64) or ``LOOP_RUNTIME_TEMPORAL_KEY_FILE`` (a file
holding that text). Every client — ``schedule sync``, ``worker``, ``approve``/``reject``/``kill``,
``status --temporal`` — reads the same variables (``connect.connect``); without one, payloads are plain
JSON as before and ``schedule sync`` keeps the whole-tick path (``schedules.per_port_default``).
Generate one with ``python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from ..errors import ConfigError

KEY_ENV = "LOOP_RUNTIME_TEMPORAL_KEY"
KEY_FILE_ENV = "LOOP_RUNTIME_TEMPORAL_KEY_FILE"
ENCODING = b"binary/encrypted"
_NONCE = 12


def payload_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The 32-byte key from the environment (the variable, else the file it names), or None when neither is set.

    A malformed key is a one-line ``ConfigError`` naming the variable: a worker must never quietly run
    without the encryption its operator asked for."""
    env = os.environ if env is None else env
    raw, where = env.get(KEY_ENV, "").strip(), KEY_ENV
    if not raw and env.get(KEY_FILE_ENV, "").strip():
        path = Path(env[KEY_FILE_ENV].strip()).expanduser()
        where = f"{KEY_FILE_ENV} ({path})"
        try:
            raw = path.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(KEY_FILE_ENV, "file", str(path), message=f"{where}: cannot read the key: {e}") from None
    if not raw:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(where, "key", "<hidden>", message=f"{where}: the key must be 32 bytes in base64 "
                          f"(44 characters), got {len(raw)} characters")
    return key


def key_id(key: bytes) -> str:
    """A short public name for a key (it reveals nothing about it): which key encrypted a payload."""
    return hashlib.sha256(b"loop-runtime temporal payload key\0" + key).hexdigest()[:16]


class DecryptError(ConfigError):
    """A payload this process cannot decrypt: another key, or altered on the way."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each serialized payload; payloads that are not ours pass through untouched."""

    def __init__(self, key: bytes) -> None:
        from ..optional import require

        feature = "encrypted Temporal payloads (LOOP_RUNTIME_TEMPORAL_KEY)"
        require("cryptography", extra="temporal", feature=feature)
        aead = require("cryptography.hazmat.primitives.ciphers.aead", extra="temporal", feature=feature)
        self._invalid = require("cryptography.exceptions", extra="temporal", feature=feature).InvalidTag
        self._aead = aead.AESGCM(key)
        self.key_id = key_id(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(p) for p in payloads]

    def _seal(self, p: Payload) -> Payload:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, p.SerializeToString(), ENCODING + self.key_id.encode())
        return Payload(metadata={"encoding": ENCODING, "encryption-key-id": self.key_id.encode()},
                       data=nonce + sealed)

    def _open(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            return p  # written before encryption was turned on (or by a tool that does not encrypt)
        kid = p.metadata.get("encryption-key-id", b"").decode("ascii", "replace")
        if kid != self.key_id:
            raise DecryptError(KEY_ENV, "key", kid, message=f"a Temporal payload was encrypted with key {kid!r}, "
                               f"this process holds key {self.key_id!r}: give every client and worker the same "
                               f"{KEY_ENV}")
        try:
            plain = self._aead.decrypt(p.data[:_NONCE], p.data[_NONCE:], ENCODING + kid.encode())
        except self._invalid:
            raise DecryptError(KEY_ENV, "payload", kid, message="a Temporal payload failed its integrity check "
                               "(altered, or truncated): refused") from None
        return Payload.FromString(plain)


def data_converter(env: Mapping[str, str] | None = None) -> Any:
    """Temporal's default data converter, with the payload codec when a key is configured."""
    import dataclasses

    from temporalio.converter import DataConverter

    key = payload_key(env)
    if key is None:
        return DataConverter.default
    return dataclasses.replace(DataConverter.default, payload_codec=EncryptionCodec(key))
