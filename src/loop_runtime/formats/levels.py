"""The autonomy level names, L0 (draft) to L3 (unattended), lowest first (R8).

Why here, at the bottom layer: configuration formats validate a ``level`` value and
``core.levels`` ranks and combines levels; both use this one tuple (its index is the rank).
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("L0", "L1", "L2", "L3")

__all__ = ["LEVELS"]
