"""tools/rerun-summary.py: a test that passed only on its rerun is named,
one "FLAKY (passed on rerun): <test>" line each (tools/pytest-rerun.sh
prints them after pytest's summary, so a rerun shows up in CI output)."""

from __future__ import annotations

import os
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


def summary(first: Path | str, rerun: Path) -> list[str]:
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


def test_each_test_that_passed_only_in_a_later_attempt_is_named(tmp_path):
    """tools/run-tests.sh after a test-host crash: the outcomes conftest.py
    logged across attempts name each test that failed in one attempt, or
    was running when its test host died, and passed in a later one; one
    that failed and passed within an attempt is the in-attempt rerun's to
    name, and a failed teardown stays a failure."""
    log = tmp_path / "outcomes.txt"
    log.write_text("\n".join([
        "1 started test_mod.py::test_ok",
        "1 passed test_mod.py::test_ok",
        "1 started test_mod.py::test_flaky[x]",
        "1 failed test_mod.py::test_flaky[x]",       # attempt 1 fails, host crashes
        "1 started test_mod.py::test_rerun",
        "1 failed test_mod.py::test_rerun",
        "1 started test_mod.py::test_rerun",
        "1 passed test_mod.py::test_rerun",          # passed on the in-attempt rerun
        "1 failed test_mod.py::test_broken",
        "1 failed test_mod.py::test_teardown",
        "1 started test_mod.py::test_lost",          # the test host died under it
        "2 passed test_mod.py::test_flaky[x]",
        "2 failed test_mod.py::test_broken",
        "2 started test_mod.py::test_lost",
        "2 passed test_mod.py::test_lost",
        "2 passed test_mod.py::test_teardown",
        "2 failed test_mod.py::test_teardown",       # call passed, teardown failed
        "3 passed test_mod.py::tes",                 # a new test, passed at once
        "3 pas",                                     # cut short by a crash: ignored
    ]) + "\n")
    (tmp_path / "outcomes.txt.reports").write_text(
        "@@ 1 test_mod.py::test_broken [call]\nAssertionError: not this one\n"
        "@@ 1 test_mod.py::test_flaky[x] [call]\nAssertionError: the guest said EMBER-IN=00\n")
    lines = summary("--attempts", log)
    # The report of the failure comes with its FLAKY line.
    at = lines.index("FLAKY (passed in attempt 2 after failing in attempt 1): "
                     "test_mod.py::test_flaky[x]")
    assert "AssertionError: the guest said EMBER-IN=00" in lines[at + 2], lines
    assert not any("not this one" in l for l in lines), lines
    flaky = [l for l in lines if l.startswith("FLAKY")]
    assert flaky == [
        "FLAKY (passed in attempt 2 after failing in attempt 1): test_mod.py::test_flaky[x]",
        "FLAKY (passed in attempt 2; the test host died under it in attempt 1): "
        "test_mod.py::test_lost"], lines
    assert any(l.startswith("2 tests failed or lost their test host in one attempt") for l in lines), lines


def test_conftest_logs_each_outcome_with_its_attempt(tmp_path):
    """The log above is what conftest.py writes: a pytest run with
    EMBER_TEST_OUTCOMES and EMBER_TEST_ATTEMPT set logs one line per test
    started and per test passed or failed, with the attempt."""
    here = Path(__file__).resolve().parent
    for name in ("conftest.py", "ember_harness.py", "hostdiag.py"):
        (tmp_path / name).write_text((here / name).read_text())
    (tmp_path / "test_x.py").write_text("def test_pass():\n    pass\n\n"
                                       "def test_fail():\n    assert False\n")
    log = tmp_path / "outcomes.txt"
    env = dict(os.environ, EMBER_TEST_OUTCOMES=str(log), EMBER_TEST_ATTEMPT="3")
    env.pop("EMBER_TEST_PROGRESS", None)
    run = subprocess.run(["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-c", "/dev/null", "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert sorted(log.read_text().splitlines()) == [
        "3 failed test_x.py::test_fail", "3 passed test_x.py::test_pass",
        "3 started test_x.py::test_fail", "3 started test_x.py::test_pass"], run.stdout
    # The failure's report is kept, under the line rerun-summary.py looks for.
    kept = (tmp_path / "outcomes.txt.reports").read_text()
    assert kept.startswith("@@ 3 test_x.py::test_fail [call]\n") and "assert False" in kept, kept
