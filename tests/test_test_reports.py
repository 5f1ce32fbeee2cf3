"""What a test run executed (formats.test_report) and when an attempt ran less than its base
(core.test_weakening): examples from each runner, then properties over generated reports."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loop_runtime.core.test_weakening import compare_runs
from loop_runtime.formats.test_report import (
    OUTCOMES,
    TestCase,
    TestReport,
    parse_junit,
    parse_summary,
    report_from_dict,
    report_to_dict,
)

# -- JUnit XML

PYTEST_JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest"
errors="0" failures="1" skipped="2" tests="5" time="0.05"><testcase classname="tests.test_calc" name="test_add"
time="0.001"><failure message="assert -1 == 5">def test_add(): ...</failure></testcase><testcase
classname="tests.test_calc" name="test_sub" time="0.001" /><testcase classname="tests.test_calc" name="test_skip"
time="0.000"><skipped type="pytest.skip" message="no">tests/test_calc.py:9: no</skipped></testcase><testcase
classname="tests.test_calc" name="test_xf" time="0.000"><skipped type="pytest.xfail" message="" /></testcase>
<testcase classname="tests.test_calc" name="test_p[1-2]" time="0.0"><error message="fixture">E</error></testcase>
</testsuite></testsuites>"""


def test_pytest_junit_names_every_test_with_its_outcome() -> None:
    """classname::name; failure, skip, xfail (pytest's skipped type) and error are told apart."""
    r = parse_junit(PYTEST_JUNIT)
    assert r is not None and r.source == "junit"
    assert dict((c.name, c.outcome) for c in r.cases or ()) == {
        "tests.test_calc::test_add": "failed", "tests.test_calc::test_sub": "passed",
        "tests.test_calc::test_skip": "skipped", "tests.test_calc::test_xf": "xfailed",
        "tests.test_calc::test_p[1-2]": "error"}
    assert (r.passed, r.failed, r.errors, r.skipped, r.xfailed, r.collected) == (1, 1, 1, 1, 1, 5)


def test_a_test_reported_twice_keeps_its_worst_outcome() -> None:
    """pytest reports a call failure and a teardown error as two <testcase>s with one name."""
    xml = ('<testsuite><testcase classname="a" name="t"><failure/></testcase>'
           '<testcase classname="a" name="t"><error/></testcase></testsuite>')
    r = parse_junit(xml)
    assert r is not None and r.cases == (TestCase("a::t", "error"),) and r.collected == 1


@pytest.mark.parametrize("text", [
    "", "not xml", "<testsuites><testsuite>", "<html/>", "<testsuite><testcase/></testsuite>",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite><testcase name="&a;"/></testsuite>',
    b"\xff\xfe<testsuite>",
])
def test_garbled_junit_is_none(text: str | bytes) -> None:
    """Not well-formed, not a test suite, a nameless test, or a DTD/entity (XML bomb) → None, never a raise."""
    assert parse_junit(text) is None


def test_an_empty_suite_is_a_report_with_nothing_run() -> None:
    r = parse_junit("<testsuites></testsuites>")
    assert r is not None and r.collected == 0 and r.cases == ()


# -- summary lines of each runner

SUMMARIES = {
    "pytest": ("....sx\n=========== short test summary info ===========\nPASSED tests/test_a.py::test_x\n"
               "1 failed, 2 passed, 1 skipped, 3 deselected, 1 xfailed, 1 xpassed, 1 warning in 0.05s\n",
               dict(passed=3, failed=1, skipped=1, deselected=3, xfailed=1)),
    "pytest-verbose": ("= 2 passed, 1 error in 0.10s =\n", dict(passed=2, errors=1)),
    "pytest-none": ("\n=== no tests ran in 0.01s ===\n", dict()),
    "unittest-ok": ("....\n------\nRan 4 tests in 0.001s\n\nOK (skipped=1)\n", dict(passed=3, skipped=1)),
    "unittest-failed": ("Ran 6 tests in 0.01s\n\nFAILED (failures=1, errors=1, skipped=1, expected failures=1)\n",
                        dict(passed=2, failed=1, errors=1, skipped=1, xfailed=1)),
    "jest": ("Test Suites: 1 failed, 1 passed, 2 total\nTests:       1 failed, 1 skipped, 2 todo, 5 passed, 9 total\n"
             "Snapshots:   0 total\nTime:        1.2 s\n", dict(passed=5, failed=1, skipped=3)),
    "vitest": (" \x1b[2m Test Files \x1b[22m 1 passed (1)\n      Tests  3 passed | 1 skipped (4)\n   Start at  12:00\n",
               dict(passed=3, skipped=1)),
    "mocha": ("\n  3 passing (12ms)\n  1 pending\n  1 failing\n\n  1) add:\n", dict(passed=3, failed=1, skipped=1)),
    "go": ("=== RUN   TestAdd\n--- PASS: TestAdd (0.00s)\n=== RUN   TestSkip\n    x_test.go:9: later\n"
           "--- SKIP: TestSkip (0.00s)\n=== RUN   TestT\n=== RUN   TestT/sub\n    --- FAIL: TestT/sub (0.00s)\n"
           "--- FAIL: TestT (0.00s)\nFAIL\n", dict(passed=1, skipped=1, failed=2)),
    "cargo": ("running 3 tests\ntest tests::a ... ok\ntest tests::b ... ignored\ntest tests::c ... FAILED\n\n"
              "test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.00s\n"
              "running 1 test\ntest it ... ok\n\n"
              "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
              dict(passed=2, failed=1, skipped=1, deselected=2)),
}


