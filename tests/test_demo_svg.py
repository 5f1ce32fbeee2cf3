"""docs/demo.svg is the README's demo command's real output, and says so only while it is true."""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def render_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_demo", ROOT / "scripts" / "render_demo.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_svg_shows_exactly_what_the_demo_command_prints(tmp_path: Path, cli) -> None:
    """The committed picture's text = the prompt line + the command's stdout in an empty folder, line for line."""
    rd = render_demo()
    proc = cli(*rd.COMMAND, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    want = [rd.PROMPT, *proc.stdout.rstrip("\n").split("\n")]
    got = rd.svg_lines((ROOT / "docs" / "demo.svg").read_text("utf-8"))
    assert got == want, "docs/demo.svg is out of date: run python scripts/render_demo.py"


def test_the_readme_opens_with_the_demo_command_and_its_picture() -> None:
    """The README's first code block runs the demo command, and the picture follows right after it."""
    rd = render_demo()
    text = (ROOT / "README.md").read_text("utf-8")
    first_block = re.search(r"```bash\n(.*?)```\n", text, re.S)
    assert first_block and " ".join(rd.COMMAND) in first_block.group(1)
    after = text[first_block.end():].lstrip("\n")
    assert after.startswith("![") and "(docs/demo.svg)" in after.split("\n", 1)[0]


def test_rendering_is_deterministic_and_reads_back() -> None:
    """Same output → same SVG bytes (fixed width and title, no timestamps); svg_lines reads back what was drawn."""
    rd = render_demo()
    output = "Ran 1 tick(s) of X [L2] via mock backend (dry-run):\n· a <b> & \"c\"   spaced\nBudget: 1 / 2 tokens.\n"
    a, b = rd.render(output), rd.render(output)
    assert a == b
    assert rd.TITLE in html.unescape(a).replace("\xa0", " ") and not re.search(r"\d{4}-\d{2}-\d{2}", a)
    assert rd.svg_lines(a) == [rd.PROMPT, *output.rstrip("\n").split("\n")]
    assert rd.svg_lines(rd.render(output.replace("X", "Y"))) != rd.svg_lines(a)
