"""Write ``src/loop_runtime/data/registry.json``: the bundled registry.yaml, pre-read as JSON.

Run after editing the bundled ``registry.yaml``: ``python scripts/bundle_registry.py``.
``tests/test_startup.py`` fails while the cache is stale (and an out-of-date cache is never
used: ``formats.registry.bundled_document`` checks the YAML's length and CRC-32 first).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from loop_runtime.adapters.project_files import BUNDLED_CACHE, BUNDLED_REGISTRY  # noqa: E402
from loop_runtime.formats.registry import source_stamp  # noqa: E402


def cache_text(raw: bytes) -> str:
    """The cache for registry bytes ``raw``; refuses a document JSON would change (dates, non-string keys)."""
    import yaml

    doc = yaml.safe_load(raw.decode("utf-8"))
    text = json.dumps({"source": source_stamp(raw), "document": doc}, ensure_ascii=False, indent=1,
                      allow_nan=False) + "\n"
    if json.loads(text)["document"] != doc:
        raise SystemExit(f"{BUNDLED_REGISTRY}: the document does not survive JSON unchanged; no cache written")
    return text


def main() -> None:
    BUNDLED_CACHE.write_text(cache_text(BUNDLED_REGISTRY.read_bytes()), encoding="utf-8")
    print(f"wrote {BUNDLED_CACHE}")


if __name__ == "__main__":
    main()
