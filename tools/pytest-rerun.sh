#!/usr/bin/env bash
# Runs pytest (this script's arguments are its command line) and, if it
# fails, once more for the failed tests only (--lf; the whole suite if
# pytest itself died without recording its failures: --lfnf=all). A test
# that passed only on its rerun is a finding, not a pass: after pytest's own
# summary, each gets a line of its own, "FLAKY (passed on rerun): <test>"
# (tools/rerun-summary.py compares a JUnit XML report of each attempt).
# Exit status: the last pytest's.
set -u
here=$(cd "$(dirname "$0")" && pwd)
reports=$(mktemp -d "${TMPDIR:-/tmp}/pytest-rerun.XXXXXX")
trap 'rm -rf "$reports"' EXIT
rc=0
"$@" --junitxml="$reports/1.xml" || rc=$?
[ "$rc" -eq 0 ] && exit 0
echo "== rerunning the failed tests once"
rc=0
"$@" --lf --lfnf=all --junitxml="$reports/2.xml" || rc=$?
/usr/bin/python3 "$here/rerun-summary.py" "$reports/1.xml" "$reports/2.xml"
exit "$rc"
