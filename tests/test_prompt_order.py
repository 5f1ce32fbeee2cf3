"""Prompts that cache (issue 15): every role's prompt runs from the most stable part to the most volatile.

Provider prompt caches match an exact prefix, so whatever changes from tick to tick (state,
observation, item, attempt, error, diff, test output) must come after everything that does not.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.prompts import ProjectContext, implementer_prompt, triage_prompt, verifier_prompt

CTX = ProjectContext(project_name="demo", skills={"issue-triage": "SKILL BODY", "verify": "VERIFY SKILL"},
                     loop_md="LOOP BODY", constraints="CONSTRAINTS BODY", agents_md="AGENTS BODY",
                     verifier="VERIFIER DEFINITION")
volatile = st.text(min_size=1, max_size=200)


def triage(state: str, observation: str) -> str:
    p = triage_prompt(ctx=CTX, level="L1", pattern_name="issue-triage", goal="triage issues",
                      skills=("issue-triage",), state_file="STATE.md", state_text=state, observation=observation)
    return p.system + "\n\n" + p.user


def common_prefix(a: str, b: str) -> int:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


@given(obs1=volatile, obs2=volatile, state1=volatile, state2=volatile)
def test_triage_prompts_share_everything_before_the_state(obs1: str, obs2: str, state1: str, state2: str) -> None:
    a, b = triage(state1, obs1), triage(state2, obs2)
    stable_end = a.index("## Previous state")
    assert common_prefix(a, b) >= stable_end
    for stable in ("SKILL BODY", "LOOP BODY", "AGENTS BODY", "CONSTRAINTS BODY", '"decision"'):
        assert a.index(stable) < stable_end


def test_stable_parts_come_before_volatile_ones_in_every_role() -> None:
    impl = implementer_prompt(ctx=CTX, level="L2", pattern_name="p", goal="g", skills=("issue-triage",),
                              item_id="I-1", item_title="ITEM TITLE", item_detail="ITEM DETAIL", attempt=2,
                              max_attempts=3, previous_error="PREVIOUS ERROR")
    ver = verifier_prompt(ctx=CTX, level="L2", pattern_name="p", goal="g", skills=(), item_id="I-1",
                          item_title="ITEM TITLE", patch="PATCH TEXT", test_summary="TEST SUMMARY")
    u = impl.user
    assert u.index("SKILL BODY") < u.index("Make the smallest change") < u.index("ITEM TITLE") \
        < u.index("attempt 2 of 3") < u.index("PREVIOUS ERROR")
    v = ver.user
    assert v.index("VERIFIER DEFINITION") < v.index("## Verdict: APPROVE") < v.index("ITEM TITLE") \
        < v.index("PATCH TEXT") < v.index("TEST SUMMARY")
    assert "<untrusted-data" in v[v.index("## Item"):v.index("ITEM TITLE")]  # the item title is agent output


def test_roles_share_the_system_prompt_up_to_the_role_line() -> None:
    """The triage call warms the cache for the implementer's and verifier's system prompts too."""
    t = triage("s", "o")
    impl = implementer_prompt(ctx=CTX, level="L1", pattern_name="issue-triage", goal="g", skills=(),
                              item_id="I", item_title="t", item_detail="d", attempt=1, max_attempts=1,
                              previous_error=None).system
    shared = common_prefix(t, impl)
    assert shared >= t.index("You are the ") and "CONSTRAINTS BODY" in t[:shared]
