"""Fleet I/O: read ``loop-fleet.toml``, find each repository on disk, clone/fetch ``url`` ones,
and open the portfolio ledger every process of the fleet shares.

Where things live (next to the fleet file): ``<work_dir>/repos/<name>`` holds the clones
of ``url`` repositories, ``<work_dir>/portfolio.db`` the portfolio ledger — a run store
whose pseudo-pattern ``portfolio`` carries the reserve → settle rows of every loop of
every repository, so two daemons (or a daemon and a hand-run ``run --fleet``) share one
cap exactly, by the same ``BEGIN IMMEDIATE`` protocol as a project's own budget.

What is refused, each as one line naming the file and field: a repository that is the
fleet's own folder (its work folder would be inside a repository a loop writes to), a
repository inside the work folder, two entries that are the same folder (also through a
symlink) or nest in each other, a path that is not a directory. A repository that
vanishes while the daemon runs only fails its own ticks.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GitError
from ..formats.fleet import FILE_NAME, Fleet, FleetRepo, parse_fleet, redact_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..ports.store import Store

__all__ = ["LoadedFleet", "PortfolioLedger", "RepoPlace", "load_fleet", "open_portfolio", "sync_repo"]

GIT_TIMEOUT_S = 300.0
LEDGER_NAME = "portfolio.db"


@dataclass(frozen=True)
class RepoPlace:
    """Where one fleet repository is on this machine; ``problem`` when it is not usable now."""

    repo: FleetRepo
    root: Path
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.repo.name


@dataclass(frozen=True)
class LoadedFleet:
    file: Path
    fleet: Fleet
    places: tuple[RepoPlace, ...]

    @property
    def folder(self) -> Path:
        return self.file.parent

    @property
    def work_dir(self) -> Path:
        return (self.folder / self.fleet.work_dir).resolve()

    @property
    def ledger_path(self) -> Path:
        return self.work_dir / LEDGER_NAME

    @property
    def portfolio_scope(self) -> str:
        """The portfolio's budget scope where several machines share it (Temporal): ``fleet:<name>``, the
        fleet file's ``name`` or else its folder's (so ``schedule sync --fleet`` and ``topup @portfolio``
        name the same budget workflow from any checkout of the fleet folder)."""
        import re

        name = self.fleet.name or re.sub(r"[^A-Za-z0-9._-]+", "-", self.folder.name).strip("-")[:64] or "fleet"
        return f"fleet:{name}"

    def place(self, name: str) -> RepoPlace:
        for p in self.places:
            if p.name == name:
                return p
        raise ConfigError(str(self.file), "repo", name, valid=[p.name for p in self.places])

    def place_of(self, root: Path) -> RepoPlace | None:
        """The fleet repository whose folder contains ``root`` (a hand-run ``run --fleet`` inside one)."""
        root = Path(root).resolve()
        for p in self.places:
            if root == p.root or p.root in root.parents:
                return p
        return None

    def problems(self) -> list[str]:
        return [f"{self.file.name}: repos[{p.repo.index}] ({p.name}): {p.problem}" for p in self.places if p.problem]


def load_fleet(path: str | os.PathLike[str]) -> LoadedFleet:
    """Parse the fleet file and place each repository (no clone, no network: see ``sync_repo``)."""
    file = Path(path).expanduser()
    shown = str(path)
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError("--fleet", "fleet", shown, message=f"fleet file not found: {shown!r}") from None
    except IsADirectoryError:
        raise ConfigError("--fleet", "fleet", shown, message=f"fleet file is a directory: {shown!r}") from None
    except UnicodeDecodeError:
        raise ConfigError(shown, "text", None, message="not UTF-8 text") from None
    except OSError as e:
        raise ConfigError("--fleet", "fleet", shown,
                          message=f"cannot read fleet file {shown!r}: {e.strerror}") from None
    file = file.resolve()
    fleet = parse_fleet(text, file=file.name)
    folder = file.parent
    work = (folder / fleet.work_dir).resolve()
    if folder not in work.parents:
        raise ConfigError(file.name, "work_dir", fleet.work_dir,
                          message=f"work_dir invalid: {fleet.work_dir!r} (must be a folder below the fleet file's)")
    places = [_place(file.name, folder, work, r) for r in fleet.repos]
    _no_overlap(file.name, places)
    return LoadedFleet(file=file, fleet=fleet, places=tuple(places))


def _place(fname: str, folder: Path, work: Path, r: FleetRepo) -> RepoPlace:
    at = f"repos[{r.index}]"
    if r.url is not None:
        clone = work / "repos" / r.name
        return RepoPlace(r, clone, None if (clone / ".git").exists() else "not cloned yet (start --fleet clones it)")
    root = (folder / (r.path or "")).resolve()
    if root == folder:
        raise ConfigError(fname, f"{at}.path", r.path, message=f"{at}.path invalid: {r.path!r} (the fleet file's own "
                                                               "folder: put loop-fleet.toml beside the repositories)")
    if root == work or work in root.parents or root in work.parents:
        raise ConfigError(fname, f"{at}.path", r.path,
                          message=f"{at}.path invalid: {r.path!r} (overlaps the fleet's work folder)")
    if not root.is_dir():
        return RepoPlace(r, root, f"{r.path!r} is not a directory")
    return RepoPlace(r, root)


def _no_overlap(fname: str, places: list[RepoPlace]) -> None:
    """The same folder twice (a symlink, ``a/../a``) or one inside another: the loops would run twice."""
    for i, a in enumerate(places):
        for b in places[:i]:
            if a.root == b.root or b.root in a.root.parents or a.root in b.root.parents:
                how = "the same folder as" if a.root == b.root else "nested with"
                field = f"repos[{a.repo.index}].{'path' if a.repo.path is not None else 'url'}"
                raise ConfigError(fname, field, a.repo.where,
                                  message=f"{field} invalid: {a.repo.where!r} ({how} repos[{b.repo.index}])")


# --------------------------------------------------------------------------- git for url repositories


def _git(args: list[str], cwd: Path | None, url: str) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    try:
        p = subprocess.run(["git", "-c", "protocol.ext.allow=never", *args], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GitError(f"git {args[0]} {redact_url(url)}: {type(e).__name__}") from None
    if p.returncode != 0:
        from ..core.redact import clip, redact

        detail = redact(clip(" ".join((p.stderr or p.stdout).split()), 300)).replace(url, redact_url(url))
        raise GitError(f"git {args[0]} {redact_url(url)} failed: {detail}")


def sync_repo(place: RepoPlace) -> RepoPlace:
    """Clone a ``url`` repository into the work folder, or fetch it and fast-forward when it can.

    A fast-forward that cannot happen (a loop committed locally) is left alone: the
    loops keep running on the clone as it is. Local ``path`` repositories are untouched.
    """
    url = place.repo.url
    if url is None:
        return place
    root = place.root
    if not (root / ".git").exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        from .store.sqlite import ensure_gitignore

        ensure_gitignore(root.parent.parent / ".gitignore")
        _git(["clone", "--quiet", "--", url, str(root)], None, url)
    else:
        _git(["fetch", "--quiet", "origin"], root, url)
        try:
            _git(["merge", "--ff-only", "--quiet", "@{upstream}"], root, url)
        except GitError:
            pass  # local commits or a detached clone: keep what is there
    return RepoPlace(place.repo, root)


# --------------------------------------------------------------------------- the portfolio ledger


@dataclass(frozen=True)
class PortfolioLedger:
    """The fleet's shared ledger: a run store plus the fleet's caps and which repository this is.

    Tokens are kept under ``portfolio``; with ``portfolio_daily_usd`` dollars are kept too, under
    ``portfolio-usd`` in micro-dollars (a backend's reported cost, else ``core.budget``'s price table).
    """

    store: Store
    cap: int | None
    repo: str | None = None
    usd_cap: float | None = None

    def scope(self, tick_id: str, backend: str = "mock") -> list[Any]:
        from ..core.budget import price_per_token_usd, usd_cap_units
        from .store.budget import PORTFOLIO, PORTFOLIO_USD, BudgetScope

        ref = f"{self.repo or '-'}/{tick_id}"
        scopes = [BudgetScope(self.store, PORTFOLIO, self.cap, ref=ref)]
        if self.usd_cap is not None:
            scopes.append(BudgetScope(self.store, PORTFOLIO_USD, usd_cap_units(self.usd_cap), ref=ref,
                                      per_token=price_per_token_usd(backend) * 1_000_000, per_usd=1_000_000))
        return scopes

    def for_repo(self, name: str) -> PortfolioLedger:
        return PortfolioLedger(self.store, self.cap, name, self.usd_cap)

    def status(self, now: Any) -> Any:
        """The tighter of the token and the dollar ledgers (``core.budget.tightest``)."""
        from ..core.budget import tightest, usd_cap_units
        from .store.budget import PORTFOLIO, PORTFOLIO_USD, scope_status

        tokens = scope_status(self.store, PORTFOLIO, self.cap, now)
        if self.usd_cap is None:
            return tokens
        return tightest([tokens, scope_status(self.store, PORTFOLIO_USD, usd_cap_units(self.usd_cap), now)])

    def labelled(self, now: Any) -> list[tuple[str, Any]]:
        """Each portfolio ledger with the words ``status`` puts before its verdict."""
        from ..core.budget import usd_cap_units
        from .store.budget import PORTFOLIO, PORTFOLIO_USD, SCOPE_LABELS, scope_status

        out = [(SCOPE_LABELS[PORTFOLIO], scope_status(self.store, PORTFOLIO, self.cap, now))]
        if self.usd_cap is not None:
            out.append((SCOPE_LABELS[PORTFOLIO_USD],
                        scope_status(self.store, PORTFOLIO_USD, usd_cap_units(self.usd_cap), now)))
        return out

    def usd_spent(self, now: Any) -> float:
        from .store.budget import PORTFOLIO_USD, scope_status

        return scope_status(self.store, PORTFOLIO_USD, None, now).used / 1_000_000


def open_portfolio(loaded: LoadedFleet) -> PortfolioLedger:
    from .store.sqlite import RunStore, ensure_gitignore

    loaded.work_dir.mkdir(parents=True, exist_ok=True)
    ensure_gitignore(loaded.work_dir / ".gitignore")
    return PortfolioLedger(RunStore(loaded.ledger_path, secrets=()), loaded.fleet.portfolio_daily_cap,
                           usd_cap=loaded.fleet.portfolio_daily_usd)


def portfolio_if_exists(loaded: LoadedFleet) -> PortfolioLedger | None:
    """For read-only commands (``status --fleet``): never create the ledger just to read it."""
    if not loaded.ledger_path.exists():
        return None
    from .store.sqlite import RunStore

    return PortfolioLedger(RunStore(loaded.ledger_path, secrets=()), loaded.fleet.portfolio_daily_cap,
                           usd_cap=loaded.fleet.portfolio_daily_usd)


def fleet_file(flag: str | None, cwd: Path | None = None) -> Path | None:
    """``--fleet FILE``, else ``loop-fleet.toml`` in the current folder, else None."""
    if flag:
        return Path(flag)
    candidate = (cwd or Path.cwd()) / FILE_NAME
    return candidate if candidate.is_file() else None
