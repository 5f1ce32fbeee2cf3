"""Every agent process and every test run inside an OS sandbox: Anthropic's sandbox runtime (srt).

Why srt and not bubblewrap arguments of our own: srt is the sandbox Claude Code itself
uses, maintained against bubblewrap's and the kernel's corner cases (symlinked deny
paths, mandatory denies for ``.git/hooks`` and shell rc files, seccomp against unix
sockets, a network namespace with only its filtering HTTP/SOCKS proxies reachable). The
one thing it does not do — resource limits — is added inside the sandbox by
``sandbox_exec`` (see there why not outside). No concrete reason to hand-write bwrap
arguments was found.

Per process (``SrtSandbox.prepare(scope)``) a private folder is made under the system
temp dir, holding:

- ``settings.json`` — the srt settings for this process (read-only inside): writes only
  in the worktree (when the scope is writable) and ``rw/``; reads denied for the user's
  credential folders, ``.loop-runtime/`` and other attempts' ``.loop-worktrees/*``; the
  network limited to ``sandbox_allow_domains`` plus the scope's hosts (the model endpoint);
- ``shims/git`` and ``shims/gh`` — level-gated tools first on PATH (``adapters.shim``);
- ``rw/tmp`` — the process's ``TMPDIR`` (the only writable part of the folder);
- ``denied.fifo`` — the shims' denial channel (``DenialChannel``): write-only, drained by the
  runtime, so the agent can neither read, erase nor rewrite what the shims recorded.

``wrap`` turns ``argv`` into ``srt --settings <file> -- python -I -S sandbox_exec.py
<limits> -- argv``; ``denials`` reads the log after the run; ``close`` removes the folder.

At L2+ an implementer may commit in its worktree: the repository's object store, the
worktree's own git folder and ``refs/heads/loop/`` are then writable too — never the
base branch, tags, config or hooks.

This module builds the settings and the command line; the rest of one process lives
beside it, by concern: ``sandbox_denials`` (the denial channel, confirming its records,
reading srt's violation reports), ``sandbox_git`` (the git paths a commit needs, importing
the agent's objects) and ``sandbox_limits`` (the pids cgroup or the rlimit/watchdog
fallback). Their public names are re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..formats.levels import LEVELS
from ..ports import SandboxScope
from .sandbox_denials import DenialChannel, RefusalContext, confirm_record, read_violations
from .sandbox_git import current_branch, fork_point, git_writable, import_objects
from .sandbox_limits import PROCESS_ALLOWANCE, SandboxLimits, limit_args, make_cgroup

__all__ = ["DEPENDENCIES", "HOME_SECRETS", "MODES", "PROCESS_ALLOWANCE", "DenialChannel", "NoSandbox",
           "SandboxLimits", "SrtSandbox", "find_srt", "endpoint_host", "make_sandbox", "missing_dependencies"]

MODES = ("auto", "srt", "none")
DEPENDENCIES = ("bwrap", "socat", "rg")  # Debian: bubblewrap, socat, ripgrep
SRT_INSTALL = "npm install -g @anthropic-ai/sandbox-runtime"
APT_INSTALL = "apt-get install -y bubblewrap socat ripgrep"
CONFIG_FILE = "loop-runtime.toml"

HOME_SECRETS = (
    ".ssh", ".aws", ".config/gh", ".netrc", ".gnupg", ".config/gcloud", ".azure", ".kube", ".docker",
    ".git-credentials", ".config/git/credentials", ".pypirc", ".npmrc", ".yarnrc", ".config/hub", ".terraform.d",
    ".terraformrc", ".vault-token", ".oci", ".config/doctl", ".cargo/credentials", ".cargo/credentials.toml",
    ".password-store", ".config/op", ".local/share/keyrings", ".mozilla", ".config/google-chrome",
    ".config/chromium",
)
"""Folders and files under ``$HOME`` that hold credentials: never readable inside the sandbox."""

MASKED_NAMES = (".gitconfig", ".gitmodules", ".bashrc", ".bash_profile", ".zshrc", ".zprofile", ".profile",
                ".ripgreprc", ".mcp.json", ".vscode", ".idea", ".claude")
"""What srt (0.0.83) mounts over in the working directory so nothing can create them (``DANGEROUS_FILES``)."""

EXEC_HELPER = str(Path(__file__).with_name("sandbox_exec.py"))
RUNNER = str(Path(__file__).resolve().parents[1] / "data" / "srt_run.mjs")


def srt_library(srt: str) -> str | None:
    """srt's ``dist`` folder (the library ``srt_run.mjs`` drives), when ``srt`` is an npm install."""
    dist = Path(os.path.realpath(srt)).parent
    needed = ("index.js", "utils/config-loader.js", "utils/shell-quote.js")
    return str(dist) if all((dist / n).is_file() for n in needed) else None


