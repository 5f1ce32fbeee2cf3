"""Fingerprints of observations, for 0-token no-op ticks.

When a pattern requires early exit and nothing it can observe has changed since the
last tick that found nothing to do, calling an agent again can only spend tokens. The
observation (git HEAD and log, the state file, configured probe outputs) is hashed
after removing what changes on every tick by construction — the ``Last run:`` line the
loop itself writes — so the loop's own bookkeeping never looks like news.
"""

from __future__ import annotations

import hashlib
import re

_VOLATILE = re.compile(r"^(?:Last run|Last updated):.*$", re.MULTILINE | re.IGNORECASE)


def normalise(observation: str) -> str:
    return _VOLATILE.sub("", observation)


def fingerprint(observation: str) -> str:
    return "sha256:" + hashlib.sha256(normalise(observation).encode("utf-8", "surrogatepass")).hexdigest()[:32]
