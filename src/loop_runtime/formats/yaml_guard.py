"""Refuse YAML whose aliases expand to a huge document (a "billion laughs" alias bomb).

Why: PyYAML shares an anchored node between its aliases, so *loading* a bomb is cheap, but
everything that walks the result afterwards (a denylist matched path by path, a JSON dump
into the store) visits every expanded copy: nine lines of ``[*a, *a, …]`` hang a tick and
eat a gigabyte. The npm ``yaml`` package the ecosystem tools use refuses such documents
("excessive alias count"); here the expanded size is measured on the composed node graph,
which is as small as the text, before anything is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["MAX_EXPANDED_NODES", "refuse_alias_bombs"]

MAX_EXPANDED_NODES = 100_000
"""Far above any real config (a registry of 50 patterns is a few thousand nodes)."""


def refuse_alias_bombs(text: str, *, file: str, limit: int = MAX_EXPANDED_NODES) -> None:
    """Raise a one-line ``ConfigError`` when ``text``'s aliases would expand past ``limit`` nodes.

    Text without ``*`` has no alias and is not parsed twice. YAML errors are left to the
    caller's own load, which reports them in its usual words.
    """
    if "*" not in text:
        return
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return
    if root is not None and _expanded(root, {}, set(), limit) > limit:
        raise ConfigError(file, "yaml", None, message=(
            f"invalid YAML: its aliases expand to more than {limit:,} nodes (an alias bomb?)"))


def _expanded(node: Any, sizes: dict[int, int], active: set[int], limit: int) -> int:
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:  # a recursive alias: infinite once expanded
        return limit + 1
    active.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded(child, sizes, active, limit)
        if total > limit:
            break
    active.discard(key)
    sizes[key] = total
    return total
