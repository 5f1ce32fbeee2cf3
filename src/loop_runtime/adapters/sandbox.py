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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..ports import READ_ONLY_WRITE, SandboxScope

__all__ = ["DEPENDENCIES", "HOME_SECRETS", "MODES", "NoSandbox", "SandboxLimits", "SrtSandbox", "find_srt",
           "endpoint_host", "make_sandbox", "missing_dependencies"]

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

PROCESS_ALLOWANCE = 48
"""Tasks (processes and threads) of srt itself inside the pids cgroup: node, its proxies, bubblewrap, socat."""
WATCH_MARGIN = 32
HOST_GROWTH = 256  # room for the user's other processes to grow while a sandboxed one runs


def _processes_of_this_user() -> int:
    """How many processes our real uid already has on the host: ``RLIMIT_NPROC`` counts them all, not
    only the sandbox's, so a limit set without them binds at once on a busy machine (forks fail with
    EAGAIN below the watchdog's threshold and a fork bomb stalls instead of being killed)."""
    uid, count = os.getuid(), 0
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return 0
    for name in names:
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                count += 1
        except OSError:
            continue
    return count

EXEC_HELPER = str(Path(__file__).with_name("sandbox_exec.py"))
RUNNER = str(Path(__file__).resolve().parents[1] / "data" / "srt_run.mjs")


def srt_library(srt: str) -> str | None:
    """srt's ``dist`` folder (the library ``srt_run.mjs`` drives), when ``srt`` is an npm install."""
    dist = Path(os.path.realpath(srt)).parent
    needed = ("index.js", "utils/config-loader.js", "utils/shell-quote.js")
    return str(dist) if all((dist / n).is_file() for n in needed) else None


@dataclass(frozen=True)
class SandboxLimits:
    """Per-process limits inside the sandbox (``sandbox_exec``): CPU seconds, MiB, processes, file MiB."""

    cpu_s: int = 3600
    memory_mb: int = 8192
    processes: int = 512
    file_mb: int = 2048


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


