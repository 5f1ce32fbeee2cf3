"""What a test run executed: JUnit XML or a runner's summary lines → a ``TestReport``.

Why: "the tests passed" says nothing about *which* tests ran. An agent that skips,
deselects or renames away the failing test also gets a green run. To compare an
attempt with its base commit the runtime needs, per run, the tests that were collected
and what became of each one. JUnit XML (which pytest writes when asked through
``PYTEST_ADDOPTS``) gives names; for other runners the summary lines they print give
counts (and names where the runner lists them: ``go test -v``, ``cargo test``).

Everything parsed here comes from agent-controlled code, so parsing is defensive: a
report that is too large, declares a DTD or entities, or is not well-formed is
``None`` (garbled), never an exception. Pure: text in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_REPORT_BYTES",
    "OUTCOMES",
    "TestCase",
    "TestReport",
    "merge_junit",
    "parse_junit",
    "parse_summary",
    "report_from_dict",
    "report_to_dict",
]

MAX_REPORT_BYTES = 32 * 1024 * 1024
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed")
"""``xfailed``: an expected failure — the test body ran but its result is not counted."""
_RANK = {"passed": 0, "skipped": 1, "xfailed": 2, "failed": 3, "error": 4}
TRUNCATED = "[… "  # how adapters.test_runner marks an output whose head was dropped


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest test class
    name: str
    outcome: str  # one of OUTCOMES


@dataclass(frozen=True)
class TestReport:
    """Counts of one run; ``cases`` holds the per-test outcomes when the runner named them.

    ``source`` tells where it came from: ``junit``, ``pytest``, ``unittest``, ``jest``,
    ``vitest``, ``mocha``, ``go`` or ``cargo``.
    """

    __test__ = False
    source: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    xfailed: int = 0
    deselected: int = 0
    cases: tuple[TestCase, ...] | None = field(default=None)

    @property
    def executed(self) -> int:
        """Tests whose body ran and whose result counts."""
        return self.passed + self.failed + self.errors

    @property
    def collected(self) -> int:
        """Tests the runner found and did not deselect."""
        return self.executed + self.skipped + self.xfailed

    @property
    def not_run(self) -> int:
        """Skipped, expected-to-fail and deselected tests: what a weakened suite grows."""
        return self.skipped + self.xfailed + self.deselected


def _from_cases(source: str, cases: Iterable[TestCase], deselected: int = 0) -> TestReport:
    merged: dict[str, str] = {}
    for c in cases:  # a test reported twice (a call failure and a teardown error) keeps its worst outcome
        old = merged.get(c.name)
        if old is None or _RANK[c.outcome] > _RANK[old]:
            merged[c.name] = c.outcome
    counts = {o: 0 for o in OUTCOMES}
    for o in merged.values():
        counts[o] += 1
    return TestReport(source=source, passed=counts["passed"], failed=counts["failed"], errors=counts["error"],
                      skipped=counts["skipped"], xfailed=counts["xfailed"], deselected=deselected,
                      cases=tuple(TestCase(n, o) for n, o in sorted(merged.items())))


# --------------------------------------------------------------------------- JUnit XML

_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _case_outcome(el: Any) -> str:
    outcome = "passed"
    for child in el:
        tag = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
        if tag == "error":
            return "error"
        if tag == "failure":
            outcome = "failed"
        elif tag == "skipped" and outcome == "passed":
            kind = (child.get("type") or "") + " " + (child.get("message") or "")
            outcome = "xfailed" if "xfail" in kind.lower() else "skipped"
    return outcome


def parse_junit(text: str | bytes) -> TestReport | None:
    """Per-test outcomes from a JUnit XML report (pytest, jest-junit, go-junit-report …); None when garbled.

    A test is named ``classname::name`` (just ``name`` without a class name). A DTD or
    entity declaration makes the report garbled: nothing legitimate needs one, and
    expanding entities from an untrusted file is how XML bombs work.
    """
    import xml.etree.ElementTree as ET  # lazily: only a test run needs it

    if len(text) > MAX_REPORT_BYTES:
        return None
    head = text[:4096].decode("utf-8", "replace") if isinstance(text, bytes) else text[:4096]
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if _DTD.search(head) or _DTD.search(body):
        return None
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, ValueError):
        return None
    if root.tag not in ("testsuites", "testsuite"):
        return None
    cases: list[TestCase] = []
    for el in root.iter("testcase"):
        name = (el.get("name") or "").strip()
        if not name:
            return None
        cls = (el.get("classname") or "").strip()
        cases.append(TestCase(f"{cls}::{name}" if cls else name, _case_outcome(el)))
    return _from_cases("junit", cases)


def merge_junit(reports: Iterable[TestReport]) -> TestReport:
    """Several JUnit reports of one run (pytest and Jest in one ``make test``) as one."""
    cases: list[TestCase] = []
    deselected = 0
    for r in reports:
        cases.extend(r.cases or ())
        deselected += r.deselected
    return _from_cases("junit", cases, deselected)


# --------------------------------------------------------------------------- summary lines

_PYTEST_LINE = re.compile(
    r"^=*\s*((?:\d+ (?:passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?|rerun)(?:, )?)+)"
    r"(?: in [\d.]+s.*)?\s*=*\s*$|^=*\s*no tests ran(?: in [\d.]+s.*)?\s*=*\s*$")
_PYTEST_ITEM = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?)")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s\s*$")
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \((.*)\))?\s*$")
_UNITTEST_ITEM = re.compile(r"(failures|errors|skipped|expected failures|unexpected successes)=(\d+)")
_JEST = re.compile(r"^Tests:\s+(.*\d+ total)\s*$")
_JEST_ITEM = re.compile(r"(\d+) (passed|failed|skipped|todo|pending)")
_VITEST = re.compile(r"^\s*Tests\s+(.*)\((\d+)\)\s*$")
_MOCHA = re.compile(r"^\s*(\d+) (passing|failing|pending)\b")
_GO = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")
_CARGO_RESULT = re.compile(
    r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored; \d+ measured; (\d+) filtered out")
_CARGO_CASE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)\b")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _pytest(lines: list[str]) -> TestReport | None:
    for line in reversed(lines):
        if _PYTEST_LINE.match(line.strip()):
            n: dict[str, int] = {}
            for num, word in _PYTEST_ITEM.findall(line):
                key = "errors" if word.startswith("error") else word
                n[key] = n.get(key, 0) + int(num)
            return TestReport("pytest", passed=n.get("passed", 0) + n.get("xpassed", 0), failed=n.get("failed", 0),
                              errors=n.get("errors", 0), skipped=n.get("skipped", 0), xfailed=n.get("xfailed", 0),
                              deselected=n.get("deselected", 0))
    return None


def _unittest(lines: list[str]) -> TestReport | None:
    for i in range(len(lines) - 1, -1, -1):
        ran = _UNITTEST_RAN.match(lines[i].strip())
        if not ran:
            continue
        for follow in lines[i + 1:i + 4]:
            end = _UNITTEST_END.match(follow.strip())
            if end:
                n = {k: int(v) for k, v in _UNITTEST_ITEM.findall(end.group(2) or "")}
                total = int(ran.group(1))
                skipped, xf = n.get("skipped", 0), n.get("expected failures", 0)
                failed, errors = n.get("failures", 0), n.get("errors", 0)
                return TestReport("unittest", passed=max(0, total - skipped - xf - failed - errors), failed=failed,
                                  errors=errors, skipped=skipped, xfailed=xf)
        return None
    return None


def _jest(lines: list[str]) -> TestReport | None:
    for line in reversed(lines):
        m = _JEST.match(line.strip())
        if m:
            n: dict[str, int] = {}
            for num, word in _JEST_ITEM.findall(m.group(1)):
                n[word] = n.get(word, 0) + int(num)
            return TestReport("jest", passed=n.get("passed", 0), failed=n.get("failed", 0),
                              skipped=n.get("skipped", 0) + n.get("todo", 0) + n.get("pending", 0))
        v = _VITEST.match(line)
        if v and _JEST_ITEM.search(v.group(1)):
            n = {}
            for num, word in _JEST_ITEM.findall(v.group(1)):
                n[word] = n.get(word, 0) + int(num)
            return TestReport("vitest", passed=n.get("passed", 0), failed=n.get("failed", 0),
                              skipped=n.get("skipped", 0) + n.get("todo", 0))
    return None


def _mocha(lines: list[str]) -> TestReport | None:
    n: dict[str, int] = {}
    for line in lines:
        m = _MOCHA.match(line)
        if m:
            n[m.group(2)] = int(m.group(1))  # the last summary wins
    if "passing" not in n and "failing" not in n:
        return None
    return TestReport("mocha", passed=n.get("passing", 0), failed=n.get("failing", 0), skipped=n.get("pending", 0))


def _go(lines: list[str], truncated: bool) -> TestReport | None:
    cases = [TestCase(m.group(2), {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[m.group(1)])
             for m in map(_GO.match, lines) if m]
    if not cases or truncated:  # a cut head loses names: no partial list that would look like missing tests
        return None
    return _from_cases("go", cases)


def _cargo(lines: list[str], truncated: bool) -> TestReport | None:
    totals = [0, 0, 0, 0]
    found = False
    for line in lines:
        m = _CARGO_RESULT.match(line.strip())
        if m:
            found = True
            totals = [a + int(b) for a, b in zip(totals, m.groups(), strict=True)]
    if not found:
        return None
    cases = [TestCase(m.group(1), {"ok": "passed", "FAILED": "failed", "ignored": "skipped"}[m.group(2)])
             for m in map(_CARGO_CASE.match, (ln.strip() for ln in lines)) if m]
    if not truncated and len({c.name for c in cases}) == totals[0] + totals[1] + totals[2]:
        return _from_cases("cargo", cases, deselected=totals[3])
    return TestReport("cargo", passed=totals[0], failed=totals[1], skipped=totals[2], deselected=totals[3])


def parse_summary(output: str) -> TestReport | None:
    """Counts (and names where listed) from the summary lines a test runner printed; None when none found.

    Tried in order: pytest, unittest, Jest/Vitest, Mocha, ``go test -v``, cargo. The last
    summary of a kind wins (pytest prints its own after anything a test printed).
    """
    truncated = output.startswith(TRUNCATED)
    lines = _ANSI.sub("", output).splitlines()
    for parse in (_pytest, _unittest, _jest, _mocha):
        found = parse(lines)
        if found is not None:
            return found
    return _go(lines, truncated) or _cargo(lines, truncated)


# --------------------------------------------------------------------------- cache form


def report_to_dict(report: TestReport) -> dict[str, Any]:
    """A JSON-ready form of ``report`` (the base-run cache stores it)."""
    return {"source": report.source, "passed": report.passed, "failed": report.failed, "errors": report.errors,
            "skipped": report.skipped, "xfailed": report.xfailed, "deselected": report.deselected,
            "cases": None if report.cases is None else [[c.name, c.outcome] for c in report.cases]}


def report_from_dict(data: Mapping[str, Any]) -> TestReport:
    """Inverse of ``report_to_dict``; ``ValueError`` on anything that is not one."""
    try:
        counts = {k: int(data[k]) for k in ("passed", "failed", "errors", "skipped", "xfailed", "deselected")}
        if any(v < 0 for v in counts.values()):
            raise ValueError("negative count")
        raw = data["cases"]
        cases = None
        if raw is not None:
            cases = tuple(TestCase(str(n), str(o)) for n, o in raw)
            if any(c.outcome not in OUTCOMES for c in cases):
                raise ValueError("unknown outcome")
        return TestReport(source=str(data["source"]), cases=cases, **counts)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a test report: {exc}") from None
