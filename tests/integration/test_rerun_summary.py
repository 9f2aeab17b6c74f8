"""tools/rerun-summary.py: a test that passed only on its rerun is named,
one "FLAKY (passed on rerun): <test>" line each (tools/pytest-rerun.sh
prints them after pytest's summary, so a rerun shows up in CI output)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "rerun-summary.py"


def junit(path: Path, cases: dict[str, str]) -> Path:
    """A JUnit XML report as pytest writes it: name -> passed/failed/error/skipped."""
    body = []
    for name, state in cases.items():
        inner = {"passed": "", "failed": '<failure message="x">x</failure>',
                 "error": '<error message="x">x</error>', "skipped": '<skipped message="x"/>'}[state]
        body.append(f'<testcase classname="test_mod" name="{name}" time="0.1">{inner}</testcase>')
    path.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
                    + "".join(body) + "</testsuite></testsuites>")
    return path


def summary(first: Path, rerun: Path) -> list[str]:
    run = subprocess.run(["/usr/bin/python3", str(SCRIPT), str(first), str(rerun)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_each_test_that_passed_only_on_rerun_is_named(tmp_path):
    first = junit(tmp_path / "1.xml", {"test_a": "passed", "test_b": "failed",
                                       "test_c[x]": "error", "test_d": "failed",
                                       "test_e": "skipped"})
    rerun = junit(tmp_path / "2.xml", {"test_b": "passed", "test_c[x]": "passed",
                                       "test_d": "failed"})
    lines = summary(first, rerun)
    flaky = [l for l in lines if l.startswith("FLAKY")]
    assert flaky == ["FLAKY (passed on rerun): test_mod::test_b",
                     "FLAKY (passed on rerun): test_mod::test_c[x]"], lines
    assert any("3 failed in the first run: 2 passed on rerun (flaky), 1 failed again" in l
               for l in lines), lines


def test_no_first_report_names_nothing(tmp_path):
    rerun = junit(tmp_path / "2.xml", {"test_b": "passed"})
    lines = summary(tmp_path / "missing.xml", rerun)
    assert not [l for l in lines if l.startswith("FLAKY")], lines
    assert any("no report" in l for l in lines), lines
