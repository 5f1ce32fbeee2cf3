"""Running git, and reading what git prints about a diff.

One helper runs every git command of the runtime so that the same rules hold
everywhere: no inherited ``GIT_DIR``/``GIT_INDEX_FILE`` (a runtime started from a git
hook must not act on another repository or index), no terminal prompts, English
messages, ``core.quotePath=false`` so paths come back as the user spells them, and a
``GitError`` naming the command and the last line git printed on failure — never a
``CalledProcessError``.

The parsers read the machine formats (``--raw -z``, ``--numstat -z``) and the patch
text; paths are decoded as UTF-8 with ``surrogateescape`` so a non-UTF-8 file name
round-trips to the file system byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import GitError
from ..ports import Diff, FileChange

__all__ = [
    "RawEntry",
    "added_lines_by_path",
    "decode",
    "diff_against",
    "git_env",
    "git_ok",
    "merge_conflicts",
    "parse_numstat_z",
    "parse_raw_z",
    "rev_parse",
    "run_git",
    "run_git_bytes",
    "unquote_c",
]

# Variables that point git at another repository, index or object store.
_REDIRECTING = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_QUARANTINE_PATH", "GIT_EXTERNAL_DIFF",
)
_CONFIG = ("-c", "core.quotePath=false", "-c", "color.ui=false", "-c", "core.fsmonitor=false")
DEFAULT_TIMEOUT_S = 600.0


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REDIRECTING}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat"})
    if extra:
        env.update(extra)
    return env


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _describe(args: Sequence[str]) -> str:
    shown = " ".join(args)
    return shown if len(shown) <= 160 else shown[:157] + "..."


def _run(args: Sequence[str], cwd: str | Path, input: bytes | None, env: Mapping[str, str] | None,
         timeout: float | None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *_CONFIG, *args], cwd=str(cwd), input=input, capture_output=True,
            stdin=None if input is not None else subprocess.DEVNULL, env=git_env(env),
            timeout=timeout or DEFAULT_TIMEOUT_S, check=False,
        )
    except FileNotFoundError:
        raise GitError("git not found on PATH: install git to use worktrees") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {_describe(args)} timed out after {timeout or DEFAULT_TIMEOUT_S:.0f}s") from None
    except OSError as exc:
        raise GitError(f"git {_describe(args)} could not start in {cwd}: {exc}") from None


def run_git_bytes(args: Sequence[str], cwd: str | Path, *, input: bytes | str | None = None,
                  env: Mapping[str, str] | None = None, timeout: float | None = None) -> bytes:
    """Run git and return raw stdout; any non-zero exit is a ``GitError`` with git's last word."""
    data = input.encode("utf-8", "surrogateescape") if isinstance(input, str) else input
    proc = _run(args, cwd, data, env, timeout)
    if proc.returncode != 0:
        lines = [ln for ln in decode(proc.stderr).splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise GitError(f"git {_describe(args)} failed: {last}")
    return proc.stdout


def run_git(args: Sequence[str], cwd: str | Path, *, input: bytes | str | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None, strip: bool = True) -> str:
    out = decode(run_git_bytes(args, cwd, input=input, env=env, timeout=timeout))
    return out.strip() if strip else out


def git_ok(args: Sequence[str], cwd: str | Path) -> bool:
    """True when the command exits 0 (for probes such as ``show-ref --verify``)."""
    return _run(args, cwd, None, None, None).returncode == 0


# --------------------------------------------------------------------------- diff formats


@dataclass(frozen=True)
class RawEntry:
    """One record of ``git diff --raw -z``."""

    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    status: str  # A C D M R T U X (score stripped)
    path: str
    old_path: str | None = None


def parse_raw_z(data: bytes) -> list[RawEntry]:
    tokens = decode(data).split("\0")
    entries: list[RawEntry] = []
    i = 0
    while i < len(tokens):
        head = tokens[i]
        if not head.startswith(":"):
            i += 1
            continue
        fields = head[1:].split()
        if len(fields) < 5 or i + 1 >= len(tokens):
            raise GitError(f"unexpected git diff --raw output: {head!r}")
        old_mode, new_mode, old_sha, new_sha, status = fields[:5]
        letter = status[0]
        if letter in "RC":
            entries.append(RawEntry(old_mode, new_mode, old_sha, new_sha, letter, tokens[i + 2], tokens[i + 1]))
            i += 3
        else:
            entries.append(RawEntry(old_mode, new_mode, old_sha, new_sha, letter, tokens[i + 1]))
            i += 2
    return entries


def parse_numstat_z(data: bytes) -> dict[str, bool]:
    """Map each (new) path of ``git diff --numstat -z`` to whether git treats it as binary."""
    tokens = decode(data).split("\0")
    binary: dict[str, bool] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        parts = token.split("\t", 2)
        if len(parts) != 3:
            i += 1
            continue
        added, _deleted, path = parts
        if path == "" and i + 2 < len(tokens):  # rename: "a\td\t\0old\0new\0"
            path = tokens[i + 2]
            i += 3
        else:
            i += 1
        binary[path] = binary.get(path, False) or added == "-"
    return binary


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_c(text: str) -> str:
    """Undo git's C-style quoting of a path (``"a\\tb\\303\\251"``); unquoted text is returned as is."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return text
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 >= len(body):
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = body[i + 1]
        octal = body[i + 1:i + 4]
        if len(octal) == 3 and all(c in "01234567" for c in octal):
            out.append(int(octal, 8) & 0xFF)
            i += 4
        else:
            out.append(_ESCAPES.get(nxt, ord(nxt) if ord(nxt) < 128 else 63))
            i += 2
    return decode(bytes(out))


def _header_path(line: str) -> str | None:
    name = line[4:]
    if name.endswith("\t"):  # git appends a tab to names containing a space
        name = name[:-1]
    if name == "/dev/null":
        return None
    name = unquote_c(name)
    return name[2:] if name.startswith("b/") else name


def added_lines_by_path(patch: str) -> dict[str, list[str]]:
    """The ``+`` lines of every text hunk, keyed by the new path (``+++ b/<path>``)."""
    result: dict[str, list[str]] = {}
    path: str | None = None
    in_hunk = False
    for line in patch.split("\n"):
        if line.startswith("diff --git "):
            path, in_hunk = None, False
        elif not in_hunk and line.startswith("+++ "):
            path = _header_path(line)
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and path is not None and line.startswith("+"):
            result.setdefault(path, []).append(line[1:].rstrip("\r"))
    return result


# --------------------------------------------------------------------------- the diff of an index

_KIND = {"A": "added", "C": "added", "D": "deleted", "R": "renamed", "T": "typechange", "M": "modified"}


def _blobs(cwd: Path, shas: list[str]) -> dict[str, str]:
    """Contents of small blobs (symlink targets) in one ``cat-file --batch`` call."""
    if not shas:
        return {}
    out = run_git_bytes(["cat-file", "--batch"], cwd, input="".join(f"{s}\n" for s in shas).encode())
    blobs: dict[str, str] = {}
    pos = 0
    for sha in shas:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        if len(header) != 3:  # "<sha> missing"
            pos = nl + 1
            continue
        size = int(header[2])
        blobs[sha] = decode(out[nl + 1:nl + 1 + size])
        pos = nl + 1 + size + 1
    return blobs


def _file_change(e: RawEntry, binary: Mapping[str, bool], added: Mapping[str, list[str]],
                 targets: Mapping[str, str]) -> FileChange:
    kind = _KIND.get(e.status, "modified")
    if kind == "modified" and e.old_sha == e.new_sha and e.old_mode != e.new_mode:
        kind = "mode"
    is_binary = binary.get(e.path, False)
    return FileChange(
        path=e.path, kind=kind, old_path=e.old_path if kind == "renamed" else None,  # type: ignore[arg-type]
        is_symlink=(e.old_mode if kind == "deleted" else e.new_mode) == "120000",
        symlink_target=targets.get(e.new_sha) if kind != "deleted" else None,
        is_binary=is_binary, old_mode=None if e.old_mode == "000000" else e.old_mode,
        new_mode=None if e.new_mode == "000000" else e.new_mode,
        added_lines=() if is_binary or kind == "deleted" else tuple(added.get(e.path, ())),
    )


def diff_against(cwd: Path, base: str) -> Diff:
    """What the index at ``cwd`` changes against commit ``base``: plumbing only, so no user
    diff config (``noprefix``, external diff, textconv) can change what the runtime reads."""
    common = ["diff-index", "--cached", "-M", "--no-ext-diff", "--no-textconv"]
    raw = parse_raw_z(run_git_bytes([*common, "--raw", "-z", "--no-abbrev", base], cwd))
    binary = parse_numstat_z(run_git_bytes([*common, "--numstat", "-z", base], cwd))
    patch = decode(run_git_bytes([*common, "-p", "--binary", "--src-prefix=a/", "--dst-prefix=b/", base], cwd))
    added = added_lines_by_path(patch)
    targets = _blobs(cwd, [e.new_sha for e in raw if e.new_mode == "120000"])
    return Diff(base_commit=base, changes=tuple(_file_change(e, binary, added, targets) for e in raw), patch=patch)


# --------------------------------------------------------------------------- questions the application asks


def rev_parse(cwd: str | Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names none (a branch deleted meanwhile)."""
    proc = _run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd, None, None, None)
    return (decode(proc.stdout).strip() or None) if proc.returncode == 0 else None


def merge_conflicts(cwd: str | Path, branch: str, into: str = "HEAD") -> list[str]:
    """Paths where merging ``branch`` into ``into`` conflicts (``git merge-tree``), without touching the
    checkout; empty when it merges cleanly or git cannot tell (an old git without ``--write-tree``)."""
    proc = _run(["merge-tree", "--write-tree", "--name-only", "--no-messages", "--end-of-options", into, branch],
                cwd, None, None, 60)
    if proc.returncode != 1:
        return []
    return [line for line in decode(proc.stdout).splitlines()[1:] if line.strip()]