@pytest.mark.parametrize("kind", sorted(SUMMARIES))
def test_summary_lines_of_each_runner(kind: str) -> None:
    """pytest, unittest, Jest, Vitest, Mocha, go test -v and cargo summaries give the counts."""
    text, counts = SUMMARIES[kind]
    r = parse_summary(text)
    assert r is not None
    expected = {**dict.fromkeys(("passed", "failed", "errors", "skipped", "xfailed", "deselected"), 0), **counts}
    assert {k: getattr(r, k) for k in expected} == expected


def test_go_and_cargo_name_their_tests() -> None:
    go = parse_summary(SUMMARIES["go"][0])
    assert go is not None and {c.name for c in go.cases or ()} == {"TestAdd", "TestSkip", "TestT", "TestT/sub"}
    cargo = parse_summary(SUMMARIES["cargo"][0])
    assert cargo is not None and {c.name: c.outcome for c in cargo.cases or ()} == {
        "tests::a": "passed", "tests::b": "skipped", "tests::c": "failed", "it": "passed"}


def test_a_cut_output_gives_no_partial_name_list() -> None:
    """When the head of the output was dropped, names listed there are lost: go gives nothing rather than a part."""
    text = "[… 5000 bytes of earlier output truncated …]\n--- PASS: TestLast (0.00s)\n"
    assert parse_summary(text) is None


def test_the_last_pytest_summary_wins_over_one_a_test_printed() -> None:
    text = "100 passed in 0.01s\n.F\n1 failed, 1 passed in 0.02s\n"
    r = parse_summary(text)
    assert r is not None and (r.passed, r.failed) == (1, 1)


def test_no_summary_is_none() -> None:
    assert parse_summary("Segmentation fault\n") is None
    assert parse_summary("") is None


# -- properties

names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters="\x7f"),
                min_size=1, max_size=12).map(str.strip).filter(bool)
cases = st.dictionaries(names, st.sampled_from(OUTCOMES), max_size=12)


def _junit(outcomes: dict[str, str]) -> str:
    body = {"passed": "", "failed": "<failure message='x'/>", "error": "<error/>",
            "skipped": "<skipped type='pytest.skip'/>", "xfailed": "<skipped type='pytest.xfail'/>"}
    return "<testsuites><testsuite>" + "".join(
        f"<testcase classname='m' name={quoteattr(n)}>{body[o]}</testcase>" for n, o in outcomes.items()
    ) + "</testsuite></testsuites>"


def _report(outcomes: dict[str, str], source: str = "junit") -> TestReport:
    r = parse_junit(_junit(outcomes))
    assert r is not None
    return TestReport(source, r.passed, r.failed, r.errors, r.skipped, r.xfailed, 0, r.cases)


@given(cases)
def test_junit_round_trip(outcomes: dict[str, str]) -> None:
    """Every test written to JUnit XML comes back with its outcome, and the counts add up."""
    r = parse_junit(_junit(outcomes))
    assert r is not None
    assert {c.name: c.outcome for c in r.cases or ()} == {f"m::{n}": o for n, o in outcomes.items()}
    assert r.collected == len(outcomes)


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_parsers_never_raise(text: str | bytes) -> None:
    parse_junit(text)
    parse_summary(text if isinstance(text, str) else text.decode("utf-8", "replace"))


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_pytest_and_unittest_summaries_round_trip(p: int, f: int, s: int, d: int, x: int) -> None:
    parts = [f"{n} {w}" for n, w in ((f, "failed"), (p, "passed"), (s, "skipped"), (d, "deselected"),
                                     (x, "xfailed")) if n]
    r = parse_summary(f"{', '.join(parts)} in 0.12s\n" if parts else "no tests ran in 0.01s\n")
    assert r is not None and (r.passed, r.failed, r.skipped, r.deselected, r.xfailed) == (p, f, s, d, x)
    total = p + f + s + x
    extras = ", ".join(f"{k}={v}" for k, v in (("failures", f), ("skipped", s), ("expected failures", x)) if v)
    end = ("FAILED" if f else "OK") + (f" ({extras})" if extras else "")
    u = parse_summary(f"Ran {total} tests in 0.001s\n\n{end}\n")
    assert u is not None and (u.passed, u.failed, u.skipped, u.xfailed) == (p, f, s, x)


