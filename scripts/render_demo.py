#!/usr/bin/env python3
"""Render ``docs/demo.svg`` from the real output of the README's demo command.

    python scripts/render_demo.py            # rewrite docs/demo.svg
    python scripts/render_demo.py --check    # exit 1 when the picture no longer matches the command

The command (``loop-runtime run daily-triage --level L2 --dry-run``) runs for real, in
a fresh empty folder, through the installed package (``python -m loop_runtime``);
its stdout is drawn with rich's ``Console(record=True).save_svg`` behind a prompt line.
The picture is deterministic: fixed width, fixed title, no timestamps, and rich's ids
are derived from the content, so the same output gives the same file byte for byte.
``tests/test_demo_svg.py`` compares the picture's text with the command's output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "docs" / "demo.svg"
COMMAND = ("run", "daily-triage", "--level", "L2", "--dry-run")
PROMPT = "$ loop-runtime " + " ".join(COMMAND)
WIDTH = 88
TITLE = "loop-runtime — one real tick"


def demo_output() -> str:
    """The demo command's stdout, run in an empty temporary folder (exit 0 required)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOOP_PROJECT_ROOT", "NO_COLOR", "FORCE_COLOR")}
    env["COLUMNS"] = str(WIDTH)
    with tempfile.TemporaryDirectory(prefix="loop-runtime-demo-") as folder:
        proc = subprocess.run([sys.executable, "-m", "loop_runtime", *COMMAND], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"demo command failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def render(output: str) -> str:
    """The SVG text for ``output``, shown after the prompt line."""
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=WIDTH, force_terminal=True, color_system="truecolor",
                      legacy_windows=False, file=open(os.devnull, "w"))  # noqa: SIM115 (closed below)
    try:
        console.print(Text(PROMPT, style="bold green"), soft_wrap=True)
        for line in output.rstrip("\n").split("\n"):
            style = "bold" if line.startswith(("Ran ", "tick ")) else ("cyan" if line.startswith("Budget") else "")
            console.print(Text(line, style=style), soft_wrap=True, highlight=False, markup=False)
        return console.export_svg(title=TITLE)
    finally:
        console.file.close()


def svg_lines(svg: str) -> list[str]:
    """The terminal text drawn in a rich SVG, one string per line (the window title excluded)."""
    import html
    import re

    lines: dict[int, list[str]] = {}
    for m in re.finditer(r'<text [^>]*clip-path="url\(#[\w-]+-line-(\d+)\)"[^>]*>(.*?)</text>', svg, re.S):
        lines.setdefault(int(m.group(1)), []).append(html.unescape(m.group(2)))
    out = ["".join(parts).replace("\xa0", " ").rstrip() for _, parts in sorted(lines.items())]
    while out and not out[-1]:
        out.pop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/demo.svg no longer matches")
    args = ap.parse_args(argv)
    output = demo_output()
    if args.check:
        want = [PROMPT, *output.rstrip("\n").split("\n")]
        got = svg_lines(SVG.read_text("utf-8")) if SVG.exists() else []
        if got != want:
            print("docs/demo.svg is out of date: run python scripts/render_demo.py", file=sys.stderr)
            return 1
        return 0
    SVG.parent.mkdir(parents=True, exist_ok=True)
    tmp = SVG.with_suffix(".svg.tmp")
    tmp.write_text(render(output), "utf-8")
    tmp.replace(SVG)
    print(f"wrote {SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