def find_srt(env: Mapping[str, str] = os.environ) -> str | None:
    """``$LOOP_RUNTIME_SRT`` when set (an explicit path), else ``srt`` on PATH."""
    explicit = (env.get("LOOP_RUNTIME_SRT") or "").strip()
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("srt", path=env.get("PATH"))


def missing_dependencies(env: Mapping[str, str] = os.environ) -> list[str]:
    """The Debian tools srt needs on Linux and that are not on PATH."""
    if sys.platform != "linux":
        return []
    return [tool for tool in DEPENDENCIES if shutil.which(tool, path=env.get("PATH")) is None]


def endpoint_host(url: str | None, default: str) -> tuple[tuple[str, ...], bool]:
    """The allowlist entries for a model endpoint URL and whether it is on this host's loopback.

    A loopback endpoint (the local stand-in) is listed as its IP literal with its port — srt
    denies names that resolve to loopback unless that literal is listed — plus the name
    ``localhost:<port>`` when the URL says ``localhost``.
    """
    if not url:
        return (default,), False
    parts = urlsplit(url)
    host = parts.hostname or default
    loopback = host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")
    if loopback:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = "127.0.0.1" if host == "localhost" else (f"[{host}]" if ":" in host else host)
        names = (f"{literal}:{port}", f"localhost:{port}") if host == "localhost" else (f"{literal}:{port}",)
        return names, True
    return (host,), False


class NoSandbox:
    """``ports.Sandbox`` that confines nothing; ``reason`` says why (logged by every tick)."""

    name = "none"
    active = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def prepare(self, scope: SandboxScope) -> _Unconfined:
        return _Unconfined()