class DenialChannel:
    """The shims' write-only way to tell the runtime what they refused: a FIFO the runtime drains.

    Why not a log file: whatever the shims can write inside the sandbox, the agent can write
    too — a file it could truncate or rewrite. The FIFO sits in the process's private folder,
    which is read-only inside (it cannot be removed or replaced), with mode ``0222``: nobody
    may open it for reading, and the sandboxed command holds no capability to override that
    (``sandbox_exec.drop_capabilities``). A record, once written, is in the runtime's hands: a
    thread here drains it while the command runs (a flood cannot block a shim's write), each
    record is one write of at most PIPE_BUF bytes starting with a newline (never interleaved
    with, nor glued onto, anything the agent wrote). What the agent can still do — write a
    record of its own — is handled by ``confirm``, which re-decides each record as it arrives
    (``SrtProcess._confirm``): only confirmed denials are kept (at most ``MAX_LINES``, distinct), so a
    flood of junk or of forged records of allowed calls cannot crowd out a real one.
    """

    MAX_LINES = 100
    MAX_PENDING = 65536

    def __init__(self, path: Path, confirm: Callable[[str], str | None]) -> None:
        import threading

        os.mkfifo(path, 0o600)
        self.path = path
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # a writer of our own: no EOF
        os.chmod(path, 0o222)
        self._pending = b""
        self._confirm = confirm
        self._lines: dict[str, None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="sandbox-denials", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        import select

        while not self._stop.is_set():
            fd = self.fd
            if fd is None:
                return
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                return
            if ready:
                self._read_available()

    def _read_available(self) -> None:
        with self._lock:
            while self.fd is not None:
                try:
                    chunk = os.read(self.fd, 65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                if not chunk:
                    return
                *complete, self._pending = (self._pending + chunk).split(b"\n")
                if len(self._pending) > self.MAX_PENDING:
                    self._pending = b""  # a line that never ends is nobody's record
                for raw in complete:
                    if raw.strip() and len(self._lines) < self.MAX_LINES:
                        shown = self._confirm(raw.decode("utf-8", "replace").strip())
                        if shown:
                            self._lines.setdefault(shown, None)

    def lines(self) -> list[str]:
        """Every confirmed denial so far (what is still in the pipe is read first)."""
        self._read_available()
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


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
            self.cgroup = self._make_cgroup()
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

    def _make_cgroup(self) -> Path | None:
        if not self.sandbox.cgroups:
            return None
        from . import pids_cgroup

        return pids_cgroup.create(self.sandbox.limits.processes + PROCESS_ALLOWANCE)

    # -- what the process may touch

    def _level(self) -> str:
        """The shims' level: for a writable agent the lower of the configured level and its tick's effective
        one (a tick held down to L2 gets no L3 `gh pr create`), else read-only (L1)."""
        if not (self.scope.writable and self.scope.purpose == "agent"):
            return "L1"
        levels = ("L0", "L1", "L2", "L3")
        configured, effective = self.sandbox.level, self.scope.level or self.sandbox.level
        if configured not in levels or effective not in levels:
            return "L1"  # an unknown level: the most restrictive
        return min(configured, effective, key=levels.index)

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
                writable, denied = self._git_writable(cwd)
                allow_write += writable
                deny_write += denied
        hosts = sorted({*self.sandbox.allow_domains, *self.scope.hosts})
        return {
            "network": {"allowedDomains": hosts, "deniedDomains": []},
            "filesystem": {"denyRead": deny_read, "allowRead": allow_read, "allowWrite": allow_write,
                           "denyWrite": deny_write},
        }

    def _git_writable(self, cwd: Path) -> tuple[list[str], list[str]]:
        """(writable, write-denied) paths for a commit in a linked worktree.

        Writable: its own git folder (index, its reflog, lock files) and ``refs/heads/loop/``.
        Not the shared object store — as root, an agent could overwrite an existing object
        there and change history without moving a ref. New objects go to a private store
        (the git shim sets ``GIT_OBJECT_DIRECTORY`` for calls in the worktree, with the real
        store as an alternate; a git run past the shim cannot write objects) and are copied in by
        ``close()`` through ``git unpack-objects``, which names each by its verified hash and
        never overwrites. Denied inside the git folder: ``HEAD``, ``commondir`` and ``gitdir``
        (re-pointed, they would aim the runtime's own git calls at a config of the agent's).
        """
        try:
            out = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir"],
                                 cwd=cwd, capture_output=True, text=True, timeout=30, check=True,
                                 stdin=subprocess.DEVNULL).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return [], []
        if len(out) != 2:
            return [], []
        git_dir, common = Path(out[0]), Path(out[1])
        if git_dir == common:
            return [], []  # not a linked worktree: no commits from inside the sandbox
        self.common_dir = common
        self.objects = self.rw / "objects"
        for sub in ("info", "pack"):
            (self.objects / sub).mkdir(parents=True, exist_ok=True)
        paths = [git_dir, common / "refs" / "heads" / "loop", common / "logs" / "refs" / "heads" / "loop"]
        for path in paths:
            with contextlib.suppress(OSError):
                path.mkdir(parents=True, exist_ok=True)
        denied = [str(git_dir / name) for name in ("HEAD", "commondir", "gitdir", "config.worktree")
                  if (git_dir / name).exists()]
        denied += self._other_loop_refs(cwd, common)
        return [str(p) for p in paths], denied

    @staticmethod
    def _other_loop_refs(cwd: Path, common: Path) -> list[str]:
        """Other attempts' branches (and reflogs) under the writable ``refs/heads/loop/``: never writable.

        Without this, a git run past the shim could move another attempt's branch — one held for a
        human's approval — to a commit of this agent's. (A ref that exists only in ``packed-refs`` has
        no file to protect; the runtime's own branches are created loose.)"""
        try:
            proc = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/heads/loop/"], cwd=cwd,
                                  capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            own = subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return []
        out: list[str] = []
        for ref in proc.stdout.split():
            if ref == own or not ref.startswith("refs/heads/loop/"):
                continue
            for base in (common, common / "logs"):
                path = base / ref
                if path.is_file():
                    out.append(str(path))
        return out

    def import_objects(self) -> str | None:
        """Copy the objects the agent's commits made into the repository; an error text, or None."""
        if self.objects is None or self.common_dir is None:
            return None
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        private = {**env, "GIT_OBJECT_DIRECTORY": str(self.objects)}
        try:
            ids = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
                                 cwd=self.common_dir, env=private, capture_output=True, timeout=120,
                                 stdin=subprocess.DEVNULL)
            if ids.returncode != 0 or not ids.stdout.strip():
                return None if ids.returncode == 0 else ids.stderr.decode(errors="replace")[-300:]
            pack = subprocess.run(["git", "pack-objects", "--stdout", "-q"], cwd=self.common_dir, env=private,
                                  input=ids.stdout, capture_output=True, timeout=300)
            if pack.returncode != 0:
                return pack.stderr.decode(errors="replace")[-300:]
            unpacked = subprocess.run(["git", "unpack-objects", "-q"], cwd=self.common_dir, env=env,
                                      input=pack.stdout, capture_output=True, timeout=300)
            if unpacked.returncode != 0:
                return unpacked.stderr.decode(errors="replace")[-300:]
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        return None

    @staticmethod
    def _git(args: list[str], cwd: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    def _branch(self) -> str | None:
        return self._git(["symbolic-ref", "-q", "--short", "HEAD"], self.cwd)

    def _base(self) -> str | None:
        """The attempt's base commit: given, or where its branch forked from the checkout's branch."""
        if self.sandbox.base_commit:
            return self.sandbox.base_commit
        base_branch = self._git(["symbolic-ref", "-q", "--short", "HEAD"], self.sandbox.root)
        return self._git(["merge-base", "HEAD", base_branch], self.cwd) if base_branch else None

    def _write_shims(self, path: str) -> None:
        from .shim import script

        tools = {t: shutil.which(t, path=path) for t in ("git", "gh")}
        self.shim_level, self.shim_branch = self._level(), self._branch()
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
        limits = self.sandbox.limits
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
        inner = [sys.executable, "-I", "-S", "-B", EXEC_HELPER, "--cpu", str(limits.cpu_s),
                 "--data", str(limits.memory_mb * 1024 * 1024), "--fsize", str(limits.file_mb * 1024 * 1024)]
        if self.cgroup is None:
            # No pids cgroup: the namespace watchdog holds the process count. RLIMIT_NPROC (binding where the
            # sandbox's user is not real root) sits above the watchdog's threshold so the watchdog sees it crossed.
            nproc = limits.processes + WATCH_MARGIN + _processes_of_this_user() + HOST_GROWTH
            inner += ["--nproc", str(nproc), "--watch", str(limits.processes),
                      "--log", str(self.log)]
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
        """What the sandbox blocked (writes refused, connections denied, the process limit), read from
        reports written on the host side: srt's own monitor (``srt_run.mjs``) and ``sandbox_exec``."""
        seen: dict[str, None] = {}
        try:
            limit = json.loads(self.limit_report.read_text(encoding="utf-8"))
            if isinstance(limit, dict) and limit.get("limit") == "processes":
                seen[f"blocked: process limit exceeded ({str(limit.get('max'))[:20]} processes and threads)"] = None
        except (OSError, ValueError):
            pass
        try:
            data = json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return tuple(seen)
        lines = data.get("violations") if isinstance(data, dict) else None
        if not isinstance(lines, list):
            return tuple(seen)
        for line in lines:
            if isinstance(line, str) and not self._expected(line):
                prefix = READ_ONLY_WRITE if self._own_read_only_write(line) else "blocked: "
                seen.setdefault(f"{prefix}{line[:300]}", None)
        return tuple(seen)[:100]

    def _own_read_only_write(self, line: str) -> bool:
        """A read-only agent's (or tool's) refused write inside its own cwd: caches, ``__pycache__``."""
        if self.scope.writable or not line.startswith("deny "):
            return False
        op, _, path = line.partition(" ")[2].partition(" ")
        return op != "network-outbound" and (path == self.cwd or path.startswith(self.cwd + os.sep))

    def _expected(self, line: str) -> bool:
        """Refusals that are no escape attempt: the CLI's own home state and caches, ``mkdir`` of a folder
        that exists, and paths the monitor could not resolve (relative to a descriptor, ``/proc/self/fd``)."""
        op, _, path = line.partition(" ")[2].partition(" ")
        if not line.startswith("deny ") or op == "network-outbound":
            return False
        if path == "/sys/kernel/debug/tracing/trace_marker":
            return True  # Bun's runtime (opencode) probes the kernel trace log at start: no escape attempt
        if path.startswith("/proc/self/fd/") or (op == "mkdir" and os.path.isdir(path)) or path == str(self.log):
            return True  # (the denial channel is opened for writing where nothing else is writable)
        home = str(Path(self.sandbox.home or os.path.expanduser("~")))
        return any(path == f"{home}/{n}" or path.startswith(f"{home}/{n}")
                   for n in (".claude", ".cache", ".npm", ".config/claude", ".local/state"))

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
        """One record from the denial channel, re-decided here with the shims' own policy.

        Anything inside the sandbox can write to the channel, so a record is believed only as far
        as the policy confirms it: a git/gh call the policy denies at the shims' level (writing
        that record is no different from making the call), a gate refusal of a call that needs
        the gate, the namespace watchdog's process limit. Anything else is dropped, and the text
        reported is the policy's reason, never the record's.
        """
        from ..core.shim_policy import decide

        try:
            entry = json.loads(line)
            tool = entry.get("tool")
            argv = [str(a) for a in entry.get("argv", [])] if tool in ("git", "gh") else []
        except (ValueError, AttributeError, TypeError):
            return None
        if tool == "sandbox":
            ok = entry.get("limit") == "processes" and self.watchdog
            return "sandbox: process limit exceeded (namespace watchdog): all killed" if ok else None
        if tool not in ("git", "gh") or self.shim_level is None:
            return None
        shown = f"{tool} {' '.join(argv)}"[:200]
        decision = decide(tool, argv, level=self.shim_level, branch=self.shim_branch)
        if not decision.allowed:
            return f"{shown}: {decision.reason}"[:400]
        if decision.needs_gate and str(entry.get("reason", "")).startswith("gate does not allow"):
            return f"{shown}: gate does not allow {decision.needs_gate}"
        if entry.get("clipped") is True:
            return f"{shown}: denied (arguments clipped in the record)"
        return None

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