@given(cases, st.integers(0, 5))
def test_cache_form_round_trips(outcomes: dict[str, str], deselected: int) -> None:
    r = _report(outcomes)
    r = TestReport(r.source, r.passed, r.failed, r.errors, r.skipped, r.xfailed, deselected, r.cases)
    assert report_from_dict(report_to_dict(r)) == r
    counts_only = TestReport("mocha", passed=3, skipped=1)
    assert report_from_dict(report_to_dict(counts_only)) == counts_only


@pytest.mark.parametrize("bad", [{}, {"source": "x"}, {**report_to_dict(TestReport("x")), "passed": -1},
                                 {**report_to_dict(TestReport("x")), "cases": [["a", "exploded"]]},
                                 {**report_to_dict(TestReport("x")), "cases": 5}])
def test_cache_form_rejects_what_is_not_a_report(bad: dict) -> None:
    with pytest.raises(ValueError):
        report_from_dict(bad)


# -- the comparison rule


@given(cases)
def test_the_same_run_is_not_weaker(outcomes: dict[str, str]) -> None:
    r = _report(outcomes)
    assert compare_runs(r, r) is None


@given(cases, cases)
def test_more_tests_and_fixed_failures_are_not_weaker(outcomes: dict[str, str], extra: dict[str, str]) -> None:
    """Adding tests (which run) and turning failures and errors into passes never escalates."""
    base = _report(outcomes)
    after = {n: ("passed" if o in ("failed", "error") else o) for n, o in outcomes.items()}
    after.update({f"new-{n}": ("passed" if o in ("skipped", "xfailed") else o) for n, o in extra.items()})
    assert compare_runs(base, _report(after)) is None


@given(cases.filter(bool), st.data())
def test_a_lost_test_is_named(outcomes: dict[str, str], data: st.DataObject) -> None:
    """A test of the base missing from the attempt escalates, by name, whatever else was added."""
    lost = data.draw(st.sampled_from(sorted(outcomes)))
    after = {n: o for n, o in outcomes.items() if n != lost}
    after.update({f"new-{i}": "passed" for i in range(data.draw(st.integers(0, 3)))})
    w = compare_runs(_report(outcomes), _report(after))
    assert w is not None and f"m::{lost}" in w.tests and f"m::{lost}" in w.detail


@given(cases.filter(lambda c: any(o in ("passed", "failed", "error") for o in c.values())), st.data(),
       st.sampled_from(["skipped", "xfailed"]))
def test_a_test_that_ran_and_is_now_skipped_is_named(outcomes: dict[str, str], data: st.DataObject,
                                                      now: str) -> None:
    ran = sorted(n for n, o in outcomes.items() if o in ("passed", "failed", "error"))
    name = data.draw(st.sampled_from(ran))
    w = compare_runs(_report(outcomes), _report({**outcomes, name: now}))
    assert w is not None and f"m::{name}" in w.tests


@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 5), st.integers(1, 5),
       st.sampled_from(["skipped", "xfailed", "deselected"]))
def test_counts_only_more_not_run_is_weaker(p: int, f: int, s: int, more: int, field: str) -> None:
    """Without names (mocha, jest …) the counts decide: more skipped/xfailed/deselected escalates."""
    base = TestReport("mocha", passed=p, failed=f, skipped=s)
    kw = {"passed": p, "failed": f, "skipped": s}
    kw[field] = kw.get(field, 0) + more
    assert compare_runs(base, TestReport("mocha", **kw)) is not None
    assert compare_runs(base, TestReport("mocha", passed=p + f, skipped=s)) is None  # failures fixed
    if p:
        assert compare_runs(base, TestReport("mocha", passed=p - 1, failed=f, skipped=s)) is not None


@given(cases)
def test_no_report_from_the_attempt_is_weaker_when_the_base_had_one(outcomes: dict[str, str]) -> None:
    base = _report(outcomes)
    assert compare_runs(base, None) is not None
    assert compare_runs(None, base) is None  # nothing to compare with: the base left no report
    named = TestReport("pytest", passed=base.passed, failed=base.failed, errors=base.errors,
                       skipped=base.skipped, xfailed=base.xfailed)
    assert compare_runs(base, named) is not None  # the attempt's run no longer names its tests


def test_weakening_detail_starts_with_the_names() -> None:
    base = TestReport("junit", passed=2, cases=(TestCase("m::a", "passed"), TestCase("m::b", "passed")))
    after = TestReport("junit", passed=1, skipped=1, cases=(TestCase("m::a", "passed"), TestCase("m::b", "skipped")))
    w = compare_runs(base, after)
    assert w is not None and w.detail.startswith("tests m::b — ")


@given(cases, cases)
def test_merged_junit_reports_keep_every_test(a: dict[str, str], b: dict[str, str]) -> None:
    """Two runners in one command: every test of both, each once."""
    from loop_runtime.formats.test_report import merge_junit

    ra = _report(a)
    rb = parse_junit(_junit(b).replace("classname='m'", "classname='n'"))
    assert rb is not None
    merged = merge_junit([ra, rb])
    assert merged.collected == ra.collected + rb.collected
    assert set(merged.cases or ()) == set(ra.cases or ()) | set(rb.cases or ())
