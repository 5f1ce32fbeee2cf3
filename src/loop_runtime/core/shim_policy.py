"""Which ``git`` and ``gh`` calls an agent may make inside its sandbox, by autonomy level.

Why a policy of our own on top of the OS sandbox: the sandbox decides *where* a process
may write and *which hosts* it may reach, but not *what* a ``git push`` or a ``gh pr
merge`` means. The level-gated shims (first on the agent's PATH) ask this module before
they hand a call to the real tool:

- **L1** (and every read-only agent — triage, verifier, the test run): only read-only
  forms (``status``, ``diff``, ``log``, ``gh pr view`` …). Every mutating form is denied:
  commit, push, tag, reset, ``gh pr create/merge``, ``gh issue close/comment``, ``gh release``.
- **L2** (the implementer): commits and other changes to its own worktree, and pushes
  only to its own branch ``loop/<run-id>`` with an explicit refspec.
- **L3**: what L2 may, plus ``gh pr create`` from its own branch, and ``gh pr merge``
  when the gate allows an auto-merge of the changed paths (``needs_gate``).

Anything the parser does not recognise as read-only or as an allowed mutating form is
denied: unknown subcommands, aliases, unknown flags on list-or-change commands
(``git branch``, ``git tag``, ``git config``) fail closed. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .levels import LEVELS

__all__ = ["ShimDecision", "decide", "decide_gh", "decide_git"]


@dataclass(frozen=True)
class ShimDecision:
    """The verdict on one call. ``needs_gate`` names a gate action the shim must still check."""

    allowed: bool
    reason: str
    mutating: bool = False
    needs_gate: str | None = None


def _allow(reason: str, *, mutating: bool = False, needs_gate: str | None = None) -> ShimDecision:
    return ShimDecision(True, reason, mutating, needs_gate)


def _deny(reason: str, *, mutating: bool = True) -> ShimDecision:
    return ShimDecision(False, reason, mutating)


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 0  # unknown level: the most restrictive


# --------------------------------------------------------------------------- git

GIT_READ_ONLY = frozenset({
    "status", "diff", "log", "show", "rev-parse", "rev-list", "ls-files", "ls-tree", "ls-remote", "cat-file",
    "blame", "annotate", "grep", "describe", "shortlog", "show-ref", "for-each-ref", "name-rev", "merge-base",
    "diff-tree", "diff-files", "diff-index", "whatchanged", "version", "help", "var", "check-ignore",
    "check-attr", "check-ref-format", "count-objects", "cherry", "range-diff", "verify-commit", "verify-tag",
    "show-branch", "get-tar-commit-id", "column",
})
# Changes confined to the worktree, its index and its own branch (L2+).
GIT_WORKTREE_MUTATING = frozenset({
    "add", "rm", "mv", "commit", "restore", "reset", "clean", "apply", "am", "merge", "rebase", "cherry-pick",
    "revert", "fetch", "pull", "init", "clone", "format-patch", "mergetool", "notes", "gc",
})
# Global options that take a value as the next argument.
_GIT_GLOBAL_WITH_VALUE = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env",
                                    "--exec-path", "--super-prefix", "--attr-source"})
_GIT_GLOBAL_FLAGS = frozenset({"--no-pager", "-P", "-p", "--paginate", "--no-replace-objects",
                               "--literal-pathspecs", "--glob-pathspecs", "--noglob-pathspecs",
                               "--icase-pathspecs", "--no-optional-locks", "--no-lazy-fetch", "--no-advice",
                               "--bare"})
# Global options that point git at another repository or inject configuration (hooks,
# aliases, ``core.sshCommand``): harmless for reading, refused with any mutating form.
_GIT_RETARGETING = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env",
                              "--exec-path", "--super-prefix", "--bare"})


def _split_git(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(global options, subcommand, its arguments) of ``git`` argv (without ``git`` itself)."""
    globals_: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg in _GIT_GLOBAL_WITH_VALUE:
            globals_ += [arg, argv[i + 1] if i + 1 < len(argv) else ""]
            i += 2
            continue
        if name in _GIT_GLOBAL_WITH_VALUE and "=" in arg or arg in _GIT_GLOBAL_FLAGS:
            globals_.append(arg)
            i += 1
            continue
        if arg in ("--version", "--help", "-h", "--html-path", "--man-path", "--info-path"):
            return globals_, "version", []
        if arg.startswith("-"):
            return globals_, None, list(argv[i:])  # an unknown global option: cannot tell what follows
        return globals_, arg, list(argv[i + 1:])
    return globals_, "help", []


