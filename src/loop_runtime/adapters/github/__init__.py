"""The GitHub connector: discovery with ETags, the pause label, draft PRs, repair observations.

``GithubSession`` is what a composition root (``runner``) builds for one tick when the
connector is on (``config.resolve``): it runs discovery once, lazily, and hands out the
pause labels (a kill input), the observation text (triage + fingerprint) and the
publisher (the act path). Importing this package does not import githubkit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.github_discovery import Discovery, pause_flags, render
from ...errors import DiscoveryUnavailable, GithubError
from .config import GithubSettings, Resolution, resolve

__all__ = ["GithubSession", "GithubSettings", "Resolution", "resolve", "pause_label_for"]

REPAIR_PATTERN = "issue-pr-repair"

def pause_label_for(root: Path) -> str:
    """``repair.yaml`` ``labels.pause`` when the file is there and valid, else ``loop-pause-all``."""
    from ...core.killswitch import ALL
    from ...formats.repair import parse_repair_contract

    path = Path(root) / "repair.yaml"
    try:
        return parse_repair_contract(path.read_text("utf-8"), file="repair.yaml").labels.pause
    except (OSError, UnicodeDecodeError):
        return ALL
    # a malformed repair.yaml is a ConfigError: the tick stops with its one line (never guessed around)


class GithubSession:
    def __init__(self, root: Path, settings: GithubSettings, pattern_id: str, *, secrets: tuple[str, ...] = (),
                 deadline_s: float = 120.0, backoff_s: float = 1.0) -> None:
        self.root, self.settings, self.pattern_id = Path(root), settings, pattern_id
        self.secrets = (*settings.secrets, *secrets)
        self.deadline_s, self.backoff_s = deadline_s, backoff_s
        self.pause_label = pause_label_for(self.root)
        self._result: Discovery | None = None
        self._plan: Any = None
        self._failure: str | None = None

    def client(self) -> Any:
        from .client import CACHE_FILE, GithubClient

        return GithubClient(self.settings, cache_path=self.root / CACHE_FILE, deadline_s=self.deadline_s,
                            backoff_s=self.backoff_s, secrets=self.secrets)

    def discovery(self) -> Discovery:
        """Discovery, once per tick; ``DiscoveryUnavailable`` when GitHub could not be read."""
        if self._result is not None:
            return self._result
        if self._failure is not None:
            raise DiscoveryUnavailable(self._failure)
        from .client import GithubAuthError, GithubUnreachable
        from .discovery import discover

        try:
            with self.client() as client:
                self._result = discover(client, self.pattern_id, pause_label=self.pause_label)
        except GithubUnreachable as e:
            self._failure = f"GitHub discovery failed: {e}"
            raise DiscoveryUnavailable(self._failure) from None
        except GithubAuthError:
            raise  # a token problem is a configuration error: one line, exit 1
        except GithubError as e:
            self._failure = f"GitHub discovery failed: {e}"
            raise DiscoveryUnavailable(self._failure) from None
        return self._result

    def pause_labels(self) -> tuple[tuple[str, str], ...]:
        """``(label, source)`` pairs for the kill switch; none when discovery failed (observe reports it)."""
        try:
            d = self.discovery()
        except DiscoveryUnavailable:
            return ()
        return pause_flags(d.findings)

    def observe(self) -> str:
        d = self.discovery()
        view = Discovery(d.repository, d.default_branch, tuple(f for f in d.findings if f.kind != "pause"), d.notes)
        text = render(view)
        if self.pattern_id == REPAIR_PATTERN:
            text += "\n\n" + self.repair_text()
        return text

    def repair_contract(self) -> Any:
        from ...formats.repair import RepairContract, parse_repair_contract

        path = self.root / "repair.yaml"
        if not path.is_file():
            return RepairContract()
        return parse_repair_contract(path.read_text("utf-8"), file="repair.yaml")

    def repair_plan(self) -> Any:
        """The R32 plan over the repair observation built from GitHub (``DiscoveryUnavailable`` on failure)."""
        if self._plan is None:
            from datetime import UTC, datetime

            from ...core.repair_plan import plan
            from .client import GithubAuthError, GithubUnreachable
            from .repair import observe_repair

            contract = self.repair_contract()
            try:
                with self.client() as client:
                    obs = observe_repair(client, contract, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            except GithubAuthError:
                raise
            except (GithubUnreachable, GithubError) as e:
                raise DiscoveryUnavailable(f"GitHub repair observation failed: {e}") from None
            self._plan = plan(obs, contract)
        return self._plan

    def repair_text(self) -> str:
        from .repair import describe

        return describe(self.repair_plan())

    def lease(self, item_id: str) -> Any:
        """issue-pr-repair: put the lock label on the item's issue while this tick works on it (R32).

        Returns the release callable, or None when the item names no issue. A failure to take or
        drop the label is reported, never fatal: the pattern's own lease already keeps two ticks
        of this project apart; the label tells other machines and humans.
        """
        from ...core.github_pr import issue_number

        number = issue_number(item_id)
        if self.pattern_id != REPAIR_PATTERN or number is None:
            return None
        from .repair import add_label, remove_label

        lock = self.repair_contract().labels.lock
        with self.client() as client:
            add_label(client, number, lock)

        def release() -> None:
            with self.client() as client:
                remove_label(client, number, lock)

        return release

    def publisher(self) -> Any:
        from .publish import GithubPublisher

        return GithubPublisher(self.root, self.settings, secrets=self.secrets, client_factory=self.client)
