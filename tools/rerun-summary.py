#!/usr/bin/python3
"""Names the tests that passed only on their rerun.

    rerun-summary.py FIRST.xml RERUN.xml

FIRST and RERUN are pytest's JUnit XML reports of a run and of its rerun of
the failed tests (tools/pytest-rerun.sh). Prints one line per test that
failed (or errored) in FIRST and passed in RERUN:

    FLAKY (passed on rerun): test_module::test_name[param]

so that a rerun shows up in CI output as a finding. Always exits 0: the
rerun's own status is what counts for pass or fail.

    rerun-summary.py --attempts OUTCOMES

OUTCOMES is the log tests/integration/conftest.py writes across the
attempts of tools/run-tests.sh (a new attempt after a test-host crash):
one "<attempt> started|passed|failed <test id>" line per test start and
outcome. Prints one line per test that failed in an attempt, or was running
when that attempt's test host died, and passed in a later one:

    FLAKY (passed in attempt 2 after failing in attempt 1): test_mod.py::test_name
    FLAKY (passed in attempt 2; the test host died under it in attempt 1): test_mod.py::test_x

A test that failed and passed within one attempt is the rerun's (the first
form above), not named again here. A failure's report, which pytest would
print only at the end of an attempt its test host did not live to see, is
kept by conftest.py in OUTCOMES.reports and shown below its FLAKY line.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def outcomes(path: str) -> dict[str, str] | None:
    """test id -> "passed", "failed" or "skipped"; None if there is no report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out: dict[str, str] = {}
    for tc in root.iter("testcase"):
        test = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if tc.find("failure") is not None or tc.find("error") is not None:
            state = "failed"
        elif tc.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        # A test that errors in teardown after passing appears twice:
        # a failure in either makes it a failure.
        if out.get(test) != "failed":
            out[test] = state
    return out


REPORT_LINES = 40


def show_report(outcomes: str, attempt: int, test: str) -> None:
    """The end of the failure's report conftest.py kept, indented: the lines
    below each "@@ <attempt> <test id> [<phase>]" line of that test."""
    try:
        kept = open(f"{outcomes}.reports", encoding="utf-8", errors="replace").read()
    except OSError:
        return
    lines, mine = [], False
    for line in kept.splitlines():
        if line.startswith("@@ "):
            parts = line.split(" ")
            mine = len(parts) >= 3 and parts[1] == str(attempt) and parts[2] == test
        elif mine:
            lines.append(line)
    if not lines:
        return
    print(f"    its report in attempt {attempt} (last {REPORT_LINES} lines):")
    for line in lines[-REPORT_LINES:]:
        print(f"    | {line}")


def across_attempts(path: str) -> int:
    """The --attempts form: tests that failed in one attempt, or were running
    when its test host died, and passed in a later one."""
    print("== summary across test-host attempts")
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        print("no outcomes were recorded")
        return 0
    # test -> attempt -> the states logged in it, in order
    log: dict[str, dict[int, list[str]]] = {}
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) != 3 or not parts[0].isdigit() or \
                parts[1] not in ("started", "passed", "failed"):
            continue  # a line cut short by the crash
        log.setdefault(parts[2], {}).setdefault(int(parts[0]), []).append(parts[1])
    flaky = 0
    for test, attempts in log.items():
        order = sorted(attempts)
        last = order[-1]
        states = attempts[last]
        # Passed in its last attempt: a passed call and no failure there.
        if "passed" not in states or "failed" in states:
            continue
        for a in order[:-1]:
            earlier = attempts[a]
            if "failed" in earlier:
                print(f"FLAKY (passed in attempt {last} after failing in attempt {a}): {test}")
                show_report(path, a, test)
            elif "passed" not in earlier:
                print(f"FLAKY (passed in attempt {last}; the test host died under it in "
                      f"attempt {a}): {test}")
            else:
                continue
            flaky += 1
            break
    print(f"{flaky} tests failed or lost their test host in one attempt and passed in a "
          "later one (flaky)")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--attempts":
        return across_attempts(argv[2])
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    first, rerun = outcomes(argv[1]), outcomes(argv[2])
    print("== rerun summary")
    if first is None:
        print("the first run left no report (pytest itself died?): every test of the "
              "rerun ran for the first time, none can be called flaky")
        return 0
    if rerun is None:
        print("the rerun left no report (pytest itself died?)")
        return 0
    failed = [t for t, s in first.items() if s == "failed"]
    flaky = [t for t in failed if rerun.get(t) == "passed"]
    for t in flaky:
        print(f"FLAKY (passed on rerun): {t}")
    still = [t for t in failed if rerun.get(t) == "failed"]
    print(f"{len(failed)} failed in the first run: {len(flaky)} passed on rerun (flaky), "
          f"{len(still)} failed again")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
