#!/usr/bin/python3
"""Names the tests that passed only on their rerun.

    rerun-summary.py FIRST.xml RERUN.xml

FIRST and RERUN are pytest's JUnit XML reports of a run and of its rerun of
the failed tests (tools/pytest-rerun.sh). Prints one line per test that
failed (or errored) in FIRST and passed in RERUN:

    FLAKY (passed on rerun): test_module::test_name[param]

so that a rerun shows up in CI output as a finding. Always exits 0: the
rerun's own status is what counts for pass or fail.
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


def main(argv: list[str]) -> int:
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
