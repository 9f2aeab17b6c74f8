#!/usr/bin/python3
"""Soak test for Ember (issue 16): many VM lifecycles, one after another and
at once, and long-lived processes driven hard, with their file descriptors,
threads and memory measured before and after.

    tools/soak.py [--sequential N] [--parallel N] [--requests N] [--patches N]

Needs a KVM that boots a standard Linux guest: `make soak` runs it in the
nested test host (tools/testhost) when this machine's cannot (see
docs/reliability.md). EMBER_BIN, EMBER_KERNEL_VMLINUX and EMBER_INITRAMFS
name what it boots (tools/run-tests.sh's variables).

Phases (each prints its measurements; any failure makes the exit status 1):

- api: one `ember --api-sock` with no guest serves --requests requests
  (reads, valid and invalid PUTs, new connections, connections left idle
  then closed); its fds, threads and VmRSS must not grow.
- vmm: one ember boots a guest through the API, then takes --patches
  PATCHes (a drive's file swapped, its rate limiter changed), pauses and
  resumes, FlushMetrics; its fds, threads and VmRSS must not grow, and the
  guest must still answer on its console.
- sequential: --sequential lifecycles one after another: each ember boots
  a guest to its init, which reboots, and must exit 0 within a bound.
- parallel: --parallel embers at once, the same lifecycle each.

A VM still running at the bound is stuck: its report names where each of
its threads waits in the kernel (a vCPU in KVM_RUN is a guest that stopped
making progress; a thread on a futex or an fd is Ember's) and the host's
last KVM events. Where the host has tracefs (the test host), the trace stops
at the nested CPU's known fault: an exit with the test host's own rip
(tests/integration/hostdiag.py; --no-trace leaves tracing off). A lifecycle
that failed with that stop under one of its vCPU threads is the test host's
failure, not Ember's: it is listed as a SOAK TEST HOST FAULT and, in the
sequential phase, run again (at most MAX_FAULTS times). --vmm qemu runs the
lifecycle phases under QEMU's microvm instead, to tell the test host's own
failures at this pace from Ember's.

"Grow" means: after a warm-up of the same work, the fd count and the thread
count must not be higher afterwards, and VmRSS may grow by at most
--rss-slack KiB (the allocator keeps some slack; a leak of one buffer per
request grows far beyond it). For a VMM with a guest, VmRSS is counted
without the guest memory's resident part (/proc/PID/smaps), which the guest
fills as it runs.

With --testhost-chunk N (tools/soak.sh in the nested test host), this
script drives the test host itself: each phase runs in a test-host boot of
its own, the sequential one in chunks of N lifecycles. A test host that
freezes or crashes (tools/testhost/run's status 124/125: the emulated CPU's
own failures, tools/testhost/README.md) costs its chunk, which is run again
in a fresh one (at most --testhost-retries times), and every such loss is
reported: each Ember lifecycle is a process of its own, so chunks lose
nothing a lifecycle could show, while one frozen test host no longer ends
an hour of soak.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/integration"))
from hostdiag import (thread_states, trace_fault, trace_restart, trace_setup,  # noqa: E402
                      trace_tail)

BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1"
MARKER = b"EMBER-INIT: started"
ECHO_READY = b"EMBER-READY"
STUCK_TRACE_LINES = 30  # the test host's last KVM events in a stuck VM's report


# --- measuring a process ----------------------------------------------------------------

def guest_rss_kib(pid: int, guest_mib: int) -> int:
    """Resident KiB of the mappings exactly guest_mib MiB large: the guest's
    memory, which the guest itself fills as it runs (not Ember's growth)."""
    total, size = 0, None
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:") and size == guest_mib * 1024:
            total += int(line.split()[1])
    return total


def measure(pid: int, guest_mib: int = 0) -> dict:
    """fds (entries of /proc/PID/fd), threads and VmRSS (KiB) of a process;
    with guest_mib, VmRSS less the guest memory's resident part."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
    if guest_mib:
        rss -= guest_rss_kib(pid, guest_mib)
    return {"fds": fds, "threads": threads, "rss_kib": rss}


def growth(what: str, before: dict, after: dict, rss_slack_kib: int) -> list[str]:
    """The ways after grew over before, as failure messages (empty: none)."""
    bad = []
    for key in ("fds", "threads"):
        if after[key] > before[key]:
            bad.append(f"{what}: {key} grew from {before[key]} to {after[key]}")
    if after["rss_kib"] - before["rss_kib"] > rss_slack_kib:
        bad.append(f"{what}: VmRSS grew by {after['rss_kib'] - before['rss_kib']} KiB "
                   f"({before['rss_kib']} -> {after['rss_kib']}), more than {rss_slack_kib} KiB")
    return bad


# --- talking to ember --------------------------------------------------------------------

class Api:
    """HTTP/1.1 over ember's Unix socket, one keep-alive connection."""

    def __init__(self, path: str, timeout: float = 30):
        self.path, self.timeout = path, timeout
        self.conn = None

    def _connect(self):
        conn = http.client.HTTPConnection("localhost", timeout=self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        conn.sock = sock
        return conn

    def request(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = self._connect()
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.will_close:
            self.close()
        return resp.status, raw

    def expect(self, status: int, method: str, path: str, body=None) -> bytes:
        got, raw = self.request(method, path, body)
        if got != status:
            raise SoakError(f"{method} {path}: HTTP {got} {raw[:300]!r}, expected {status}")
        return raw

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SoakError(Exception):
    pass


class Ember:
    """One ember process: its console (stdout) collected on a thread."""

    def __init__(self, argv: list[str], cwd: str):
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.out, self.err = bytearray(), bytearray()
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(p, b), daemon=True)
                         for p, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._threads:
            t.start()

    def _read(self, pipe, buf):
        while chunk := os.read(pipe.fileno(), 65536):
            with self._cond:
                buf.extend(chunk)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_console(self, needle: bytes, timeout: float, start: int = 0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while needle not in self.out[start:]:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return needle in self.out[start:]
                self._cond.wait(min(left, 1))
            return True

    def tail(self) -> str:
        con = bytes(self.out[-600:]).decode(errors="replace").replace("\r", "")
        err = bytes(self.err[-600:]).decode(errors="replace")
        return f"status {self.proc.poll()}; console ...{con!r}; stderr ...{err!r}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._threads:
            t.join(5)


def wait_socket(path: str, ember: Ember, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ember.proc.poll() is not None:
            raise SoakError(f"ember exited before its API socket came up: {ember.tail()}")
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.05)  # polling a socket that is not there yet: no event to wait for
    raise SoakError(f"the API socket {path} did not come up within {timeout} s")


# --- phases ------------------------------------------------------------------------------

def api_work(api: Api, sock: str, files: list[Path], i: int):
    """One unit of API work: a mix of what clients send before a boot."""
    api.expect(200, "GET", "/")
    api.expect(200, "GET", "/machine-config")
    api.expect(204, "PUT", "/machine-config", {"vcpu_count": 1 + i % 2, "mem_size_mib": 64})
    api.expect(204, "PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": str(files[i % 2]),
                                          "is_root_device": False, "is_read_only": i % 3 == 0})
    api.expect(400, "PUT", "/drives/d1", {"drive_id": "d1", "path_on_host": "/nonexistent/x",
                                          "is_root_device": False, "is_read_only": False})
    api.expect(400, "PUT", "/machine-config", {"vcpu_count": "many"})
    api.expect(200, "GET", "/vm/config")
    if i % 10 == 0:
        # A new connection, and one left idle then closed without a request.
        api.close()
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        idle.connect(sock)
        idle.close()


def phase_api(a, tmp: str) -> list[str]:
    sock = os.path.join(tmp, "api.sock")
    files = []
    for n in range(2):
        f = Path(tmp, f"disk{n}.img")
        f.write_bytes(b"\0" * 1024 * 1024)
        files.append(f)
    ember = Ember([a.ember, "--api-sock", sock], tmp)
    try:
        wait_socket(sock, ember)
        api = Api(sock)
        warm = max(1, a.requests // 10)
        for i in range(warm):
            api_work(api, sock, files, i)
        api.close()
        before = measure(ember.proc.pid)
        t0 = time.monotonic()
        units = max(1, a.requests // 7)  # api_work sends 7 requests
        for i in range(units):
            api_work(api, sock, files, i)
        api.close()
        after = measure(ember.proc.pid)
        print(f"api: {units * 7} requests in {time.monotonic() - t0:.1f} s; "
              f"before {before}, after {after}", flush=True)
        return growth("api server", before, after, a.rss_slack)
    except (SoakError, OSError, http.client.HTTPException) as e:
        return [f"api: {e}"]
    finally:
        ember.kill()


def phase_vmm(a, tmp: str) -> list[str]:
    sock = os.path.join(tmp, "vmm.sock")
    files = []
    for n in range(2):
        f = Path(tmp, f"vdisk{n}.img")
        f.write_bytes(bytes([n]) * 1024 * 1024)
        files.append(f)
    metrics = Path(tmp, "metrics.json")
    ember = Ember([a.ember, "--api-sock", sock], tmp)
    try:
        wait_socket(sock, ember)
        api = Api(sock)
        api.expect(204, "PUT", "/boot-source", {
            "kernel_image_path": a.kernel, "initrd_path": a.initrd,
            "boot_args": f"{BOOT_ARGS} ember.hook=echo ember.end=wait"})
        api.expect(204, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": a.mem_mib})
        api.expect(204, "PUT", "/drives/d0", {"drive_id": "d0", "path_on_host": str(files[0]),
                                              "is_root_device": False, "is_read_only": False})
        api.expect(204, "PUT", "/metrics", {"metrics_path": str(metrics)})
        api.expect(204, "PUT", "/actions", {"action_type": "InstanceStart"})
        if not ember.wait_console(ECHO_READY, a.boot_timeout):
            return [f"vmm: the guest did not reach its echo hook: {ember.tail()}"]

        def patches(n: int):
            for i in range(n):
                api.expect(204, "PATCH", "/drives/d0", {"drive_id": "d0",
                                                        "path_on_host": str(files[i % 2])})
                api.expect(204, "PATCH", "/drives/d0", {"drive_id": "d0", "rate_limiter": {
                    "bandwidth": {"size": 1 << 20 + i % 4, "refill_time": 100}}})
                if i % 10 == 0:
                    api.expect(204, "PATCH", "/vm", {"state": "Paused"})
                    api.expect(204, "PATCH", "/vm", {"state": "Resumed"})
                    api.expect(204, "PUT", "/actions", {"action_type": "FlushMetrics"})
                    api.close()
        patches(max(1, a.patches // 10))
        # Without the guest's own memory, which it fills as it pleases.
        before = measure(ember.proc.pid, a.mem_mib)
        t0 = time.monotonic()
        patches(a.patches)
        api.close()
        after = measure(ember.proc.pid, a.mem_mib)
        print(f"vmm: {a.patches} drive PATCH pairs, {a.patches // 10} pause/resume/flush in "
              f"{time.monotonic() - t0:.1f} s; before {before}, after {after}", flush=True)
        bad = growth("vmm", before, after, a.rss_slack)
        # The guest is still alive and served: one line through its console.
        mark = len(ember.out)
        ember.proc.stdin.write(b"soak-still-here\n")
        if not ember.wait_console(b"EMBER-ECHO=soak-still-here", a.boot_timeout, mark):
            bad.append(f"vmm: the guest no longer answers on its console: {ember.tail()}")
        return bad
    except (SoakError, OSError, http.client.HTTPException) as e:
        return [f"vmm: {e}; {ember.tail()}"]
    finally:
        ember.kill()


def stuck_report(vm: Ember, traced: bool) -> str:
    """Where a stuck VM waits: its threads, and whether the test host's
    trace met the emulated CPU's known fault (hostdiag.TRACE_STOP)."""
    parts = ["threads: " + " | ".join(thread_states(vm.proc.pid))]
    if traced:
        parts.append("last events: " + " | ".join(trace_tail(STUCK_TRACE_LINES)))
    return "; ".join(parts)


def met_fault(a, vm: Ember, alone: bool, tids: set[int]) -> bool:
    """Whether the test host's trace stopped at the emulated CPU's fault
    under this VM: its process named in the stop (trace_fault), or, where
    the trace has no process ids, its thread, or any thread if it ran alone."""
    hit = trace_fault() if a.traced else None
    if hit is None:
        return False
    tid, pid = hit
    return pid == vm.proc.pid if pid is not None else alone or tid in tids


def vm_tids(vm: Ember) -> set[int]:
    try:
        return {int(t.name) for t in Path(f"/proc/{vm.proc.pid}/task").iterdir()}
    except OSError:
        return set()


def lifecycle(a, tmp: str, n: int, bound: float, alone: bool) -> tuple[str, float, str]:
    """One VM from start to exit: (outcome, seconds, why not). Outcome "ok",
    "failed", or "fault": it failed, and the test host's trace stopped at
    the emulated CPU's known fault under it (met_fault). Alone: the only VM
    running, its own ring restarted here."""
    if a.vmm == "qemu":
        # The same guest under QEMU's microvm (an A/B of what the test host
        # survives): it does not exit on the guest's reboot, so a lifecycle
        # ends at init's marker, with a kill.
        argv = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host",
                "-m", str(a.mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", a.bzimage,
                "-initrd", a.initrd, "-append", f"{BOOT_ARGS} ember.end=reboot"]
    else:
        cfg = Path(tmp, f"vm{n}.json")
        cfg.write_text(json.dumps({
            "boot-source": {"kernel_image_path": a.kernel, "initrd_path": a.initrd,
                            "boot_args": f"{BOOT_ARGS} ember.end=reboot"},
            "machine-config": {"vcpu_count": 1, "mem_size_mib": a.mem_mib}}))
        argv = [a.ember, "--no-api", "--config-file", str(cfg)]
    if a.traced and alone:
        trace_restart()
    t0 = time.monotonic()
    vm = Ember(argv, tmp)
    if a.vmm == "qemu":
        done = vm.wait_console(MARKER, bound)
    else:
        try:
            vm.proc.wait(timeout=bound)
            done = True
        except subprocess.TimeoutExpired:
            done = False
    if not done and vm.proc.poll() is None:
        fault = met_fault(a, vm, alone, vm_tids(vm))
        why = (f"stuck: still running after {bound:.0f} s; {vm.tail()}; "
               + ("the test host's trace stopped at the emulated CPU's fault under its vCPU; "
                  if fault else "no emulated-CPU fault of its own in the test host's trace; ")
               + stuck_report(vm, a.traced))
        vm.kill()
        return "fault" if fault else "failed", time.monotonic() - t0, why
    vm.kill()
    took = time.monotonic() - t0
    if a.vmm == "qemu":
        good = MARKER in vm.out
    else:
        cfg.unlink()
        good = vm.proc.returncode == 0 and MARKER in vm.out
    if good:
        return "ok", took, ""
    why = f"exited {vm.proc.returncode}: {vm.tail()}"
    # A guest the fault made triple-fault or panic: Ember ends it as a
    # reset, without init's marker.
    if met_fault(a, vm, alone, set()):
        return "fault", took, f"{why}; the test host's trace stopped at the emulated CPU's fault"
    return "failed", took, why


# Lifecycles that met the emulated CPU's fault: the test host's failures,
# not Ember's, each listed at the end as a SOAK TEST HOST FAULT line.
FAULTS: list[str] = []


def report_lifecycles(name: str, results: list, wall: float) -> list[str]:
    """Prints the phase's figures; returns its failures (FAULTS gets its
    faults)."""
    times = sorted(t for _, t, _ in results)
    n = {k: sum(1 for r in results if r[0] == k) for k in ("ok", "failed", "fault")}
    med = times[len(times) // 2] if times else 0
    print(f"{name}: {n['ok']} of {n['ok'] + n['failed']} lifecycles exited 0 after their guest's "
          f"init ({n['fault']} more met the emulated CPU's fault); "
          f"wall {wall:.0f} s, per VM median {med:.1f} s, max {times[-1] if times else 0:.1f} s",
          flush=True)
    FAULTS.extend(f"{name} #{i}: {why}" for i, (outcome, _, why) in enumerate(results)
                  if outcome == "fault")
    return [f"{name} #{i}: {why}" for i, (outcome, _, why) in enumerate(results)
            if outcome == "failed"]


# A lifecycle that met the emulated CPU's fault is run again, up to this
# many times a phase; more would be a test host too broken to soak on.
MAX_FAULTS = 10


def phase_sequential(a, tmp: str) -> list[str]:
    t0 = time.monotonic()
    results = []
    ended = faults = 0
    while ended < a.sequential:
        results.append(lifecycle(a, tmp, len(results), a.boot_timeout, alone=True))
        if results[-1][0] == "fault":
            faults += 1
            if faults <= MAX_FAULTS:
                continue
            results[-1] = ("failed",) + results[-1][1:]
        ended += 1
        if ended % 10 == 0:
            print(f"  sequential: {ended} done, {sum(1 for r in results if r[0] == 'failed')} "
                  f"failed, {faults} faults", flush=True)
    return report_lifecycles("sequential", results, time.monotonic() - t0)


def phase_parallel(a, tmp: str) -> list[str]:
    # N guests share the CPUs, so each takes longer: 10 s more per guest
    # (a boot alone takes about 10 s in the nested test host).
    bound = a.boot_timeout + 10 * a.parallel
    if a.traced:
        trace_restart()  # one ring for all: a stop names the vCPU thread
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.parallel) as pool:
        results = list(pool.map(lambda i: lifecycle(a, tmp, 100000 + i, bound, alone=False),
                                range(a.parallel)))
    # At once, a lifecycle that met the fault is not run again: counted.
    return report_lifecycles("parallel", results, time.monotonic() - t0)


PHASES = {"api": phase_api, "vmm": phase_vmm, "sequential": phase_sequential,
          "parallel": phase_parallel}
# The option that sets how much work each phase does (0: the phase is skipped).
COUNT = {"api": "requests", "vmm": "patches", "sequential": "sequential",
         "parallel": "parallel"}


TESTHOST_DIED = (124, 125)


def run_in_testhost(a, argv: list[str]) -> tuple[int, list[str]]:
    """One tools/testhost/run of this script with argv; its output passed
    through; (status, its SOAK FAILURE lines). Its SOAK TEST HOST FAULT
    lines go to FAULTS."""
    root = Path(__file__).resolve().parents[1]
    cmd = [str(root / "tools/testhost/run"), "--mem", str(a.testhost_mem), "--",
           "/usr/bin/python3", str(Path(__file__).resolve()), "--ember", a.ember,
           "--kernel", a.kernel, "--initrd", a.initrd, "--mem-mib", str(a.mem_mib),
           *(["--bzimage", a.bzimage] if a.bzimage else []),
           "--rss-slack", str(a.rss_slack), "--boot-timeout", str(a.boot_timeout),
           "--vmm", a.vmm] + ([] if a.trace else ["--no-trace"]) + argv
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    failures = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.startswith("SOAK FAILURE: "):
            failures.append(line[len("SOAK FAILURE: "):].rstrip("\n"))
        elif line.startswith("SOAK TEST HOST FAULT: "):
            FAULTS.append(line[len("SOAK TEST HOST FAULT: "):].rstrip("\n"))
    return proc.wait(), failures


def run_chunked(a) -> tuple[list[str], list[str]]:
    """The phases in test-host boots of their own (module docstring):
    (failures, test-host losses)."""
    zero = [arg for option in COUNT.values() for arg in (f"--{option}", "0")]
    jobs = []
    for name in a.phases:
        total = getattr(a, COUNT[name])
        step = a.testhost_chunk if name == "sequential" else max(total, 1)
        for start in range(0, total, step):
            n = min(step, total - start)
            label = f"{name} {start + 1}-{start + n}" if name == "sequential" else name
            jobs.append((label, zero + ["--phases", name, f"--{COUNT[name]}", str(n)]))
    failures, losses = [], []
    for label, argv in jobs:
        for attempt in range(1, a.testhost_retries + 2):
            print(f"== soak: {label} (test-host boot {attempt})", flush=True)
            rc, found = run_in_testhost(a, argv)
            if rc not in TESTHOST_DIED:
                failures += found
                if rc not in (0, 1):
                    failures.append(f"{label}: tools/testhost/run exited {rc}")
                break
            losses.append(f"{label}: the test host died (status {rc}) in boot {attempt}")
            print(f"== soak: {losses[-1]}; its chunk runs again", flush=True)
        else:
            failures.append(f"{label}: the test host died {a.testhost_retries + 1} times")
    return failures, losses


def run(a) -> list[str]:
    """Runs the chosen phases; returns every failure."""
    failures = []
    # The host's KVM trace, for a stuck VM's report; in parallel the ring
    # mixes the guests, but a stopped ring still says what it met.
    a.traced = a.trace and any(getattr(a, COUNT[n]) > 0 for n in ("sequential", "parallel")
                               if n in a.phases) and trace_setup()
    for name in a.phases:
        if getattr(a, COUNT[name]) <= 0:
            continue
        tmp = tempfile.mkdtemp(prefix=f"soak-{name}.")
        try:
            failures += PHASES[name](a, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return failures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequential", type=int, default=1000)
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--requests", type=int, default=20000, help="API requests (api phase)")
    p.add_argument("--patches", type=int, default=2000, help="drive PATCH pairs (vmm phase)")
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--mem-mib", type=int, default=64, help="guest memory of each VM")
    p.add_argument("--rss-slack", type=int, default=1024, help="KiB VmRSS may grow")
    p.add_argument("--boot-timeout", type=float, default=180,
                   help="bound on one lifecycle, seconds (a stuck VM fails at it); "
                   "plus 10 s per guest in the parallel phase")
    p.add_argument("--vmm", choices=("ember", "qemu"), default="ember",
                   help="qemu: the lifecycle phases under QEMU's microvm instead, for an A/B "
                   "of the test host's own failures (with --phases sequential,parallel)")
    p.add_argument("--no-trace", dest="trace", action="store_false",
                   help="no KVM trace of the host for a stuck VM's report (hostdiag.py)")
    p.add_argument("--ember", default=os.environ.get("EMBER_BIN"))
    p.add_argument("--kernel", default=os.environ.get("EMBER_KERNEL_VMLINUX"))
    p.add_argument("--initrd", default=os.environ.get("EMBER_INITRAMFS"))
    p.add_argument("--bzimage", default=os.environ.get("EMBER_KERNEL_BZIMAGE"),
                   help="the same kernel as a bzImage, for --vmm qemu")
    p.add_argument("--testhost-chunk", type=int, default=0,
                   help="run in the nested test host, sequential lifecycles in chunks of N "
                   "(module docstring)")
    p.add_argument("--testhost-retries", type=int, default=3,
                   help="new test hosts for a chunk whose test host died")
    p.add_argument("--testhost-mem", type=int, default=8192, help="the test host's MiB")
    p.set_defaults(traced=False)  # run() arms the trace where it can
    return p


def main(argv=None) -> int:
    p = parser()
    a = p.parse_args(argv)
    a.phases = [x for x in a.phases.split(",") if x]
    if a.ember:
        a.ember = os.path.abspath(a.ember)
    for need in ("ember", "kernel", "initrd"):
        if not getattr(a, need):
            p.error(f"--{need} (or its EMBER_* variable) is required")
    if a.vmm == "qemu" and not a.bzimage:
        p.error("--vmm qemu: --bzimage (or EMBER_KERNEL_BZIMAGE) is required")
    if a.vmm == "qemu" and set(a.phases) - {"sequential", "parallel"}:
        p.error("--vmm qemu runs only the lifecycle phases: add --phases sequential,parallel")
    t0 = time.monotonic()
    losses = []
    if a.testhost_chunk > 0:
        failures, losses = run_chunked(a)
    else:
        failures = run(a)
    for f in failures:
        print(f"SOAK FAILURE: {f}")
    for lost in losses:
        print(f"SOAK TEST HOST LOST: {lost}")
    for fault in FAULTS:
        print(f"SOAK TEST HOST FAULT: {fault}")
    print(f"soak: {'FAILED' if failures else 'passed'} in {time.monotonic() - t0:.0f} s "
          f"({', '.join(f'{n} {getattr(a, COUNT[n])}' for n in a.phases)}; VMM {a.vmm}; "
          f"test-host boots lost and run again: {len(losses)}; lifecycles that met the emulated "
          f"CPU's fault: {len(FAULTS)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
