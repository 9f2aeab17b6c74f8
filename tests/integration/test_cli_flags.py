"""Firecracker's command-line flags on ember.

Every flag in Firecracker's `--help` (its src/firecracker/src/main.rs) is
either accepted with Firecracker's meaning or refused with a reason that
names the missing feature; none is an "unknown option" (exit 153). These
need only the ember binary: no guest boots.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from api_client import check_error, check_ok
from ember_harness import ERROR_TIMEOUT, EXIT_TIMEOUT, describe_returncode
from test_bad_inputs import expect_error

EXIT_ARG_PARSING = 153
EXIT_BAD_CONFIGURATION = 152

# Firecracker's flags (name, an example value or None for a switch).
FIRECRACKER_FLAGS = [
    ("api-sock", "{workdir}/api.sock"), ("id", "vm-1"), ("start-time-us", "1"),
    ("start-time-cpu-us", "1"), ("parent-cpu-time-us", "1"),
    ("config-file", "{workdir}/vm.json"), ("metadata", "{workdir}/md.json"),
    ("no-api", None), ("log-path", "{workdir}/log"), ("level", "Info"), ("module", "api"),
    ("show-level", None), ("show-log-origin", None), ("metrics-path", "{workdir}/metrics"),
    ("boot-timer", None), ("version", None), ("snapshot-version", None),
    ("describe-snapshot", "{workdir}/snap"), ("http-api-max-payload-size", "51200"),
    ("mmds-size-limit", "51200"), ("enable-pci", None), ("help", None),
    ("no-seccomp", None),
    ("seccomp-filter", "{workdir}/filter.bpf"),
]


def run_ember(ember_bin, *args, timeout=ERROR_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(ember_bin), *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("flag,value", FIRECRACKER_FLAGS)
def test_every_firecracker_flag_is_known(ember_bin, workdir, flag, value):
    """`ember --FLAG [VALUE] --version`: an accepted flag lets --version print
    and exit 0 (getopt reads them in order); a refused one exits non-zero
    with one `ember: error:` line that is not "unknown option"."""
    (workdir / "md.json").write_text("{}")
    argv = [f"--{flag}"] + ([value.format(workdir=workdir)] if value else []) + ["--version"]
    run = run_ember(ember_bin, *argv)
    if run.returncode == 0:
        # --help and --snapshot-version print their own line and exit first.
        assert run.stdout.startswith("Ember v") or flag == "help" or \
            (flag == "snapshot-version" and run.stdout == "v1.0.0\n"), (argv, run.stdout)
        return
    lines = [l for l in run.stderr.splitlines() if l.strip()]
    assert run.returncode != EXIT_ARG_PARSING and len(lines) == 1 and \
        lines[0].startswith("ember: error: ") and "unknown option" not in lines[0], \
        f"ember {' '.join(argv)}: {describe_returncode(run.returncode)}, stderr {run.stderr!r}"


@pytest.mark.parametrize("argv,words", [
    (["--enable-pci"], ["PCI", "not supported"]),
], ids=["enable-pci"])
def test_features_ember_lacks_are_refused_with_the_reason(ember_bin, argv, words):
    run = run_ember(ember_bin, *argv)
    assert run.returncode not in (0, EXIT_ARG_PARSING), (argv, run.returncode, run.stderr)
    line = run.stderr.strip()
    assert line.startswith("ember: error: ") and "\n" not in line, repr(run.stderr)
    for w in words:
        assert w.lower() in line.lower(), f"{argv}: {line!r} does not say {w!r}"


def test_snapshot_version_prints_the_state_file_format(ember_bin):
    run = run_ember(ember_bin, "--snapshot-version")
    assert run.returncode == 0 and run.stdout == "v1.0.0\n", run


def test_describe_snapshot_names_a_file_it_cannot_describe(ember_bin, workdir):
    bad = workdir / "not-a-snapshot"
    bad.write_text("{\"not\": \"an Ember state file, only some JSON\"}")
    for path, words in ((str(bad), "bad magic"), ("/nonexistent/snap", "/nonexistent/snap")):
        run = run_ember(ember_bin, "--describe-snapshot", path)
        line = run.stderr.strip()
        assert run.returncode not in (0, EXIT_ARG_PARSING), run
        assert line.startswith("ember: error: --describe-snapshot") and words in line, line


def test_a_flag_without_its_value_is_named(ember_bin):
    run = run_ember(ember_bin, "--metrics-path")
    assert run.returncode == EXIT_ARG_PARSING, run
    assert run.stderr.strip() == "ember: error: option --metrics-path needs a value", run.stderr


# --- --metrics-path -----------------------------------------------------------------------

def test_metrics_path_sets_metrics_up_at_start(api_ember, workdir):
    path = workdir / "metrics.json"
    vm = api_ember.start("--metrics-path", str(path))
    c = vm.client()
    assert path.exists(), "--metrics-path did not open the file at start"
    msg = check_error(c.put("/metrics", {"metrics_path": str(workdir / "other.json")}))
    assert msg == ("Metrics error: Cannot initialize the metrics system due to bad user input: "
                   "Reinitialization of metrics not allowed."), msg
    check_ok(c.get("/machine-config"), 200)
    vm.proc.proc.terminate()
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, vm.proc.report(f"SIGTERM: {describe_returncode(rc)}")
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert lines, f"no metrics line in {path} at exit"
    assert lines[-1]["get_api_requests"]["machine_cfg_count"] == 1, lines[-1]["get_api_requests"]
    assert lines[-1]["put_api_requests"]["metrics_fails"] == 1, lines[-1]["put_api_requests"]


def test_metrics_path_and_a_config_files_metrics_conflict(ember, workdir, valid_config):
    valid_config["metrics"] = {"metrics_path": str(workdir / "a.json")}
    proc = ember.start("--metrics-path", str(workdir / "b.json"), config=valid_config)
    line = expect_error(proc, "Reinitialization of metrics not allowed")
    assert proc.proc.returncode == EXIT_BAD_CONFIGURATION, line


def test_metrics_path_that_cannot_open(ember, workdir, valid_config):
    bad = workdir / "no-such-dir" / "m.json"
    expect_error(ember.start("--metrics-path", str(bad), config=valid_config), str(bad))


# --- --module -------------------------------------------------------------------------------

@pytest.mark.parametrize("module,logged", [("api", True), ("vmm", False)])
def test_module_filters_the_log(api_ember, workdir, module, logged):
    log = workdir / "ember.log"
    vm = api_ember.start("--log-path", str(log), "--level", "Debug", "--module", module)
    check_ok(vm.client().get("/version"), 200)
    text = log.read_text()
    assert ("GET /version" in text) == logged, \
        f"--module {module}: the API server's line {'missing' if logged else 'logged'}:\n{text}"


# --- --metadata -------------------------------------------------------------------------------

def test_metadata_file_is_the_mmds_contents_at_start(api_ember, workdir):
    data = {"latest": {"meta-data": {"ami-id": "ami-12345678", "tags": ["a", "b"]}}}
    (workdir / "md.json").write_text(json.dumps(data, indent=2))
    vm = api_ember.start("--metadata", str(workdir / "md.json"))
    c = vm.client()
    assert check_ok(c.get("/mmds"), 200) == data
    # PATCH works at once: the file counts as the first PUT.
    check_ok(c.patch("/mmds", {"latest": {"meta-data": {"ami-id": "ami-0"}}}), 204)
    assert check_ok(c.get("/mmds"), 200)["latest"]["meta-data"] == \
        {"ami-id": "ami-0", "tags": ["a", "b"]}


@pytest.mark.parametrize("contents,words", [
    (None, ["cannot read", "No such file"]),
    ('{"a": ', ["not valid JSON"]),
    ('{"a": 1, "a": 2}', ["not valid JSON", "duplicate"]),
    ('"' + "x" * 60000 + '"', ["doesn't fit"]),
], ids=["missing", "truncated", "duplicate-key", "over-the-limit"])
def test_bad_metadata_file(ember, workdir, contents, words):
    path = workdir / "md.json"
    if contents is not None:
        path.write_text(contents)
    proc = ember.start("--api-sock", str(workdir / "api.sock"), "--metadata", str(path))
    line = expect_error(proc, words[0])
    for w in words[1:]:
        assert w.lower() in line.lower(), line
    assert "--metadata" in line, line


def test_metadata_with_a_config_file(ember, workdir, valid_config):
    """--no-api --config-file with --metadata: the store is filled before the
    guest starts (the guest reads it through MMDS in test_mmds.py's way);
    here: a bad file stops ember before any boot."""
    (workdir / "md.json").write_text("[1, 2")
    expect_error(ember.start("--metadata", str(workdir / "md.json"), config=valid_config),
                 "--metadata")


@pytest.mark.parametrize("argv,word", [
    (["--api", "/tmp/x.sock"], "--api"),                 # no abbreviations
    (["-api-sock", "/tmp/x.sock"], "-api-sock"),          # no single dash
    (["--api-sock=/tmp/x.sock"], "--api-sock=/tmp/x.sock"),  # the value is the next word
    (["--id", "a", "--id", "b"], "--id"),                # once each
    (["--level", "--no-api"], "--level"),                # a value never starts with --
], ids=["abbreviation", "single-dash", "equals", "twice", "value-is-a-flag"])
def test_flags_are_read_as_firecracker_reads_them(ember_bin, argv, word):
    """Firecracker's own argument parser, not getopt's: exactly `--name`,
    then its value as the next word; each flag once. Anything else is an
    argument error (exit 153) naming the word."""
    run = run_ember(ember_bin, *argv)
    line = run.stderr.strip()
    assert run.returncode == EXIT_ARG_PARSING, (argv, run.returncode, run.stderr)
    assert line.startswith("ember: error: ") and word in line, (argv, line)
