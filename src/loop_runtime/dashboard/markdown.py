"""Markdown → safe HTML for the dashboard (state files, run notes): markdown-it-py + nh3.

Two independent layers, so a bug in one is not a hole: markdown-it-py parses
CommonMark (+ tables, strikethrough) with raw HTML *disabled*, so ``<script>`` in a
state file stays text; nh3 (the Rust ``ammonia`` sanitiser) then keeps only an
allowlist of tags and attributes and only ``http``/``https``/``mailto`` links, so a
``javascript:`` or ``data:`` link loses its ``href``. Both libraries are imported on
first use (the CLI never pays for them).

Task-list boxes (``- [ ]`` / ``- [x]``), used by every loop-engineering state file,
become ☐ / ☑ before parsing: plain characters, no form controls.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

__all__ = ["ALLOWED_TAGS", "render_markdown"]

ALLOWED_TAGS = frozenset({
    "a", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
    "pre", "code", "em", "strong", "del", "s", "table", "thead", "tbody", "tr", "th", "td",
})
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
_ALIGN_CLASSES = {"md-left", "md-right", "md-center"}
_ALIGN = re.compile(r' style="text-align:(left|right|center)"')
_SCHEMES = frozenset({"http", "https", "mailto"})
_BOX = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)\[([ xX])\](?=\s)", re.M)


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    # "commonmark" with html=False: raw HTML blocks and inline tags are escaped as text.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    return md


def _boxes(text: str) -> str:
    return _BOX.sub(lambda m: m.group(1) + ("☑" if m.group(2) in "xX" else "☐"), text)


def render_markdown(text: str) -> str:
    """Sanitised HTML for ``text`` (already redacted by the caller); shifted one heading level down.

    A state file's ``# Title`` becomes an ``<h2>``: the page has its own ``<h1>``.
    """
    import nh3

    if not text or not text.strip():
        return ""
    html = _parser().render(_boxes(text))
    html = re.sub(r"<(/?)h([1-5])>", lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}>", html)
    html = _ALIGN.sub(r' class="md-\1"', html)  # the dashboard's CSP allows no inline style
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        allowed_classes={"th": set(_ALIGN_CLASSES), "td": set(_ALIGN_CLASSES)},
        strip_comments=True,
    )
