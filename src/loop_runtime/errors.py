"""One error tree for loop-runtime, mapped at the seams.

    LoopError
    ├── ConfigError        a file, field or flag is wrong; names file, field, value (and valid values)
    ├── BudgetExceeded     a reservation would pass today's cap
    ├── KillSwitchEngaged  a kill switch is set; nothing may run
    ├── GateDenied         the path policy refused an action
    ├── LeaseHeld          another process is ticking this pattern
    └── AdapterError       real I/O failed
        ├── BackendError   an agent CLI/API failed (missing binary, credentials, garbage output)
        │   └── AgentNotStarted  no agent process/request ever started: nothing to charge
        ├── GitError       a git command failed
        ├── StoreError     the SQLite run store failed
        ├── GithubError    the GitHub API refused or failed (one line naming the token source)
        └── DiscoveryUnavailable  discovery could not run: the tick is report-only

The CLI turns every ``LoopError`` into one line on stderr and exit code 1 (or 2 for
the human-needed ones); a ``CalledProcessError`` or ``sqlite3.Error`` never reaches a user
because adapters convert them here.
"""

from __future__ import annotations


class LoopError(Exception):
    """Base of every error loop-runtime raises on purpose."""

    exit_code = 1


class ConfigError(LoopError):
    """Bad input in a user's file or flag.

    The message is one line: ``<file>: <field> invalid: <value>`` followed by the valid
    values when there is a closed set, so a user can fix it without reading code.
    """

    def __init__(
        self,
        file: str,
        field: str,
        value: object = None,
        *,
        valid: object = None,
        message: str | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.value = value
        self.valid = valid
        if message is None:
            message = f"{field} invalid: {value!r}"
            if valid is not None:
                if isinstance(valid, (list, tuple, set, frozenset)):
                    valid = ", ".join(str(v) for v in valid)
                message += f" (valid: {valid})"
        self.detail = message
        super().__init__(f"{file}: {message}" if file else message)


class BudgetExceeded(LoopError):
    """Today's token cap is spent (or a reservation would pass it): a human is needed."""

    exit_code = 2


class KillSwitchEngaged(LoopError):
    """A kill switch is set; the loop must not run until a human clears it."""

    exit_code = 0


class GateDenied(LoopError):
    """The path policy refused an action."""

    exit_code = 2


class LeaseHeld(LoopError):
    """Another process holds the lease for this pattern."""

    exit_code = 1


class AdapterError(LoopError):
    """Real I/O failed in an adapter."""


class BackendError(AdapterError):
    """An agent backend failed: missing binary or credentials, bad output, crash."""


class AgentNotStarted(BackendError):
    """The backend failed before any agent process or request started (missing binary, spawn
    failure, missing credentials, bad working directory): no token can have been spent, so
    the reservation is settled at 0 instead of failing closed."""


class GitError(AdapterError):
    """A git command failed."""


class StoreError(AdapterError):
    """The runtime store failed."""


class GithubError(AdapterError):
    """The GitHub API refused or failed a request; the message is one line, the token never in it."""


class GithubRefused(GithubError):
    """The API refused a write (405/409/422: branch protection, a conflict, validation): a human decides."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DiscoveryUnavailable(AdapterError):
    """Discovery could not see the world this tick (network, 5xx past the deadline): the tick reports
    the reason and takes no action on stale data."""


def not_utf8(file: str, exc: UnicodeDecodeError) -> ConfigError:
    """A file that is not UTF-8, said with where: ``STATE.md: not UTF-8 text: byte 0xff at line 12, column 3``.

    The user must re-save the file as UTF-8; the line tells them where the stray byte is.
    """
    data = exc.object if isinstance(exc.object, (bytes, bytearray)) else b""
    before = bytes(data[:exc.start])
    line = before.count(b"\n") + 1
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    bad = bytes(data[exc.start:exc.start + 1])
    where = f"byte 0x{bad.hex()} at line {line}, column {column}" if bad else f"at byte {exc.start}"
    return ConfigError(file, "encoding", bad or None, message=f"not UTF-8 text: {where} (save it as UTF-8)")
