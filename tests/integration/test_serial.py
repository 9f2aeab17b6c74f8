"""PUT /serial (Firecracker's SerialDevice): the guest's console goes to
serial_out_path instead of Ember's stdout, opened at InstanceStart as
Firecracker opens it (created if absent, O_NONBLOCK), and a file nobody
reads never stops the guest."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import time

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done

AFTER_START = "The requested operation is not supported after starting the microVM."


def script_args(script: str, end: str = "reboot") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", end=end, extra=f"ember.script={code}")


def boot(c, kernel, initramfs, boot_args):
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel),
                                    "initrd_path": str(initramfs), "boot_args": boot_args}),
             204, None, "PUT /boot-source")
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204, None,
             "PUT /machine-config")
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT), 204,
             None, "PUT /actions InstanceStart")


def wait_for_text(path, regex, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_bytes().decode(errors="replace") if path.exists() else ""
        m = re.search(regex, text)
        if m:
            return text, m
        time.sleep(0.2)
    return text, None


def test_put_serial_validation(api_vm, workdir):
    c = api_vm.client()
    check_ok(c.put("/serial", {"serial_out_path": str(workdir / "console.log")}), 204, None,
             "PUT /serial")
    check_ok(c.put("/serial", {}), 204, None, "PUT /serial without a path (stdout)")
    check_error(c.put("/serial", {"serial_out_pat": "x"}), "serial_out_pat",
                context="unknown field")
    check_error(c.put("/serial", {"serial_out_path": 3}), "serial_out_path", context="not a string")
    check_error(c.put("/serial", {"rate_limiter": {"size": 1, "refill_time": 1}}),
                "rate_limiter", context="a limit Ember would not apply")
    check_error(c.get("/serial"), "Invalid request", context="GET /serial")
    # Firecracker keeps it out of GET /vm/config (and of the config file).
    assert "serial" not in c.get("/vm/config").body


@pytest.mark.boot
def test_console_goes_to_serial_out_path(api_vm, kernel_vmlinux, initramfs, workdir):
    out = workdir / "console.log"
    assert not out.exists()
    c = api_vm.client()
    check_ok(c.put("/serial", {"serial_out_path": str(out)}), 204, None, "PUT /serial")
    # The guest stays up (ember.end=wait): its input is not Ember's stdin
    # any more, so it is stopped by the harness at the end.
    boot(c, kernel_vmlinux, initramfs, script_args("echo EMBER-SERIAL=in-the-file", "wait"))
    text, m = wait_for_text(out, hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    assert m, api_vm.proc.report(f"no hook marker in {out}: {text[-2000:]!r}")
    assert "EMBER-SERIAL=in-the-file" in text
    check_error(c.put("/serial", {"serial_out_path": str(out)}), AFTER_START,
                context="PUT /serial after start")
    assert api_vm.proc.proc.poll() is None, api_vm.proc.report("ember ended")
    assert not any("EMBER-" in line for line in api_vm.proc.console_lines()), \
        api_vm.proc.report("guest console lines on stdout despite serial_out_path")
    assert out.stat().st_mode & 0o600 == 0o600, oct(out.stat().st_mode)


@pytest.mark.boot
def test_fifo_nobody_reads_never_stops_the_guest(api_vm, kernel_vmlinux, initramfs, workdir):
    """A FIFO nobody reads: Ember opens it O_RDWR|O_NONBLOCK (as
    Firecracker), the pipe and the console queue fill, the rest is dropped
    and counted; the guest runs to its end."""
    fifo = workdir / "console.fifo"
    os.mkfifo(fifo)
    # The test holds the pipe open, never reading, shrunk to a page: each
    # console byte is a port exit, and the nested test host's emulated CPU
    # fails about once in 1-2 million of those (docs/reliability.md, "A
    # FIFO nobody reads"): the fewer bytes fill it, the rarer that is.
    held = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.fcntl(held, fcntl.F_SETPIPE_SZ, 4096)
        metrics = workdir / "metrics.json"
        c = api_vm.client()
        check_ok(c.put("/metrics", {"metrics_path": str(metrics)}), 204, None, "PUT /metrics")
        check_ok(c.put("/serial", {"serial_out_path": str(fifo)}), 204, None, "PUT /serial")
        # 96 KiB of console output: more than the pipe (4 KiB) and the
        # console queue (64 KiB) hold.
        boot(c, kernel_vmlinux, initramfs,
             script_args("head -c 98304 /dev/zero | tr '\\0' x > /dev/console"))
        # Within pytest's own 300 s, so that a stall fails with Ember's
        # report (its threads' states) rather than a bare timeout; it
        # takes ~20 s.
        rc = api_vm.proc.wait_exit(BOOT_TIMEOUT + 2 * STEP_TIMEOUT + EXIT_TIMEOUT)
    finally:
        os.close(held)
    assert rc == 0, api_vm.proc.report(f"ember {describe_returncode(rc)}")
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    missed = sum(line["uart"]["missed_write_count"] for line in lines)
    assert missed > 0, f"uart: {[line['uart'] for line in lines]}"
