"""Promotion contracts, evidence and the merge-ready decision (R11, R32)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.promotion import STAGES, format_promotion, promote, required_suites
from loop_runtime.errors import ConfigError
from loop_runtime.formats.gate_config import GatePolicy, parse_gate_yaml
from loop_runtime.formats.promotion import (
    PromotionContract,
    PromotionEvidence,
    parse_promotion_contract,
    parse_promotion_evidence,
    timestamp_ms,
)

FIXTURES = Path(__file__).parent / "fixtures"
EVIDENCE_TEXT = (FIXTURES / "examples__coaligne__evidence__pr-ready.json").read_text()


@pytest.fixture()
def contract() -> PromotionContract:
    return parse_promotion_contract((FIXTURES / "examples__coaligne__promotion.yaml").read_text())


@pytest.fixture()
def evidence() -> PromotionEvidence:
    return parse_promotion_evidence(EVIDENCE_TEXT)


@pytest.fixture()
def gate() -> GatePolicy:
    return parse_gate_yaml((FIXTURES / "examples__coaligne__gate.yaml").read_text())


def _with(evidence_text: str, **pr: object) -> PromotionEvidence:
    data = json.loads(evidence_text)
    data["pullRequest"].update(pr)
    return parse_promotion_evidence(json.dumps(data))


def test_fixture_contract_parses(contract: PromotionContract) -> None:
    """The coaligne contract: labels, 1 approval, 3 path-suite rules, risk-based acceptance."""
    assert contract.labels == ("loop:automerge",) and contract.min_approvals == 1
    assert contract.required_checks == ("continuous-integration/drone/pr",)
    assert contract.path_suites is not None and len(contract.path_suites) == 3
    assert contract.acceptance_mode == "risk-based" and contract.risk_levels == ("unclassified", "high", "critical")
    assert contract.deployment_max_age_hours == 24


def test_other_contracts_parse() -> None:
    """The starter contract and the template parse too."""
    for name in ("starters__issue-pr-repair__promotion.yaml", "templates__promotion.yaml.template"):
        assert parse_promotion_contract((FIXTURES / name).read_text()).max_attempts == 3


def test_pr_ready_evidence_is_merge_ready(contract: PromotionContract, evidence: PromotionEvidence,
                                          gate: GatePolicy) -> None:
    """R32: fixture evidence + coaligne contract + gate → allowed, merge-ready, exit 0."""
    d = promote(contract, evidence, gate)
    assert (d.allowed, d.stage, d.issues, d.exit_code) == (True, "merge-ready", (), 0)
    assert format_promotion(d) == ("MERGE-READY [merge-ready] — PR #293 at abc123 has fresh evidence "
                                   "for every promotion gate.")


def test_new_head_sha_invalidates_evidence(contract: PromotionContract, gate: GatePolicy) -> None:
    """R32: a changed headSha → HOLD at review with approval-sha, check-missing, deployment-sha, ..."""
    d = promote(contract, _with(EVIDENCE_TEXT, headSha="def456"), gate)
    codes = [i.code for i in d.issues]
    assert not d.allowed and d.stage == "review" and d.exit_code == 2
    assert codes[:4] == ["approval-sha", "check-missing", "deployment-sha", "test-data-sha"]
    assert codes.count("e2e-missing") == 7
    assert d.summary == "PR #293 at def456 is not merge-ready: 11 gate issue(s)."
    assert format_promotion(d).split("\n")[1] == \
        "  - human-required approval-sha: Counted approvals are not for the current PR HEAD SHA."


def test_stage_is_the_first_issue_in_stage_order(contract: PromotionContract, gate: GatePolicy) -> None:
    """Issues come out in stage order, so the decision's stage is the earliest unmet gate."""
    d = promote(contract, _with(EVIDENCE_TEXT, headSha="x", draft=True), gate)
    assert d.stage == "intake"
    positions = [STAGES.index(i.stage) for i in d.issues]
    assert positions == sorted(positions)


def test_path_policy_runs_as_auto_merge(contract: PromotionContract, gate: GatePolicy) -> None:
    """The gate is checked with action auto-merge; no gate policy means no path check."""
    ev = _with(EVIDENCE_TEXT, changedPaths=["docs/readme.md"])
    d = promote(contract, ev, gate)
    assert d.issues[0].code == "path-not-allowlisted" and d.stage == "policy"
    assert promote(contract, ev, None).allowed


