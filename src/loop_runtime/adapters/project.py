"""Reads the project's own prompt material (R29): skills, LOOP.md, constraints, AGENTS.md, verifier.

Skills are looked up where every supported host keeps them — ``.claude/skills``,
``.codex/skills``, ``.grok/skills`` and ``skills/`` — so a loop-init scaffold for any
``--tool`` works with no extra file.
"""

from __future__ import annotations

from pathlib import Path

from ..core.prompts import ProjectContext

SKILL_DIRS = (".claude/skills", ".codex/skills", ".grok/skills", "skills")
MAX_FILE = 40_000


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8", errors="replace")[:MAX_FILE]
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def find_skills(root: Path) -> dict[str, str]:
    skills: dict[str, str] = {}
    for d in SKILL_DIRS:
        base = root / d
        if not base.is_dir():
            continue
        for skill in sorted(base.iterdir()):
            text = _read(skill / "SKILL.md")
            if text is not None and skill.name not in skills:
                skills[skill.name] = text
    return skills


def find_verifier(root: Path) -> str | None:
    for pattern in (".claude/agents/*verifier*.md", ".codex/agents/verifier.toml"):
        for path in sorted(root.glob(pattern)):
            text = _read(path)
            if text:
                return text
    for d in SKILL_DIRS:
        text = _read(root / d / "loop-verifier" / "SKILL.md")
        if text:
            return text
    return None


def load_context(root: Path) -> ProjectContext:
    root = Path(root)
    return ProjectContext(
        project_name=root.resolve().name or "project",
        skills=find_skills(root),
        loop_md=_read(root / "LOOP.md"),
        constraints=_read(root / "loop-constraints.md"),
        agents_md=_read(root / "AGENTS.md") or _read(root / "CLAUDE.md"),
        verifier=find_verifier(root),
    )
