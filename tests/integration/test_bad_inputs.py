"""Bad inputs: ember must refuse them quickly and clearly.

Each case starts from a config that boots (the valid_config fixture) and
breaks exactly one thing, so a VMM that ignores the problem boots the guest
instead of failing (and the test fails: status 0, or no exit in time).

The contract for every error: a non-zero exit status (not a signal), within
ERROR_TIMEOUT, and stderr holding exactly one non-empty line,
`ember: error: <message>`, whose message names the problem.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from ember_harness import ERROR_TIMEOUT, describe_returncode, guest_boot_args

ERROR_LINE = re.compile(r"^ember: error: \S")


def expect_error(proc, *keywords: str) -> str:
    """Check the error contract; keywords: the message must contain one (any case)."""
    rc = proc.wait_exit(ERROR_TIMEOUT)
    assert rc > 0, proc.report(f"expected a non-zero exit status, but ember {describe_returncode(rc)}")
    lines = [line for line in proc.log_lines() if line.strip()]
    assert len(lines) == 1, proc.report(f"expected exactly one non-empty stderr line, got {len(lines)}")
    line = lines[0]
    assert ERROR_LINE.match(line), proc.report(f"stderr line does not read 'ember: error: <message>': {line!r}")
    assert any(k.lower() in line.lower() for k in keywords), \
        proc.report(f"error message does not mention any of {list(keywords)}: {line!r}")
    return line


# --- kernel ---------------------------------------------------------------------

def test_missing_kernel_file(ember, workdir, valid_config):
    missing = workdir / "no-such-vmlinux"
    valid_config["boot-source"]["kernel_image_path"] = str(missing)
    expect_error(ember.start(config=valid_config), str(missing), "kernel")


def test_garbage_kernel(ember, workdir, valid_config):
    garbage = workdir / "garbage.bin"
    garbage.write_bytes(random.Random(0).randbytes(1024 * 1024))  # seeded: reproducible
    valid_config["boot-source"]["kernel_image_path"] = str(garbage)
    expect_error(ember.start(config=valid_config), "kernel")


@pytest.mark.parametrize("kernel_fixture", ["kernel_vmlinux", "kernel_bzimage"], ids=["vmlinux", "bzimage"])
def test_truncated_kernel(request, ember, workdir, valid_config, kernel_fixture):
    """The first 4 KiB: a valid ELF / bzImage header whose contents are missing."""
    kernel = request.getfixturevalue(kernel_fixture)
    truncated = workdir / f"truncated-{kernel.name}"
    with open(kernel, "rb") as f:
        truncated.write_bytes(f.read(4096))
    valid_config["boot-source"]["kernel_image_path"] = str(truncated)
    expect_error(ember.start(config=valid_config), "kernel")


# --- initrd ---------------------------------------------------------------------

def test_initrd_larger_than_guest_memory(ember, workdir, valid_config):
    huge = workdir / "huge.cpio"
    with open(huge, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse
    valid_config["boot-source"]["initrd_path"] = str(huge)
    valid_config["machine-config"]["mem_size_mib"] = 128
    expect_error(ember.start(config=valid_config), "initrd")


def test_missing_initrd_file(ember, workdir, valid_config):
    missing = workdir / "no-such.cpio.gz"
    valid_config["boot-source"]["initrd_path"] = str(missing)
    expect_error(ember.start(config=valid_config), str(missing), "initrd")


# --- machine-config -------------------------------------------------------------

@pytest.mark.parametrize("vcpus", [0, 33])
def test_vcpu_count_out_of_range(ember, valid_config, vcpus):
    valid_config["machine-config"]["vcpu_count"] = vcpus
    expect_error(ember.start(config=valid_config), "vcpu_count")


def test_zero_memory(ember, valid_config):
    valid_config["machine-config"]["mem_size_mib"] = 0
    expect_error(ember.start(config=valid_config), "mem_size_mib")


# --- boot-source ----------------------------------------------------------------

def test_boot_args_over_the_command_line_limit(ember, valid_config):
    """x86 kernel command line limit: 2048 bytes including the NUL."""
    base = guest_boot_args() + " ember.pad="
    boot_args = base + "x" * (4096 - len(base))
    valid_config["boot-source"]["boot_args"] = boot_args
    expect_error(ember.start(config=valid_config), "boot_args", "command line", "cmdline")


# --- config file ----------------------------------------------------------------

def test_unknown_top_level_key(ember, valid_config):
    valid_config["frobnicator-config"] = {"enabled": True}
    expect_error(ember.start(config=valid_config), "frobnicator-config")


def test_unknown_machine_config_key(ember, valid_config):
    valid_config["machine-config"]["frobnicate_level"] = 3
    expect_error(ember.start(config=valid_config), "frobnicate_level")


def test_malformed_json(ember, kernel_vmlinux):
    text = '{"boot-source": {"kernel_image_path": "%s", "boot_args": "console=ttyS0"' % kernel_vmlinux
    expect_error(ember.start(config_text=text), "json")


def test_missing_config_file(ember, workdir):
    missing = workdir / "no-such-config.json"
    expect_error(ember.start("--no-api", "--config-file", str(missing)), str(missing), "config")


# --- command line ---------------------------------------------------------------

def test_no_api_without_config_file(ember):
    expect_error(ember.start("--no-api"), "config")


def test_unknown_cli_flag(ember, valid_config):
    expect_error(ember.start("--frobnicate", config=valid_config), "frobnicate")


def project_version() -> str:
    meson_build = Path(__file__).resolve().parents[2] / "meson.build"
    m = re.search(r"\bversion\s*:\s*'([^']+)'", meson_build.read_text())
    assert m, f"no project version in {meson_build}"
    return m.group(1)


def test_version(ember):
    proc = ember.start("--version")
    rc = proc.wait_exit(ERROR_TIMEOUT)
    assert rc == 0, proc.report(f"--version: ember {describe_returncode(rc)}, expected status 0")
    version = project_version()
    assert any(version in line for line in proc.console_lines()), \
        proc.report(f"--version: stdout does not show the project version {version}")


def test_help(ember):
    proc = ember.start("--help")
    rc = proc.wait_exit(ERROR_TIMEOUT)
    assert rc == 0, proc.report(f"--help: ember {describe_returncode(rc)}, expected status 0")
    usage = "\n".join(proc.console_lines())
    for option in ("--config-file", "--no-api"):
        assert option in usage, proc.report(f"--help: stdout does not mention {option}")
