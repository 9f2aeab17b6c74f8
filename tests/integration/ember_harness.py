"""Process harness for Ember's integration tests.

Starts `ember` with pipes on stdin/stdout/stderr, collects its output on
reader threads and lets a test wait for a line matching a regex. Timeouts are
failure bounds only: a wait returns as soon as the line appears and fails at
once when Ember exits before it does. Every failure kills the process and
puts the command, exit status, config, console tail and stderr tail in the
failure message.

conftest.py wraps this in fixtures; test modules import the constants and
helpers below.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hostdiag import thread_states


def _timeout_scale() -> float:
    raw = os.environ.get("EMBER_TEST_TIMEOUT_SCALE", "1")
    try:
        scale = float(raw)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise RuntimeError(f"EMBER_TEST_TIMEOUT_SCALE={raw!r}: expected a positive number")
    return scale


_SCALE = _timeout_scale()

# Failure bounds (seconds). Guests are slow under nested TCG (a boot to init
# takes 3-15 s in the test host), but a guest that stalls there (see
# tools/testhost/README.md, "Known problem") should fail its test within
# minutes, so that the rerun of failed tests still fits in the run.
BOOT_TIMEOUT = 60 * _SCALE          # start of ember -> "EMBER-INIT: started"
DEBIAN_BOOT_TIMEOUT = 120 * _SCALE  # same, for the (much larger) Debian kernel
STEP_TIMEOUT = 60 * _SCALE          # one guest step after init (a hook, an echo)
EXIT_TIMEOUT = 60 * _SCALE          # guest reboot -> ember exits
ERROR_TIMEOUT = 30 * _SCALE         # bad input -> ember exits with an error

BASE_BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off"
INIT_STARTED = r"EMBER-INIT: started"

_TAIL_LINES = 60
_CONFIG_CHARS = 2000


def hook_done(hook: str) -> str:
    """Regex for the line the guest init prints after running a hook."""
    return rf"EMBER-HOOK: {re.escape(hook)} rc=(-?\d+)"


def guest_boot_args(hook: str | None = None, end: str = "reboot", extra: str = "",
                    verbose: bool = False) -> str:
    """Kernel command line for the Ember test initramfs.

    Silent kernel unless verbose: each console byte is a VM exit, which the
    nested test host makes slow, and kernel messages printed while a hook
    writes would land inside the hook's marker lines. loglevel=1, not just
    `quiet`: nested guests in the test host sometimes stall on a corrupted
    page-table walk, QEMU's as much as Ember's (tools/testhost/README.md,
    "Known problem"); the more console exits, the likelier, and with
    loglevel=1 it has not been seen. Userspace output (the markers) goes
    through the tty driver.
    """
    parts = [BASE_BOOT_ARGS]
    if not verbose:
        parts.append("quiet loglevel=1")
    if extra:
        parts.append(extra)
    if hook:
        parts.append(f"ember.hook={hook}")
    parts.append(f"ember.end={end}")
    return " ".join(parts)


def vm_config(kernel, initrd=None, *, boot_args: str, vcpus: int = 1, mem_mib: int = 128) -> dict:
    """A Firecracker-format VM config (boot-source + machine-config)."""
    boot_source = {"kernel_image_path": str(kernel), "boot_args": boot_args}
    if initrd is not None:
        boot_source["initrd_path"] = str(initrd)
    return {
        "boot-source": boot_source,
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": mem_mib},
    }


@functools.lru_cache(maxsize=None)
def kernel_release(path) -> str:
    """The `uname -r` of a kernel image, read from the image itself.

    bzImage: the setup header's kernel_version string. ELF vmlinux: the
    linux_banner string ("Linux version <release> (...").
    """
    data = Path(path).read_bytes()
    if data[:4] == b"\x7fELF":
        for m in re.finditer(rb"Linux version (\S+) \(", data):
            if b"%" not in m.group(1):
                return m.group(1).decode("ascii", "replace")
    elif data[0x202:0x206] == b"HdrS":
        (ptr,) = struct.unpack_from("<H", data, 0x20E)
        if ptr:
            start = ptr + 0x200
            version = data[start:start + 512].split(b"\0", 1)[0].split()
            if version:
                return version[0].decode("ascii", "replace")
    pytest.fail(f"{path}: cannot read the kernel release from the image "
                "(neither an ELF vmlinux with a Linux banner nor a bzImage with a version string)",
                pytrace=False)


def describe_returncode(rc) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"killed by {name}"
    return f"exited with status {rc}"


class StreamCollector:
    """Reads one pipe on a thread and keeps its output as a list of lines.

    Lines are decoded as UTF-8 (invalid bytes replaced) with CRs removed (the
    guest's serial console ends lines with CRLF). A trailing partial line is
    kept back until its newline arrives, or until EOF.
    """

    def __init__(self, pipe, name: str):
        self.name = name
        self._pipe = pipe
        self._lines: list[str] = []
        self._partial = b""
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"ember-{name}", daemon=True)
        self._thread.start()

    @staticmethod
    def _decode(raw: bytes) -> str:
        return raw.decode("utf-8", "replace").replace("\r", "")

    def _run(self):
        fd = self._pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    if self._partial:
                        self._lines.append(self._decode(self._partial))
                        self._partial = b""
                    self._eof = True
                    self._cond.notify_all()
                    return
                *complete, self._partial = (self._partial + chunk).split(b"\n")
                self._lines.extend(self._decode(line) for line in complete)
                self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def wait_for(self, regex: re.Pattern, deadline: float):
        """First complete line matching regex: (match, None), or (None, "eof"|"timeout")."""
        index = 0
        with self._cond:
            while True:
                while index < len(self._lines):
                    m = regex.search(self._lines[index])
                    if m:
                        return m, None
                    index += 1
                if self._eof:
                    return None, "eof"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, "timeout"
                self._cond.wait(remaining)

    def join(self, timeout: float):
        self._thread.join(timeout)


class EmberProcess:
    """One running `ember`. Use EmberLauncher.start() to make one."""

    def __init__(self, argv: list[str], cwd: Path, config_path: Path | None):
        self.argv = argv
        self.config_path = config_path
        self._killed = False
        try:
            self.proc = subprocess.Popen(argv, cwd=cwd, bufsize=0, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            pytest.fail(f"cannot start {' '.join(argv)}: {e}", pytrace=False)
        self.console = StreamCollector(self.proc.stdout, "stdout")
        self.log = StreamCollector(self.proc.stderr, "stderr")

    # --- output --------------------------------------------------------------

    def console_lines(self) -> list[str]:
        return self.console.lines()

    def log_lines(self) -> list[str]:
        return self.log.lines()

    def expect(self, pattern: str, timeout: float) -> re.Match:
        """Wait for a guest console (stdout) line matching pattern."""
        return self._expect(self.console, "guest console", pattern, timeout)

    def expect_log(self, pattern: str, timeout: float) -> re.Match:
        """Wait for an ember stderr line matching pattern."""
        return self._expect(self.log, "stderr", pattern, timeout)

    def _expect(self, stream: StreamCollector, what: str, pattern: str, timeout: float) -> re.Match:
        m, why = stream.wait_for(re.compile(pattern), time.monotonic() + timeout)
        if m:
            return m
        if why == "eof":
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.fail(f"ember {describe_returncode(self.proc.poll())} (and closed {stream.name}) "
                      f"before the {what} showed /{pattern}/")
        self.fail(f"no {what} line matched /{pattern}/ within {timeout:.0f} s")

    def value(self, name: str) -> str:
        """The value of the first `NAME=value` item on the guest console."""
        # Values are words such as "4" or "6.1.0-56-amd64"; stopping at any
        # other character keeps a stray kernel message out of the value.
        regex = re.compile(rf"{re.escape(name)}=([\w.+~-]+)")
        for line in self.console_lines():
            m = regex.search(line)
            if m:
                return m.group(1)
        self.fail(f"the guest console has no {name}=... line")

    # --- input ---------------------------------------------------------------

    def send(self, text: str):
        """Write text to ember's stdin (the guest's serial input)."""
        data = text.encode()
        error = None
        try:
            while data:
                written = self.proc.stdin.write(data)
                data = data[written:]
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            error = e
        if error is not None:  # fail outside the except: no chained traceback
            self.fail(f"cannot write to ember's stdin: {error!r}")

    # --- lifetime ------------------------------------------------------------

    def wait_exit(self, timeout: float) -> int:
        """Wait for ember to exit; returns its exit status (negative: signal)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:  # fail outside the except: no chained traceback
            self.fail(f"ember did not exit within {timeout:.0f} s")
        self._join_readers()
        return rc

    def still_running_after(self, seconds: float) -> bool:
        """Observe the process for a fixed window (a negative check)."""
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return True
        self._join_readers()
        return False

    def kill(self):
        if self.proc.poll() is None:
            self._killed = True
            self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self._join_readers()

    def _join_readers(self):
        self.console.join(10)
        self.log.join(10)

    # --- failure reporting ---------------------------------------------------

    def fail(self, headline: str):
        # While it still runs: where each thread waits.
        threads = thread_states(self.proc.pid) if self.proc.poll() is None else []
        self.kill()
        pytest.fail(self.report(headline, threads))

    def report(self, headline: str = "", threads: list[str] | None = None) -> str:
        status = describe_returncode(self.proc.poll())
        if self._killed:
            status += " (killed by the test harness)"
        parts = [headline, f"command: {' '.join(self.argv)}", f"status: {status}"]
        if self.config_path is not None and self.config_path.exists():
            text = self.config_path.read_text(errors="replace")
            if len(text) > _CONFIG_CHARS:
                text = text[:_CONFIG_CHARS] + f"... ({len(text)} chars)"
            parts.append(f"config {self.config_path.name}: {text}")
        for title, lines in (("guest console (stdout)", self.console_lines()),
                             ("ember stderr", self.log_lines())):
            shown = lines[-_TAIL_LINES:]
            parts.append(f"--- {title}: last {len(shown)} of {len(lines)} lines ---")
            parts.extend(shown)
        if threads:
            parts.append("--- ember threads before the kill ---")
            parts.extend(threads)
        parts.append("--- end ---")
        return "\n".join(p for p in parts if p != "")