def test_path_suites_add_required_suites(contract: PromotionContract) -> None:
    """Changed paths matching a pathSuites glob pull in that rule's suites, once each."""
    assert required_suites(contract, ("README.md",)) == ["smoke", "regression-focus", "browser-web"]
    suites = required_suites(contract, ("server/alembic/v1.py", "apps/web/x.ts"))
    assert suites[3:] == ["access", "project-lifecycle", "collaboration", "file-handling", "upgrade-and-rollback"]


def test_stale_evidence_waits(contract: PromotionContract, evidence: PromotionEvidence, gate: GatePolicy) -> None:
    """observedAt − completedAt > maxAgeHours makes deployment and E2E evidence stale."""
    later = replace(evidence, observed_at="2026-08-07T07:35:30Z")  # 24h05m after the smoke run
    codes = [i.code for i in promote(contract, later, gate).issues]
    assert "deployment-stale" in codes and codes.count("e2e-stale") == 1
    assert promote(contract, replace(evidence, observed_at="2026-08-07T07:25:00Z"), gate).allowed


def test_risk_based_acceptance(contract: PromotionContract, gate: GatePolicy) -> None:
    """A high-risk PR needs manual acceptance for this SHA with an actor."""
    d = promote(contract, _with(EVIDENCE_TEXT, riskLevel="high"), gate)
    assert [i.code for i in d.issues] == ["acceptance-missing"] and d.issues[0].kind == "human-required"


@pytest.mark.parametrize(("text", "field"), [
    ("version: 2\n", "version"),
    ("version: 1\nauthorization: []\n", "authorization"),
    ("version: 1\nauthorization: {labels: [], minApprovals: 1}\n", "pullRequest"),
    ("[unclosed", "yaml"),
])
def test_contract_errors(text: str, field: str) -> None:
    """A bad contract is one ConfigError line naming the field."""
    with pytest.raises(ConfigError) as err:
        parse_promotion_contract(text, file="promotion.yaml")
    assert err.value.field == field and err.value.file == "promotion.yaml" and "\n" not in str(err.value)


def test_evidence_errors() -> None:
    """Bad evidence JSON and bad fields are ConfigErrors naming the field."""
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_promotion_evidence("{", file="e.json")
    with pytest.raises(ConfigError, match="pullRequest.headSha must be a non-empty string"):
        _with(EVIDENCE_TEXT, headSha="")
    with pytest.raises(ConfigError, match="observedAt must be an ISO-8601 timestamp"):
        parse_promotion_evidence(EVIDENCE_TEXT.replace("2026-08-06T08:00:00Z", "Aug 6 2026"))


@pytest.mark.parametrize(("text", "ms"), [
    ("1970-01-01T00:00:00Z", 0), ("1970-01-01", 0), ("2026-08-06T08:00:00Z", 1786003200000),
    ("2026-08-06T10:00:00.5+02:00", 1786003200500), ("2024-02-30", 1709251200000),  # V8 rolls the day over
    ("2026-08-06T24:00:00Z", 1786060800000), ("-000001-01-01T00:00:00Z", -62198755200000),
    ("2026-13-01", None), ("2026-08-06T08:60:00Z", None), ("yesterday", None), ("", None),
])
def test_timestamp_ms_follows_date_parse(text: str, ms: int | None) -> None:
    """ISO-8601 to epoch milliseconds as JavaScript's Date.parse computes it (values checked in node)."""
    assert timestamp_ms(text) == ms


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                     max_size=3), max_leaves=10)


# Invariant: the evidence parser turns any JSON whatsoever into either evidence or a
# ConfigError; mutating one field of valid evidence never produces another exception.
@given(json_values, st.sampled_from(["version", "observedAt", "pullRequest", "checks", "e2e", "deployment",
                                     "testData", "manualAcceptance"]))
def test_evidence_parser_raises_only_config_error(value: object, key: str) -> None:
    """Property: ConfigError or a value, never a TypeError/KeyError."""
    data = json.loads(EVIDENCE_TEXT)
    data[key] = value
    for text in (json.dumps(value), json.dumps(data)):
        try:
            parse_promotion_evidence(text)
        except ConfigError:
            pass