class _Unconfined:
    def wrap(self, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        return list(argv), dict(env)

    def denials(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        return None


@dataclass
class SrtSandbox:
    """``ports.Sandbox`` over the ``srt`` CLI for one project, level and allowlist."""

    srt: str
    root: str
    level: str = "L1"
    allow_domains: tuple[str, ...] = ()
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    home: str | None = None
    base_commit: str | None = None
    node: str | None = None  # with srt's library: violations are reported (srt_run.mjs)
    library: str | None = None
    cgroups: bool = True  # a pids cgroup per process where one can be made (else the namespace watchdog)

    name = "srt"
    active = True

    @property
    def reason(self) -> str:
        return f"srt ({self.srt})"

    def prepare(self, scope: SandboxScope) -> SrtProcess:
        return SrtProcess(self, scope)


class SrtProcess:
    """One sandboxed process's private folder, settings and shims."""

    def __init__(self, sandbox: SrtSandbox, scope: SandboxScope) -> None:
        self.sandbox, self.scope = sandbox, scope
        self.dir = Path(tempfile.mkdtemp(prefix="loop-sandbox-")).resolve()
        try:
            self.rw = self.dir / "rw"
            self.tmp = self.rw / "tmp"
            self.tmp.mkdir(parents=True)
            self.shim_level: str | None = None  # what the shims were told (to re-decide their records)
            self.shim_branch: str | None = None
            self.log = self.dir / "denied.fifo"
            self.channel = DenialChannel(self.log, self._confirm)
            self.report = self.dir / "violations.json"  # written by srt_run.mjs on the host side
            self.limit_report = self.dir / "limits.json"  # written by sandbox_exec's outer mode (host side)
            self.cgroup = make_cgroup(self.sandbox.limits, self.sandbox.cgroups)
            self.watchdog = self.cgroup is None  # the namespace watchdog holds the process count
            self.objects: Path | None = None  # the private object store of an L2+ agent's commits
            self.common_dir: Path | None = None
            self.import_error: str | None = None
            self._imported = False
            self.cwd = str(Path(scope.cwd).resolve())
            self.settings_path = self.dir / "settings.json"
            self.settings = self._settings()
            self.settings_path.write_text(json.dumps(self.settings, indent=2), encoding="utf-8")
            self.shim_dir = self.dir / "shims"
            self.shim_dir.mkdir()
        except BaseException:
            self.close()
            raise

    # -- what the process may touch

    def _level(self) -> str:
        """The shims' level: for a writable agent the lower of the configured level and its tick's effective
        one (a tick held down to L2 gets no L3 `gh pr create`), else read-only (L1)."""
        if not (self.scope.writable and self.scope.purpose == "agent"):
            return "L1"
        configured, effective = self.sandbox.level, self.scope.level or self.sandbox.level
        if configured not in LEVELS or effective not in LEVELS:
            return "L1"  # an unknown level: the most restrictive
        return min(configured, effective, key=LEVELS.index)

    def _settings(self) -> dict[str, object]:
        root = Path(self.sandbox.root).resolve()
        home = Path(self.sandbox.home or os.path.expanduser("~"))
        deny_read = [str(home / p) for p in HOME_SECRETS if (home / p).exists() or (home / p).is_symlink()]
        for private in (root / ".loop-runtime", root / ".loop-worktrees"):
            if private.exists():
                deny_read.append(str(private))
        allow_read: list[str] = []
        cwd = Path(self.cwd)
        if root / ".loop-worktrees" in cwd.parents or root / ".loop-runtime" / "base-checkouts" in cwd.parents:
            allow_read.append(self.cwd)  # its own worktree (or base checkout), under a denied private folder
        allow_write = [str(self.rw)]
        for extra in self.scope.extra_writable:  # e.g. a test run's private report folder
            allow_read.append(extra)
            allow_write.append(extra)
        deny_write: list[str] = []
        if self.scope.writable:
            allow_write.append(self.cwd)
            dotgit = cwd / ".git"
            if dotgit.is_file():
                deny_write.append(str(dotgit))  # the pointer to its git folder stays where it is
            if self.scope.purpose == "agent" and self._level() in ("L2", "L3"):
                git = git_writable(cwd, self.rw)
                if git is not None:
                    self.objects, self.common_dir = git.objects, git.common
                    allow_write += git.writable
                    deny_write += git.denied
        hosts = sorted({*self.sandbox.allow_domains, *self.scope.hosts})
        return {
            "network": {"allowedDomains": hosts, "deniedDomains": []},
            "filesystem": {"denyRead": deny_read, "allowRead": allow_read, "allowWrite": allow_write,
                           "denyWrite": deny_write},
        }

    def import_objects(self) -> str | None:
        """Copy the objects the agent's commits made into the repository; an error text, or None."""
        if self.objects is None or self.common_dir is None:
            return None
        return import_objects(self.objects, self.common_dir)

    def _base(self) -> str | None:
        """The attempt's base commit: given, or where its branch forked from the checkout's branch."""
        return self.sandbox.base_commit or fork_point(self.sandbox.root, self.cwd)

    def _write_shims(self, path: str) -> None:
        from .shim import script

        tools = {t: shutil.which(t, path=path) for t in ("git", "gh")}
        self.shim_level, self.shim_branch = self._level(), current_branch(self.cwd)
        config = {"level": self.shim_level, "branch": self.shim_branch, "log": str(self.log),
                  "root": str(Path(self.sandbox.root).resolve()),
                  "base": self._base() if self._level() == "L3" else None,
                  "tools": tools, "worktree": self.cwd,
                  "objects": None if self.objects is None or self.common_dir is None else
                  {"dir": str(self.objects), "alternate": str(self.common_dir / "objects")}}
        config_path = self.dir / "shims.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        for tool in ("git", "gh"):
            shim = self.shim_dir / tool
            shim.write_text(script(str(config_path), tool), encoding="utf-8")
            shim.chmod(0o555)

    # -- ports.SandboxedProcess

    def wrap(self, argv: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        child = dict(env)
        path = child.get("PATH") or os.defpath
        if self.scope.shims:
            self._write_shims(path)
            child["PATH"] = f"{self.shim_dir}{os.pathsep}{path}"
            # A login shell (Claude's Bash tool) resets PATH from /etc/profile; Claude Code sources
            # CLAUDE_ENV_FILE before each command, bash non-interactive shells source BASH_ENV.
            env_file = self.dir / "shell-env.sh"
            env_file.write_text(f'case ":$PATH:" in *":{self.shim_dir}:"*) ;; '
                                f'*) export PATH="{self.shim_dir}:$PATH" ;; esac\n', encoding="utf-8")
            child["CLAUDE_ENV_FILE"] = str(env_file)
            child["BASH_ENV"] = str(env_file)
        for name in ("TMPDIR", "TMP", "TEMP"):
            child[name] = str(self.tmp)
        inner = [sys.executable, "-I", "-S", "-B", EXEC_HELPER, *limit_args(self.sandbox.limits, self.cgroup, self.log)]
        for host in self.scope.proxy_hosts:
            inner += ["--proxy-host", host]
        # srt points TMPDIR at /tmp/claude, shared by every sandboxed process: use our private one.
        inner += [arg for name in ("TMPDIR", "TMP", "TEMP") for arg in ("--setenv", f"{name}={self.tmp}")]
        if "PYTHONPYCACHEPREFIX" not in child:
            # An agent with a shell runs the tests as it works: keep Python's bytecode out of the worktree
            # (and so out of the reviewed change) in a project whose .gitignore does not list it.
            inner += ["--setenv", f"PYTHONPYCACHEPREFIX={self.tmp / 'pycache'}"]
        if "GIT_CONFIG_COUNT" not in child:
            # srt masks its mandatory-deny names (.bashrc, .mcp.json, .vscode ...) with /dev/null inside the
            # sandbox; keep them out of `git status` / `git add -A` there.
            excludes = self.dir / "git-excludes"
            excludes.write_text("\n".join(f"/{name}" for name in MASKED_NAMES) + "\n", encoding="utf-8")
            inner += ["--setenv", "GIT_CONFIG_COUNT=1", "--setenv", "GIT_CONFIG_KEY_0=core.excludesFile",
                      "--setenv", f"GIT_CONFIG_VALUE_0={excludes}"]
        if self.sandbox.node and self.sandbox.library:
            outer = [self.sandbox.node, RUNNER, self.sandbox.library, str(self.settings_path), str(self.report), "--"]
        else:
            outer = [self.sandbox.srt, "--settings", str(self.settings_path), "--"]
        if self.cgroup is not None:  # the kernel counts srt and everything inside (sandbox_exec's outer mode)
            outer = [sys.executable, "-I", "-S", "-B", EXEC_HELPER, "--cgroup", str(self.cgroup),
                     "--report", str(self.limit_report), "--", *outer]
        return [*outer, *inner, "--", *argv], child

    def violations(self) -> tuple[str, ...]:
        """What the sandbox blocked, from the host-side reports (``sandbox_denials.read_violations``)."""
        context = RefusalContext(cwd=self.cwd, writable=self.scope.writable, log=str(self.log),
                                 home=str(Path(self.sandbox.home or os.path.expanduser("~"))))
        return read_violations(self.limit_report, self.report, context.classify)

    def denials(self) -> tuple[str, ...]:
        """The shims' refusals (in order; malformed lines skipped), then what the sandbox blocked."""
        self._import_once()
        failed = (f"objects of the agent's commits not imported: {self.import_error}",) if self.import_error else ()
        from ..core.redact import redact  # a push URL or an argument may carry a token

        return tuple(redact(line) for line in self._shim_denials() + self.violations() + failed)

    def _import_once(self) -> None:
        if self.objects is not None and not self._imported:
            self._imported = True
            self.import_error = self.import_objects()

    def _shim_denials(self) -> tuple[str, ...]:
        """The shims' refusals as the runtime confirmed them (``_confirm``), in order of arrival."""
        return tuple(self.channel.lines())

    def _confirm(self, line: str) -> str | None:
        """One record from the denial channel, re-decided with the shims' policy (``confirm_record``)."""
        return confirm_record(line, shim_level=self.shim_level, shim_branch=self.shim_branch,
                              watchdog=self.watchdog)

    def close(self) -> None:
        """Import the agent's new git objects (if any), then remove the cgroup and the private folder."""
        try:
            if getattr(self, "objects", None) is not None:
                self._import_once()
        finally:
            channel = getattr(self, "channel", None)
            if channel is not None:
                channel.close()
            cgroup = getattr(self, "cgroup", None)
            if cgroup is not None:
                from . import pids_cgroup

                pids_cgroup.remove(cgroup)
                self.cgroup = None
            shutil.rmtree(self.dir, ignore_errors=True)


def make_sandbox(mode: str, *, root: str | os.PathLike[str], level: str = "L1",
                 allow_domains: Sequence[str] = (), limits: SandboxLimits | None = None,
                 env: Mapping[str, str] = os.environ, home: str | None = None,
                 cgroups: bool = True) -> SrtSandbox | NoSandbox:
    """The project's sandbox for ``mode`` (``auto`` | ``srt`` | ``none``).

    ``srt`` with srt or one of its dependencies missing is a one-line ``ConfigError`` —
    never a silent downgrade; ``auto`` then returns ``NoSandbox`` with the reason.
    """
    if mode not in MODES:
        raise ConfigError(CONFIG_FILE, "sandbox", mode, valid=MODES)
    if mode == "none":
        return NoSandbox('sandbox = "none" in loop-runtime.toml')
    srt = find_srt(env)
    missing = missing_dependencies(env)
    problem = None
    if srt is None:
        problem = f"srt not found ({SRT_INSTALL}, or set LOOP_RUNTIME_SRT)"
    elif missing:
        problem = f"srt needs {', '.join(missing)} on PATH ({APT_INSTALL})"
    if problem is not None:
        if mode == "srt":
            raise ConfigError(CONFIG_FILE, "sandbox", "srt", message=f'sandbox = "srt" but {problem}')
        return NoSandbox(problem)
    assert srt is not None
    library = srt_library(srt)
    node = shutil.which("node", path=env.get("PATH")) if library else None
    return SrtSandbox(srt=srt, root=str(Path(root).resolve()), level=level, allow_domains=tuple(allow_domains),
                      limits=limits or SandboxLimits(), home=home or env.get("HOME"), node=node, library=library,
                      cgroups=cgroups)
