"""Verifier verdicts: '## Verdict: APPROVE|REJECT|ESCALATE_HUMAN' (R28)."""

from __future__ import annotations

import pytest

from loop_runtime.formats.verdict import Verdict, combine_verdicts, parse_verdict

TEMPLATE_OUTPUT = """```markdown
## Verdict: APPROVE | REJECT | ESCALATE_HUMAN

### Evidence
- Tests: (command + result)
- Scope check: (pass/fail + notes)
```"""


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("## Verdict: APPROVE", "APPROVE"),
        ("## Verdict: REJECT", "REJECT"),
        ("## Verdict: ESCALATE_HUMAN", "ESCALATE_HUMAN"),
        ("**Verdict:** APPROVE", "APPROVE"),
        ("## **Verdict: approve**", "APPROVE"),
        ("verdict: Reject", "REJECT"),
        ("### Verdict: `ESCALATE_HUMAN`", "ESCALATE_HUMAN"),
        ("## Verdict: ESCALATE", "ESCALATE_HUMAN"),
        ("## Verdict: escalate-human", "ESCALATE_HUMAN"),
        ("## Verdict: APPROVED", "APPROVE"),
        ("- Verdict: REJECTED", "REJECT"),
    ],
)
def test_verdict_line_forms(line: str, kind: str) -> None:
    """Headings, bold, case and small spelling variants are all read."""
    verdict = parse_verdict(f"Some evidence.\n\n{line}\n")
    assert (verdict.kind, verdict.found) == (kind, True)


def test_missing_verdict_is_reject_not_found() -> None:
    """No verdict line at all counts as REJECT with found=False."""
    assert parse_verdict("Looks fine to me, tests pass.") == Verdict("REJECT", False, ())


def test_template_line_is_not_a_verdict() -> None:
    """An echoed contract template ('APPROVE | REJECT | ESCALATE_HUMAN') is missing, hence REJECT."""
    verdict = parse_verdict(TEMPLATE_OUTPUT)
    assert (verdict.kind, verdict.found) == ("REJECT", False)


def test_template_then_real_verdict() -> None:
    """A real verdict after the echoed template is read."""
    verdict = parse_verdict(TEMPLATE_OUTPUT + "\n\n## Verdict: APPROVE\n")
    assert (verdict.kind, verdict.found) == ("APPROVE", True)


def test_last_verdict_wins() -> None:
    """An agent that revises itself: the last verdict line counts."""
    text = "## Verdict: APPROVE\n\nWait, the test was skipped.\n\n## Verdict: REJECT\n"
    assert parse_verdict(text).kind == "REJECT"


@pytest.mark.parametrize(
    "text",
    ["## Verdict: APPROVE_WITH_CHANGES", "## Verdict: maybe approve", "## Verdict:", "APPROVE", "Verdict APPROVE"],
)
def test_ambiguous_lines_are_not_approvals(text: str) -> None:
    """Anything but a clean keyword after 'Verdict:' is not a verdict (so REJECT)."""
    verdict = parse_verdict(text)
    assert (verdict.kind, verdict.found) == ("REJECT", False)


def test_trailing_text_is_a_reason() -> None:
    """'APPROVE — looks good' approves and keeps 'looks good' as a reason."""
    verdict = parse_verdict("## Verdict: APPROVE — looks good\n")
    assert verdict == Verdict("APPROVE", True, ("looks good",))


def test_reasons_under_a_reasons_label() -> None:
    """Numbered items under the contract's 'If REJECT / - Reasons:' are the reasons."""
    text = (
        "## Verdict: REJECT\n\n### Evidence\n- Tests: pytest -q → 1 failed\n- Scope check: pass\n\n"
        "### If REJECT\n- Reasons:\n  1. test_parse fails on empty input\n  2. **unrelated** edit to README\n"
        "- Suggested next step for implementer\n"
    )
    verdict = parse_verdict(text)
    assert verdict.reasons == (
        "test_parse fails on empty input", "unrelated edit to README", "Suggested next step for implementer",
    )


def test_reasons_heading_before_the_verdict() -> None:
    """A '### Why' section written before the verdict line is used."""
    text = "### Why\n1. diff touches .github/\n2. no test added\n\n## Verdict: ESCALATE_HUMAN\n"
    assert parse_verdict(text).reasons == ("diff touches .github/", "no test added")


def test_list_after_verdict_when_no_label() -> None:
    """Without a Reasons/Why label, the list right after the verdict line gives the reasons."""
    text = "## Verdict: REJECT\nThe change is wrong:\n- off by one\n- wrong file\n\nPlease retry.\n- not a reason\n"
    assert parse_verdict(text).reasons == ("off by one", "wrong file")


def test_reasons_are_capped() -> None:
    """At most 10 reasons of at most 300 characters each."""
    items = "".join(f"- {'x' * 400} {i}\n" for i in range(20))
    verdict = parse_verdict(f"## Verdict: REJECT\nReasons:\n{items}")
    assert len(verdict.reasons) == 10
    assert all(len(r) <= 300 for r in verdict.reasons)


def test_combine_any_escalation_escalates() -> None:
    """One ESCALATE_HUMAN among approvals escalates."""
    combined = combine_verdicts([
        Verdict("APPROVE", True, ()), Verdict("ESCALATE_HUMAN", True, ("cannot run tests",)),
        Verdict("REJECT", True, ("bad",)),
    ])
    assert combined == Verdict("ESCALATE_HUMAN", True, ("cannot run tests",))


def test_combine_requires_unanimous_approve() -> None:
    """Approval needs every checker; one REJECT (or a missing verdict) rejects."""
    assert combine_verdicts([Verdict("APPROVE", True, ("a",)), Verdict("APPROVE", True, ("b",))]) == Verdict(
        "APPROVE", True, ("a", "b")
    )
    mixed = combine_verdicts([Verdict("APPROVE", True, ()), parse_verdict("no verdict here")])
    assert (mixed.kind, mixed.found) == ("REJECT", False)


def test_combine_nothing_is_reject() -> None:
    """No checkers means no approval."""
    combined = combine_verdicts([])
    assert (combined.kind, combined.found) == ("REJECT", False)
