"""Density part of Ember's benchmark: many microVMs at once, Ember against
QEMU's microvm.

  density.py OUT.json

For each count N (EMBER_BENCH_DENSITY, default "1 10 25 50"; quick: "1 10")
and each VMM, in that order (Ember first, then QEMU, per N): starts N guests
of 64 MiB and 1 vCPU at once, each from its own process, and measures

- the time from the first exec to the last guest's `EMBER-INIT: started`
  (and the median guest's), and
- host memory per VM once all have booted and settled: the drop of the
  host's MemAvailable divided by N (guest RAM touched, VMM overhead, and
  the kernel's own per-VM cost such as page tables), and the VMM processes'
  summed Pss divided by N.

Then stops them all (SIGTERM, then SIGKILL) and waits until MemAvailable
has come back before the next step. Guests: the same minimal kernel,
initramfs and command line as part 3 (`ember.end=wait`). Needs a /dev/kvm
that boots standard guests (bench/run runs this in the nested test host). A
step whose boots do not all arrive within its bound is recorded with how
many did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from benchlib import env_int, now_ns, write_json
from guest import BOOT_ARGS, MARKER, facts

MEM_MIB = 64
MS = 1e6


def ember_argv(ember, kernel, initrd, work, i):
    path = f"{work}/vm-{i}.json"
    with open(path, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": kernel, "initrd_path": initrd,
                                   "boot_args": BOOT_ARGS},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB}}, f)
    return [ember, "--no-api", "--config-file", path, "--level", "Warning"]


def qemu_argv(qemu, kernel, initrd, work, i):
    return [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-smp", "1", "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", BOOT_ARGS]


def mem_available_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Guest:
    """One VMM process; a thread reads its console, stamps the marker, and
    keeps draining so that no VMM ever waits on a full pipe."""

    def __init__(self, argv, t0):
        self.t0 = t0
        self.marker_ns = None
        self.booted = threading.Event()
        self.tail = []
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, bufsize=0)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail = (self.tail + [line])[-5:]
            if self.marker_ns is None and MARKER.search(line):
                self.marker_ns = now_ns() - self.t0
                self.booted.set()
        self.booted.set()  # EOF: exited

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, deadline):
        try:
            self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def one_step(kind, argv_fn, binary, n, env, settle_s, boot_bound_s):
    kernel, initrd, work = env["kernel"], env["initrd"], env["work"]
    argvs = [argv_fn(binary, kernel, initrd, work, i) for i in range(n)]
    avail0 = mem_available_kb()
    t0 = now_ns()
    guests = [Guest(a, t0) for a in argvs]
    deadline = time.monotonic() + boot_bound_s
    for g in guests:
        g.booted.wait(max(0.0, deadline - time.monotonic()))
    booted = sorted(g.marker_ns for g in guests if g.marker_ns is not None)
    step = {"kind": kind, "n": n, "booted": len(booted)}
    if booted:
        step["all_booted_ms" if len(booted) == n else "last_booted_ms"] = booted[-1] / MS
        step["median_booted_ms"] = booted[len(booted) // 2] / MS
    time.sleep(settle_s)  # lets the guests go idle before memory is read; not synchronisation
    step["mem_per_vm_kb"] = (avail0 - mem_available_kb()) / n
    step["pss_per_vm_kb"] = sum(pss_kb(g.proc.pid) for g in guests) / n
    if len(booted) < n:
        step["tail"] = next((g.tail for g in guests if g.marker_ns is None), [])
    for g in guests:
        g.stop()
    end = time.monotonic() + 60
    for g in guests:
        g.reap(end)
    # Memory back before the next step (bounded): a step must not pay for
    # the last one's teardown.
    for _ in range(100):
        if mem_available_kb() >= avail0 - 16 * 1024:
            break
        time.sleep(0.2)
    return step


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    counts = [int(x) for x in os.environ.get("EMBER_BENCH_DENSITY",
                                             "1 10" if quick else "1 10 25 50").split()]
    settle_s = float(os.environ.get("EMBER_BENCH_SETTLE_S", "2"))
    bound_s = env_int("EMBER_BENCH_DENSITY_BOOT_S", 300)
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="ember-bench-density-") as work:
        env = {"kernel": os.environ["EMBER_KERNEL_VMLINUX"], "initrd": os.environ["EMBER_INITRAMFS"],
               "work": work}
        result = {"host": facts(qemu), "mem_mib": MEM_MIB, "counts": counts, "boot_args": BOOT_ARGS,
                  "settle_s": settle_s, "steps": [], "complete": False,
                  "commands": {"ember": " ".join(ember_argv(os.environ["EMBER_BIN"], "K", "I", work, 0)),
                               "qemu": " ".join(qemu_argv(qemu, "K", "I", work, 0))}}
        start = time.monotonic()
        for n in counts:
            for kind, fn, binary in (("ember", ember_argv, os.environ["EMBER_BIN"]),
                                     ("qemu", qemu_argv, qemu)):
                step = one_step(kind, fn, binary, n, env, settle_s, bound_s)
                result["steps"].append(step)
                print(f"bench: density {kind} x{n}: {step.get('booted')}/{n} booted, "
                      f"last {step.get('all_booted_ms', step.get('last_booted_ms', 0)):.0f} ms, "
                      f"{step['mem_per_vm_kb'] / 1024:.1f} MiB/VM", file=sys.stderr)
                result["elapsed_s"] = time.monotonic() - start
                write_json(out, result)
        result["complete"] = True
        write_json(out, result)


def section(d):
    """Report lines (bench/report.py)."""
    out = ["## 6. Density: many microVMs at once, Ember against QEMU microvm", "",
           f"N guests of {d['mem_mib']} MiB and 1 vCPU started at once (one process each), the "
           "same kernel, initramfs and command line as part 3. Time: from the first exec to the "
           "last (and the median) guest's `EMBER-INIT: started`. Memory per VM: the drop of the "
           f"host's MemAvailable once all had booted and {d['settle_s']} s passed, divided by N "
           "(guest RAM touched, VMM, and the kernel's per-VM cost), and the VMM processes' "
           "summed Pss divided by N. One run per cell.", "",
           "| N | Ember all booted, ms | QEMU all booted, ms | ratio | Ember MiB/VM | "
           "QEMU MiB/VM | ratio | Ember Pss MiB/VM | QEMU Pss MiB/VM |",
           "|---|---|---|---|---|---|---|---|---|"]
    by = {(s["kind"], s["n"]): s for s in d["steps"]}

    def t(s):
        if not s:
            return "-", None
        if "all_booted_ms" in s:
            return f"{s['all_booted_ms']:.0f}", s["all_booted_ms"]
        return f"{s['booted']}/{s['n']} booted", None

    for n in d["counts"]:
        e, q = by.get(("ember", n)), by.get(("qemu", n))
        (et, ev), (qt, qv) = t(e), t(q)
        r = f"{ev / qv:.2f}" if ev and qv else "-"
        em = e["mem_per_vm_kb"] / 1024 if e else None
        qm = q["mem_per_vm_kb"] / 1024 if q else None
        rm = f"{em / qm:.2f}" if em and qm else "-"
        out.append(f"| {n} | {et} | {qt} | {r} | {em:.1f} | {qm:.1f} | {rm} | "
                   f"{e['pss_per_vm_kb'] / 1024:.1f} | {q['pss_per_vm_kb'] / 1024:.1f} |"
                   if e and q else f"| {n} | {et} | {qt} | {r} | - | - | - | - | - |")
    if not d.get("complete"):
        out += ["", "Incomplete: the part stopped before every count ran."]
    return out


if __name__ == "__main__":
    main()