def _flags(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    for a in args:
        if a == "--":
            break
        if a.startswith("-"):
            out.append(a.split("=", 1)[0])
    return out


def _positionals(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    after = False
    for a in args:
        if after:
            out.append(a)
        elif a == "--":
            after = True
        elif not a.startswith("-"):
            out.append(a)
    return out


_BRANCH_LIST_FLAGS = frozenset({"-a", "--all", "-r", "--remotes", "-l", "--list", "-v", "-vv", "--verbose",
                                "--contains", "--no-contains", "--merged", "--no-merged", "--points-at",
                                "--sort", "--format", "--color", "--no-color", "--column", "--no-column",
                                "--show-current", "-i", "--ignore-case", "--abbrev", "--no-abbrev", "-q",
                                "--quiet"})
_TAG_LIST_FLAGS = frozenset({"-l", "--list", "-n", "--contains", "--no-contains", "--merged", "--no-merged",
                             "--points-at", "--sort", "--format", "--color", "--column", "--no-column", "-i",
                             "--ignore-case", "-v", "--verify"})
_CONFIG_READ_FLAGS = frozenset({"--get", "--get-all", "--get-regexp", "--get-urlmatch", "-l", "--list",
                                "--show-origin", "--show-scope", "--name-only", "--null", "-z", "--global",
                                "--system", "--local", "--worktree", "--file", "-f", "--blob", "--type",
                                "--bool", "--int", "--path", "--default", "--includes", "--no-includes"})
_CONFIG_VERBS = frozenset({"get", "list", "set", "unset", "rename-section", "remove-section", "edit"})
_READ_SUBVERBS = {
    "remote": (frozenset({"show", "get-url"}), frozenset({"-v", "--verbose"})),
    "stash": (frozenset({"list", "show"}), frozenset()),
    "worktree": (frozenset({"list"}), frozenset()),
    "reflog": (frozenset({"show"}), frozenset()),
    "submodule": (frozenset({"status", "summary"}), frozenset()),
    "sparse-checkout": (frozenset({"list"}), frozenset()),
    "bisect": (frozenset({"log", "view", "visualize"}), frozenset()),
}


def _git_read_only(sub: str, args: list[str]) -> bool | None:
    """True: read-only; False: mutating; None: not a form this policy knows (fail closed)."""
    if sub in GIT_READ_ONLY:
        return True
    flags, pos = _flags(args), _positionals(args)
    if sub == "branch":
        if set(flags) <= _BRANCH_LIST_FLAGS and (not pos or any(f in flags for f in ("-l", "--list", "--contains",
                                                                                   "--merged", "--no-merged",
                                                                                   "--points-at", "--no-contains"))):
            return True
        return False
    if sub == "tag":
        return set(flags) <= _TAG_LIST_FLAGS and (not pos or bool(set(flags) & {"-l", "--list", "-v", "--verify"}))
    if sub == "config":
        if pos[:1] in (["get"], ["list"]):
            return True
        if not set(flags) <= _CONFIG_READ_FLAGS:
            return False
        if set(flags) & {"--get", "--get-all", "--get-regexp", "--get-urlmatch", "-l", "--list"}:
            return True
        # `git config <name>` — one name and no value — reads it (the Claude CLI asks for user.name so).
        return not flags and len(pos) == 1 and pos[0] not in _CONFIG_VERBS and "." in pos[0]
    if sub == "symbolic-ref":
        return not flags and len(pos) == 1 or set(flags) <= {"-q", "--quiet", "--short"} and len(pos) == 1
    if sub in _READ_SUBVERBS:
        verbs, list_flags = _READ_SUBVERBS[sub]
        if not pos:
            return sub != "stash" and set(flags) <= list_flags  # a bare `git stash` pushes
        return pos[0] in verbs
    if sub in GIT_WORKTREE_MUTATING or sub in ("push", "checkout", "switch", "stash", "update-ref", "remote",
                                              "worktree", "reflog", "submodule", "replace", "filter-branch",
                                              "update-index", "write-tree", "commit-tree", "hash-object",
                                              "prune", "repack", "pack-refs", "bisect", "sparse-checkout",
                                              "send-email", "request-pull", "daemon", "instaweb"):
        return False
    return None


def _own_refspec(spec: str, branch: str) -> bool:
    """A push refspec that can only update ``refs/heads/<branch>`` (the attempt's own ``loop/<run-id>``)."""
    spec = spec[1:] if spec.startswith("+") else spec
    own = {branch, f"refs/heads/{branch}"}
    if ":" in spec:
        src, dst = spec.split(":", 1)
        return src in (*own, "HEAD") and dst in own
    return spec in own


def _git_push(args: list[str], branch: str | None) -> ShimDecision:
    if not branch or not branch.startswith("loop/"):
        return _deny("push: the worktree is not on a loop/<run-id> branch")
    flags = set(_flags(args))
    bad = flags & {"--all", "--mirror", "--tags", "--delete", "-d", "--prune", "--follow-tags", "--exec",
                   "--receive-pack", "--repo", "--push-option", "-o", "--signed", "--atomic"}
    if bad:
        return _deny(f"push: {sorted(bad)[0]} is not allowed (push only loop branch {branch})")
    valued = {"--repo", "--receive-pack", "--exec", "-o", "--push-option", "--signed"}
    pos = [a for a in _positionals(args) if a not in valued]
    if len(pos) < 2:
        return _deny(f"push: name the remote and the refspec explicitly (e.g. `git push origin {branch}`)")
    specs = pos[1:]
    if all(_own_refspec(s, branch) for s in specs):
        return _allow(f"push to own branch {branch}", mutating=True)
    return _deny(f"push: only the attempt's own branch {branch} may be pushed, not {' '.join(specs)}")


def decide_git(argv: Sequence[str], *, level: str, branch: str | None = None) -> ShimDecision:
    """The decision for ``git <argv>`` by an agent at ``level`` whose worktree is on ``branch``."""
    globals_, sub, args = _split_git(argv)
    if sub is None:
        return _deny(f"unknown git option {args[0]!r}")
    ro = _git_read_only(sub, args)
    if ro is True:
        return _allow(f"git {sub} is read-only")
    what = f"git {sub}"
    if ro is None:
        return _deny(f"{what}: unknown command (denied: unknown forms fail closed)")
    if _rank(level) < 2:
        return _deny(f"{what} changes the repository: denied at {level} (read-only)")
    retarget = sorted({g.split('=', 1)[0] for g in globals_} & _GIT_RETARGETING)
    if retarget:
        return _deny(f"{what} with {retarget[0]}: mutating git may only act on its own worktree, as configured")
    if sub == "push":
        return _git_push(args, branch)
    if sub in ("checkout", "switch"):
        # Restoring files is fine; moving the worktree to another branch (or making one) is not.
        if sub == "checkout" and "--" in args and not (set(_flags(args)) - {"-f", "--force", "-q", "--quiet",
                                                                            "-p", "--patch"}):
            return _allow("git checkout -- <paths> restores files", mutating=True)
        return _deny(f"{what}: the attempt stays on its own branch {branch or 'loop/<run-id>'}")
    if sub == "reset":
        pos = _positionals(args)
        if "--hard" in _flags(args) and pos and pos[0] not in ("HEAD", branch or "HEAD"):
            return _deny("git reset --hard to another commit: only HEAD may be reset")
        return _allow("git reset in the worktree", mutating=True)
    if sub == "notes" or sub == "gc":
        return _deny(f"{what} rewrites shared repository data")
    if sub in GIT_WORKTREE_MUTATING:
        return _allow(f"{what} in the worktree", mutating=True)
    return _deny(f"{what} changes shared repository state: not allowed at {level}")


# --------------------------------------------------------------------------- gh

GH_READ_ONLY = {
    "pr": frozenset({"view", "list", "diff", "checks", "status"}),
    "issue": frozenset({"view", "list", "status"}),
    "repo": frozenset({"view", "list"}),
    "run": frozenset({"view", "list", "watch"}),
    "workflow": frozenset({"view", "list"}),
    "release": frozenset({"view", "list"}),
    "label": frozenset({"list"}),
    "gist": frozenset({"view", "list"}),
    "search": None,  # every `gh search …` form reads
    "auth": frozenset({"status"}),
    "status": None,
    "version": None,
    "help": None,
    "cache": frozenset({"list"}),
    "ruleset": frozenset({"view", "list", "check"}),
    "variable": frozenset({"list", "get"}),
}
_GH_WITH_VALUE = frozenset({"-R", "--repo", "--hostname"})


def _gh_api(args: list[str]) -> ShimDecision:
    method = "GET"
    for i, a in enumerate(args):
        if a in ("-X", "--method") and i + 1 < len(args):
            method = args[i + 1].upper()
        elif a.startswith("--method="):
            method = a.split("=", 1)[1].upper()
        elif a.startswith("-X") and len(a) > 2:
            method = a[2:].upper()
        elif a in ("-f", "-F", "--field", "--raw-field", "--input") or a.startswith(("--field=", "--raw-field=",
                                                                                        "--input=")):
            if method == "GET" and "-X" not in args and "--method" not in args:
                method = "POST"  # gh sends a request body as POST unless told otherwise
    pos = _positionals([a for a in args])
    if method in ("GET", "HEAD") and not (pos and pos[0] == "graphql"):
        return _allow("gh api GET reads")
    return _deny(f"gh api {method}{' graphql' if pos and pos[0] == 'graphql' else ''} may change GitHub state")


def decide_gh(argv: Sequence[str], *, level: str, branch: str | None = None) -> ShimDecision:
    """The decision for ``gh <argv>``: read forms at every level; L3 may open and (gated) merge its PR."""
    args = list(argv)
    while args and (args[0] in _GH_WITH_VALUE or args[0].split("=", 1)[0] in _GH_WITH_VALUE):
        args = args[2:] if args[0] in _GH_WITH_VALUE else args[1:]
    if not args or args[0] in ("--version", "--help", "-h"):
        return _allow("gh help/version")
    group, rest = args[0], args[1:]
    if group == "api":
        decision = _gh_api(rest)
        if decision.allowed or _rank(level) < 3:
            return decision if decision.allowed else _deny(f"{decision.reason}: denied at {level}")
        return _deny(f"{decision.reason}: not something the gate can allow")
    verbs = GH_READ_ONLY.get(group, frozenset())
    verb = next((a for a in rest if not a.startswith("-")), None)
    if group in GH_READ_ONLY and (verbs is None or verb in verbs or (verb is None and group in ("status",))):
        return _allow(f"gh {group} {verb or ''} reads".replace("  ", " "))
    what = f"gh {group}{' ' + verb if verb else ''}"
    if _rank(level) >= 3 and group == "pr" and verb == "create":
        head = _option(rest, ("-H", "--head"))
        if head is None or (branch is not None and head == branch):
            return _allow("gh pr create from the attempt's own branch", mutating=True)
        return _deny(f"{what}: only from the attempt's own branch {branch}")
    if _rank(level) >= 3 and group == "pr" and verb == "merge":
        return _allow("gh pr merge: allowed only when the gate allows an auto-merge of the changed paths",
                      mutating=True, needs_gate="auto-merge")
    if group not in GH_READ_ONLY and group not in ("pr", "issue", "repo", "run", "workflow", "release", "label",
                                                   "gist", "secret", "ssh-key", "gpg-key", "cache", "extension",
                                                   "codespace", "org", "project", "ruleset", "variable", "alias",
                                                   "config", "attestation", "browse", "auth", "completion"):
        return _deny(f"{what}: unknown gh command (denied: unknown forms fail closed)")
    return _deny(f"{what} changes GitHub state: denied at {level}")


def _option(args: Sequence[str], names: tuple[str, ...]) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def decide(tool: str, argv: Sequence[str], *, level: str, branch: str | None = None) -> ShimDecision:
    """``tool`` is ``git`` or ``gh``; anything else is denied."""
    if tool == "git":
        return decide_git(argv, level=level, branch=branch)
    if tool == "gh":
        return decide_gh(argv, level=level, branch=branch)
    return _deny(f"{tool}: no policy for this tool")
