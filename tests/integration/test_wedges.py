"""Wedges: inputs and guests that used to stop Ember's VMM thread for good,
so that the API never answered and SIGTERM was ignored (issue 16).

Each test fails by a bound (the API's request timeout, the exit timeout)
where Ember would have hung, and checks afterwards that the API still
answers and that SIGTERM still ends Ember with status 0.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from api_client import REQUEST_TIMEOUT, ApiClient, check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args
from test_api import api_boot_sequence, fake_boot_files, vm_config

# A refusal must come at once, not after some I/O timeout.
PROMPT = 5.0
F_SETPIPE_SZ = 1031


def expect_sigterm_exit(vm, what: str):
    vm.proc.proc.send_signal(signal.SIGTERM)
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, vm.proc.report(f"{what}: SIGTERM, then ember {describe_returncode(rc)}")


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    resp = fn(*args, **kw)
    return resp, time.monotonic() - t0


# --- user-given paths that are not files ----------------------------------------

def test_fifo_boot_files_are_refused_promptly(api_vm, workdir):
    """A FIFO as kernel_image_path or initrd_path used to park the VMM thread
    in open() until some writer came: now a 400 naming the path, at once."""
    c = api_vm.client()
    kernel, initrd = fake_boot_files(workdir)
    fifo = workdir / "boot.fifo"
    os.mkfifo(fifo)
    for body, field in (({"kernel_image_path": str(fifo)}, "kernel_image_path"),
                        ({"kernel_image_path": kernel, "initrd_path": str(fifo)}, "initrd_path")):
        resp, took = timed(c.put, "/boot-source", body)
        check_error(resp, field, str(fifo), context=f"PUT /boot-source with {field} a FIFO")
        assert took < PROMPT, f"the refusal of a FIFO {field} took {took:.1f} s"
    empty = workdir / "empty-vmlinux"
    empty.write_bytes(b"")
    for path, words in ((workdir, ("directory",)), ("/dev/null", ("character device",)),
                        (empty, ("empty",))):
        check_error(c.put("/boot-source", {"kernel_image_path": str(path)}), str(path), *words,
                    context=f"PUT /boot-source with kernel_image_path {path}")
    check_ok(c.put("/boot-source", {"kernel_image_path": kernel, "initrd_path": initrd}), 204,
             None, "PUT /boot-source with regular files after the refusals")
    expect_sigterm_exit(api_vm, "after refused boot files")


@pytest.mark.parametrize("read_only", [True, False], ids=["ro", "rw"])
def test_drive_paths_that_are_not_disks_are_refused(api_vm, workdir, read_only):
    """A drive's path_on_host must be a regular file or a block device: a
    FIFO (read-only, it used to block the VMM thread in open()), a directory
    and a character device are refused at PUT time, naming the path."""
    c = api_vm.client()
    before = vm_config(c)
    fifo = workdir / "disk.fifo"
    os.mkfifo(fifo)
    for path, words in ((fifo, ("FIFO",)), (workdir, ("directory",)),
                        ("/dev/null", ("character device",))):
        body = {"drive_id": "data", "path_on_host": str(path), "is_root_device": False,
                "is_read_only": read_only}
        resp, took = timed(c.put, "/drives/data", body)
        check_error(resp, str(path), *words, context=f"PUT /drives/data path_on_host {path}")
        assert took < PROMPT, f"the refusal of {path} took {took:.1f} s"
    assert vm_config(c) == before, "a refused drive changed the configuration"
    disk = workdir / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": read_only}),
             204, None, "PUT /drives/data with a regular file")
    expect_sigterm_exit(api_vm, "after refused drives")


def test_log_and_metrics_fifos_open_at_once(api_vm, workdir):
    """log_path and metrics_path may be FIFOs (as in Firecracker): with no
    reader they open at once (non-blocking, read-write), never waiting for
    one, and the API goes on answering."""
    c = api_vm.client()
    log, metrics = workdir / "log.fifo", workdir / "metrics.fifo"
    os.mkfifo(log)
    os.mkfifo(metrics)
    for path, body in (("/logger", {"log_path": str(log), "level": "Debug"}),
                       ("/metrics", {"metrics_path": str(metrics)})):
        resp, took = timed(c.put, path, body)
        check_ok(resp, 204, None, f"PUT {path} with a FIFO nobody reads")
        assert took < PROMPT, f"PUT {path} with a FIFO took {took:.1f} s"
    # FlushMetrics is refused before start (as Firecracker): the API answers.
    check_error(c.put("/actions", {"action_type": "FlushMetrics"}), "before starting",
                context="FlushMetrics before start")
    expect_sigterm_exit(api_vm, "after FIFO log and metrics")


# --- host output nobody reads ---------------------------------------------------

class Unread:
    """ember --api-sock with stdout and stderr pipes that this test does not
    read (as a supervisor that stopped reading, or a pty nobody drains),
    stdin a pipe the test writes to."""

    def __init__(self, ember_bin, workdir, *args: str):
        self.sock = workdir / "api.sock"
        self.argv = [str(ember_bin), "--api-sock", str(self.sock), *args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=workdir, bufsize=0)
        # Small pipes (one page): they fill after little guest output,
        # which the nested test host makes slow.
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, 4096)
            except OSError:
                pass
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while not self._accepts():
            if self.proc.poll() is not None:
                self.fail(f"ember exited ({self.proc.returncode}) at start")
            if time.monotonic() > deadline:
                self.fail("the API socket did not accept a connection")
            time.sleep(0.01)
        self.client = ApiClient(self.sock, REQUEST_TIMEOUT, on_failure=self.fail)

    def _accepts(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(1)
            s.connect(str(self.sock))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def fail(self, headline: str):
        self.kill()
        pytest.fail(f"{headline}\ncommand: {' '.join(self.argv)}", pytrace=False)

    def read_until(self, marker: bytes, timeout: float) -> None:
        """Reads stdout until marker, then stops reading for good."""
        seen = b""
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), False)
        while marker not in seen:
            if time.monotonic() > deadline:
                self.fail(f"no {marker!r} on the console within {timeout:.0f} s; "
                          f"last output {seen[-300:]!r}")
            if self.proc.poll() is not None:
                self.fail(f"ember exited ({self.proc.returncode}) before {marker!r}")
            try:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            seen = (seen + chunk)[-4096:]

    def sigterm_exits(self, what: str):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"{what}: ember ignored SIGTERM for {EXIT_TIMEOUT:.0f} s")
        assert rc == 0, f"{what}: SIGTERM, then ember {describe_returncode(rc)}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def unread(ember_bin, workdir):
    made = []

    def start(*args: str) -> Unread:
        u = Unread(ember_bin, workdir, *args)
        made.append(u)
        return u
    yield start
    for u in made:
        u.kill()


def uart_counts(c, metrics) -> dict:
    check_ok(c.put("/actions", {"action_type": "FlushMetrics"}), 204, None, "FlushMetrics")
    return json.loads(metrics.read_text().splitlines()[-1])["uart"]


@pytest.mark.boot
def test_guest_printing_into_an_unread_stdout(unread, workdir, kernel_vmlinux, initramfs):
    """The guest prints in a loop and nobody reads Ember's stdout. Before, the
    vCPU blocked in write() under the serial lock once the pipe was full,
    and the first byte of input then blocked the VMM thread on that lock:
    no API, no SIGTERM. Now the console output that does not fit is dropped
    and counted (uart.missed_write_count), the guest keeps running, input
    and the API are served, and SIGTERM ends Ember. (Console output that
    is dropped at all shows the vCPU did not block: a blocked one drops
    nothing.)"""
    vm = unread()
    c = vm.client
    metrics = workdir / "metrics.json"
    check_ok(c.put("/metrics", {"metrics_path": str(metrics)}), 204, None, "PUT /metrics")
    flood = "echo EMBER-FLOOD-START; while :; do echo 0123456789abcdef0123456789abcdef; done"
    code = base64.b64encode(flood.encode()).decode()
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=1, mem_mib=128,
                      boot_args=guest_boot_args("script", end="wait",
                                                extra=f"ember.script={code}"))
    vm.read_until(b"EMBER-FLOOD-START", BOOT_TIMEOUT)
    # From here on nobody reads stdout: its pipe fills, then the queue.
    deadline = time.monotonic() + STEP_TIMEOUT
    while (uart := uart_counts(c, metrics))["missed_write_count"] == 0:
        if time.monotonic() > deadline:
            vm.fail(f"no console output dropped within {STEP_TIMEOUT:.0f} s of an unread "
                    f"stdout (the vCPU is blocked?): uart {uart}")
        time.sleep(0.5)
    # One byte of input: the VMM thread takes the serial lock for it.
    vm.proc.stdin.write(b"\n")
    for _ in range(5):
        check_ok(c.get("/"), 200, "InstanceInfo", "GET / with the console unread")
    vm.sigterm_exits("guest flooding an unread stdout")


def test_logger_on_an_unread_stderr(unread):
    """Debug lines for every request to a stderr nobody reads: far more than
    a pipe holds. Before, the logging thread blocked in write() holding the
    logger's lock, and every other thread with it. Now lines that do not fit
    are lost and counted, and the API keeps answering."""
    vm = unread("--level", "Debug")
    for i in range(3000):
        check_ok(vm.client.get("/version"), 200, None, f"GET /version {i} with stderr unread")
    vm.sigterm_exits("logging into an unread stderr")
