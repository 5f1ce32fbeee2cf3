"""The repair plan (R32, ``loop-gate repair-plan``) computed natively from a repair observation.

Order of checks (reference §4.3):

1. any ``pauseIssues`` → ``paused``;
2. any target carrying the lock label → ``locked`` (another tick leases it);
3. each target: a linked PR means waiting; a failed reproduction, a flake or
   infrastructure failure, conflicting attempt labels, attempts ≥ max, a sensitive
   label or a sensitive path each mean human-required;
4. candidates are scored (confirmed bug issue without linked PR → ``repair-issue``/change
   500; PR with actionable review → ``address-review`` 400; PR failing a deterministic
   check → ``repair-check`` 300; bug issue with unknown reproduction → ``diagnose-issue``/
   diagnose 200; PR failing an unknown-class check → ``diagnose-check``/diagnose 100),
   plus ``(len(priority) − index)·10`` for the highest priority label; a PR whose branch is
   not owned runs in mode ``propose``;
5. the highest score wins; ties go to the oldest ``updatedAt``.

States: ``selected | idle | paused | locked | human-required``; exit 0 for selected/idle, else 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..formats.repair import RepairContract, RepairObservation, RepairTarget
from .gate import glob_match

EXIT = {"selected": 0, "idle": 0, "paused": 2, "locked": 2, "human-required": 2}


@dataclass(frozen=True)
class TargetVerdict:
    key: str
    status: str  # candidate | waiting | human-required
    reasons: tuple[str, ...] = ()
    action: str | None = None
    mode: str | None = None
    score: int = 0


@dataclass(frozen=True)
class RepairPlan:
    state: str
    reason: str
    target: RepairTarget | None = None
    action: str | None = None
    mode: str | None = None
    score: int = 0
    verdicts: tuple[TargetVerdict, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return EXIT[self.state]

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state, "reason": self.reason,
            "target": None if self.target is None else {"type": self.target.type, "number": self.target.number,
                                                        "title": self.target.title},
            "action": self.action, "mode": self.mode, "score": self.score,
            "targets": [{"target": v.key, "status": v.status, "reasons": list(v.reasons), "action": v.action,
                         "mode": v.mode, "score": v.score} for v in self.verdicts],
        }


def _fold(labels: tuple[str, ...]) -> set[str]:
    return {" ".join(lb.split()).casefold() for lb in labels}


def attempts(target: RepairTarget, prefix: str) -> tuple[int | None, bool]:
    """``(attempts, conflicting)`` from ``loop:attempts:N`` labels."""
    p = prefix.casefold()
    values = set()
    for lb in target.labels:
        low = lb.strip().casefold()
        if low.startswith(p):
            rest = low[len(p):]
            values.add(int(rest) if rest.isdigit() else -1)
    if not values:
        return None, False
    if len(values) > 1 or -1 in values:
        return None, True
    return values.pop(), False


def _priority_bonus(target: RepairTarget, priority: tuple[str, ...]) -> int:
    have = _fold(target.labels)
    for i, lb in enumerate(priority):
        if " ".join(lb.split()).casefold() in have:
            return (len(priority) - i) * 10
    return 0


def judge(target: RepairTarget, contract: RepairContract) -> TargetVerdict:
    labels = contract.labels
    have = _fold(target.labels)
    if target.linked_pull_request is not None:
        return TargetVerdict(target.key, "waiting", (f"linked pull request #{target.linked_pull_request}",))
    human: list[str] = []
    if target.reproduction == "failed":
        human.append("reproduction failed")
    if target.check is not None and target.check.status == "failure" and target.check.failure_class in (
            "flake", "infrastructure"):
        human.append(f"check failure is {target.check.failure_class}")
    n, conflicting = attempts(target, labels.attempts_prefix)
    if conflicting:
        human.append("conflicting attempt labels")
    elif n is not None and n >= contract.max_attempts:
        human.append(f"attempts {n} ≥ max {contract.max_attempts}")
    sensitive = sorted(lb for lb in labels.sensitive if " ".join(lb.split()).casefold() in have)
    if sensitive:
        human.append(f"sensitive label {sensitive[0]}")
    hit = next((p for p in target.changed_paths for g in contract.sensitive_paths if glob_match(p, g)), None)
    if hit is not None:
        human.append(f"sensitive path {hit}")
    if human:
        return TargetVerdict(target.key, "human-required", tuple(human))
    action, mode, score = None, None, 0
    bug = " ".join(labels.bug.split()).casefold() in have
    if target.type == "issue":
        if bug and target.reproduction == "confirmed":
            action, mode, score = "repair-issue", "change", 500
        elif bug and target.reproduction == "unknown":
            action, mode, score = "diagnose-issue", "diagnose", 200
    else:
        check = target.check
        if target.review_actionable:
            action, mode, score = "address-review", "change", 400
        elif check is not None and check.status == "failure" and check.failure_class == "deterministic":
            action, mode, score = "repair-check", "change", 300
        elif check is not None and check.status == "failure" and check.failure_class == "unknown":
            action, mode, score = "diagnose-check", "diagnose", 100
        if action is not None and mode == "change" and target.branch_owned is False:
            mode = "propose"
    if action is None:
        return TargetVerdict(target.key, "idle", ("nothing to do",))
    return TargetVerdict(target.key, "candidate", (), action, mode, score + _priority_bonus(target, labels.priority))


def plan(observation: RepairObservation, contract: RepairContract) -> RepairPlan:
    """The plan for one tick: which target (if any) to work on, in which mode."""
    if observation.pause_issues:
        return RepairPlan("paused", "pause label on issue(s) " + ", ".join(f"#{n}" for n in observation.pause_issues))
    lock = " ".join(contract.labels.lock.split()).casefold()
    locked = [t for t in observation.targets if lock in _fold(t.labels)]
    if locked:
        return RepairPlan("locked", f"{locked[0].key} carries the lock label {contract.labels.lock}", locked[0])
    verdicts = tuple(judge(t, contract) for t in observation.targets)
    by_key = {t.key: t for t in observation.targets}
    candidates = [v for v in verdicts if v.status == "candidate"]
    if candidates:
        best = sorted(candidates, key=lambda v: (-v.score, by_key[v.key].updated_at, v.key))[0]
        t = by_key[best.key]
        return RepairPlan("selected", f"{best.action} {t.key} (score {best.score})", t, best.action, best.mode,
                          best.score, verdicts)
    human = [v for v in verdicts if v.status == "human-required"]
    if human:
        return RepairPlan("human-required", f"{human[0].key}: {human[0].reasons[0]}", by_key[human[0].key],
                          verdicts=verdicts)
    return RepairPlan("idle", "no repair target", verdicts=verdicts)
