"""The budget circuit-breaker (R17): reserve before a call, settle after, per UTC day.

Why reserve → settle rather than check → spend: an agent call's cost is only known
after it ran. Reserving ``min(remaining, per-call cap)`` first and handing that number
to the backend as a hard ceiling means two calls can never both see the same headroom,
and a runaway agent is stopped at its reservation instead of at the end of the day.

Thresholds: at ≥80% of today's cap a tick is forced down to L1 (report-only); at ≥100%
no tick runs. Days are UTC; spend rolls over at 00:00 UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from ..errors import BudgetExceeded
from ..ports import BudgetStatus, Reservation
from .schedule import utc_day  # one definition of "the UTC day" for budgets and schedules

__all__ = ["PRICE_USD_PER_MTOK", "BudgetBreaker", "BudgetVerdict", "assess", "grantable", "price_per_token_usd",
           "settle_call", "tightest", "todays_cap", "usd_cap_units", "utc_day"]

DOWNGRADE_AT = 0.80
HALT_AT = 1.00


@dataclass(frozen=True)
class BudgetVerdict:
    """What the budget allows a tick to do right now."""

    halt: bool
    level_cap: str | None  # "L1" at ≥80%
    reason: str


PRICE_USD_PER_MTOK: dict[str, float] = {
    "claude": 6.00,   # Claude Sonnet: $3 in / $15 out per 1M tokens, blended at a 4:1 input:output mix
    "codex": 3.50,    # GPT-5-codex: $1.25 in / $10 out, same mix
    "openai": 3.50,   # an OpenAI-compatible endpoint: priced as codex unless it reports its cost
    "mock": 3.00,     # the mock backend: a nominal price, so a USD cap can be tried out offline
}
"""USD per million tokens when a backend reports no cost of its own (a fleet's ``portfolio_daily_usd``).

A backend's reported cost (Claude Code's ``total_cost_usd``) always wins over this table; the
table only prices what nobody priced. Blended rates: agent calls read far more than they write."""
DEFAULT_PRICE_USD_PER_MTOK = 6.00


def price_per_token_usd(backend: str) -> float:
    """The table's USD per token for ``backend`` (unknown backends at the highest listed rate)."""
    return PRICE_USD_PER_MTOK.get(backend, DEFAULT_PRICE_USD_PER_MTOK) / 1_000_000


def usd_cap_units(usd: float) -> int:
    """A dollar cap in the ledger's unit (micro-dollars, whole numbers)."""
    return int(round(usd * 1_000_000))


def settle_call(ledger: object, reservation: Reservation, actual: int, now: datetime,
                cost_usd: float | None = None) -> None:
    """Settle one agent call, handing the backend's reported cost to ledgers that price in dollars."""
    if cost_usd is not None and getattr(ledger, "accepts_cost", False):
        ledger.settle(reservation, actual, now, cost_usd=cost_usd)  # type: ignore[attr-defined]
    else:
        ledger.settle(reservation, actual, now)  # type: ignore[attr-defined]


def todays_cap(cap: int | None, topups: int = 0) -> int | None:
    """The cap in force today at any level (loop, repository, portfolio): configured + today's top-ups.

    One function so the engine, ``status`` and the dashboard can never disagree on it;
    no configured cap stays "no cap" whatever was topped up.
    """
    return None if cap is None else cap + max(0, int(topups))


def grantable(amount: int, cap: int | None, used: int) -> int:
    """How much of a requested reservation fits under ``cap`` given ``used`` (≤ 0: nothing)."""
    return amount if cap is None else min(amount, cap - used)


def tightest(statuses: Iterable[BudgetStatus]) -> BudgetStatus:
    """Of several scopes that all apply (loop, repository, portfolio), the one nearest its cap.

    ``assess`` on the result is the verdict of all of them together: a scope at 100%
    halts even when the others are empty, one at 80% downgrades every loop under it.
    A scope without a cap never wins over one with a cap.
    """
    best: BudgetStatus | None = None
    for st in statuses:
        if best is None or (st.cap and (not best.cap or st.fraction > best.fraction)):
            best = st
    if best is None:
        raise ValueError("tightest() needs at least one budget status")
    return best


def assess(status: BudgetStatus) -> BudgetVerdict:
    """≥100% → halt; ≥80% → L1; an unknown cap never blocks (R4)."""
    if not status.cap:
        return BudgetVerdict(False, None, "budget unknown (no cap)")
    pct = status.used / status.cap
    if pct >= HALT_AT:
        return BudgetVerdict(True, None, f"budget: {status.used:,} / {status.cap:,} tokens spent today (≥100%)")
    if pct >= DOWNGRADE_AT:
        return BudgetVerdict(False, "L1", f"budget: {status.used:,} / {status.cap:,} tokens today (≥80% → L1)")
    return BudgetVerdict(False, None, f"budget: {status.used:,} / {status.cap:,} tokens today")


def judge(own: BudgetStatus, shared: Sequence[tuple[str, BudgetStatus]] = ()) -> BudgetVerdict:
    """The verdict on a loop's budget and every scope above it (``("repository", …)``, ``("portfolio", …)``).

    The tightest scope decides (``tightest``); when it is a shared one its label leads the reason, so a
    human reads "portfolio budget: … ≥80%" and knows why a loop whose own spend is low runs at L1.
    """
    scopes = [own, *(st for _, st in shared)]
    chosen = tightest(scopes)
    verdict = assess(chosen)
    if chosen is not own and chosen.cap:
        label = shared[scopes.index(chosen) - 1][0]
        verdict = BudgetVerdict(verdict.halt, verdict.level_cap, f"{label} {verdict.reason}")
    return verdict


class BudgetBreaker:
    """In-memory budget for one pattern: the reference implementation of ``ports.BudgetLedger``.

    ``spent`` seeds today's spend (e.g. from the run log) so a fresh process does not
    forget what earlier ones spent.
    """

    def __init__(self, cap: int | None, *, spent: int = 0, day: date | None = None, topup: int = 0) -> None:
        self.cap = cap
        self._spent = spent
        self._day = day
        self._topup = topup
        self._open: dict[int, int] = {}
        self._next_id = 1

    def _roll(self, now: datetime) -> None:
        today = utc_day(now)
        if self._day is None:
            self._day = today
        elif today != self._day:
            self._day, self._spent, self._topup = today, 0, 0

    def _cap(self) -> int | None:
        return todays_cap(self.cap, self._topup)

    def status(self, now: datetime) -> BudgetStatus:
        self._roll(now)
        return BudgetStatus(
            day=str(self._day), cap=self._cap(), spent=self._spent, reserved=sum(self._open.values())
        )

    def reserve(self, amount: int, now: datetime) -> Reservation | None:
        """Grant ``min(amount, remaining)``; None when nothing remains."""
        st = self.status(now)
        grant = grantable(amount, st.cap, st.used)
        if grant <= 0:
            return None
        res = Reservation(self._next_id, grant)
        self._next_id += 1
        self._open[res.id] = grant
        return res

    def reserve_or_raise(self, amount: int, now: datetime) -> Reservation:
        res = self.reserve(amount, now)
        if res is None:
            raise BudgetExceeded(f"budget exhausted: {self.status(now).used:,} / {self._cap():,} tokens today")
        return res

    def settle(self, reservation: Reservation, actual: int, now: datetime) -> None:
        """Record what the call really used; settling twice is a no-op."""
        if self._open.pop(reservation.id, None) is None:
            return
        self._roll(now)
        self._spent += max(0, int(actual))

    def topup(self, tokens: int) -> None:
        self._topup += tokens