class EmberLauncher:
    """Starts ember processes for one test and kills leftovers at teardown."""

    def __init__(self, ember_bin: Path, workdir: Path, netns: str | None = None):
        self.ember_bin = Path(ember_bin)
        self.workdir = Path(workdir)
        self.netns = netns  # run ember in this network namespace (its name under /run/netns)
        self._procs: list[EmberProcess] = []

    def write_config(self, config: dict | None = None, text: str | None = None) -> Path:
        path = self.workdir / f"vm_config-{len(self._procs)}.json"
        path.write_text(text if text is not None else json.dumps(config, indent=2))
        return path

    def start(self, *args: str, config: dict | None = None, config_text: str | None = None) -> EmberProcess:
        """Start ember with args.

        With config (a dict) or config_text (raw file contents), the config is
        written to the work dir and `--no-api --config-file PATH` come first.
        """
        # nsenter joins the network namespace only (no mount namespace and
        # sysfs remount, which `ip netns exec` adds) and execs ember itself:
        # the process is ember's, for signals and exit statuses.
        argv = (["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []) + \
            [str(self.ember_bin)]
        config_path = None
        if config is not None or config_text is not None:
            config_path = self.write_config(config, config_text)
            argv += ["--no-api", "--config-file", str(config_path)]
        argv += list(args)
        proc = EmberProcess(argv, self.workdir, config_path)
        self._procs.append(proc)
        return proc

    def close(self):
        for proc in self._procs:
            proc.kill()
