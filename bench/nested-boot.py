#!/usr/bin/python3
"""Boots Debian's stock kernel with 2 vCPUs many times, under Ember, under
Ember with the i8042 left out of its ACPI tables, and under QEMU's microvm,
in the nested test host, and records for each boot whether it reached
userspace and, if not, where it stopped (issue 16, docs/reliability.md).

On the host (the usual way): boots the test host (tools/testhost/run) and
runs itself inside it, N boots of each variant in round-robin order (so a
measurement cut short stays balanced), appending one JSON line per boot to
OUT, then prints the table of everything OUT holds:

    bench/nested-boot.py -n 40 --out bench/results/nested-boot.jsonl
    bench/nested-boot.py --report bench/results/nested-boot.jsonl

Run it in chunks (-n 5, several times: each call appends; or
--max-minutes) to let others use the test host in between. --variants picks
a subset (ember, ember-noi8042, qemu; ember-thp and ember-nogather only when named). If the test host itself dies during
a boot (status 124/125: it froze or its kernel locked up), that boot is
recorded as "host-died" against the variant that was running, and a new
test host goes on with the rest.

A boot "reached userspace" when the initramfs' init printed
"EMBER-INIT: started" within --timeout seconds. A failure is one of:
"stall" (no marker, the VMM still running at the bound), "exit" (the VMM
exited first: Ember's triple fault or crash; its status and last stderr
lines are kept). Either way the last console lines say where the kernel
was; "phase" is a short name for it (the last subsystem prefix seen).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import parse_variants

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))
from hostdiag import trace_restart, trace_setup, trace_tail  # noqa: E402

MARKER = b"EMBER-INIT: started"
# The same for every variant: a default (not quiet) console, so a failure
# shows where it happened; nothing about the i8042.
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off ember.end=reboot"
VARIANTS = ("ember", "ember-noi8042", "qemu", "ember-thp", "ember-nogather")
# ember-thp: guest RAM with huge_pages "Transparent" (MADV_HUGEPAGE), as
# QEMU's: to see whether 4 KiB host pages under the guest matter.
# ember-nogather: console output written a byte per wake-up, as before
# Ember's output queue gathered bursts (EMBER_DEBUG_NO_GATHER=1).
DEFAULT_VARIANTS = VARIANTS[:3]
MEM_MIB = 256
VCPUS = 2
TAIL = 8
# --trace: the test host's KVM events kept in a small ring while each guest
# boots, stopped at the first exit with the test host's rip (hostdiag.py); a
# failed boot keeps the ring's last TRACE_TAIL lines.
TRACE_TAIL = 100


def argv_for(variant: str, ember: str, kernel: str, initrd: str, tmp: str,
             boot_args: str = BOOT_ARGS) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if variant == "qemu":
        # microvm's own defaults (ACPI on, no i8042 in its ACPI tables);
        # it does not exit on reboot, so a boot ends at the marker.
        return (["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host",
                 "-m", str(MEM_MIB), "-smp", str(VCPUS), "-nodefaults", "-no-user-config",
                 "-display", "none", "-no-reboot", "-serial", "stdio",
                 "-kernel", kernel, "-initrd", initrd, "-append", boot_args], env)
    cfg = os.path.join(tmp, "vm.json")
    with open(cfg, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": kernel, "initrd_path": initrd,
                                   "boot_args": boot_args},
                   "machine-config": {"vcpu_count": VCPUS, "mem_size_mib": MEM_MIB,
                                      **({"huge_pages": "Transparent"}
                                         if variant == "ember-thp" else {})}}, f)
    if variant == "ember-noi8042":
        env["EMBER_DEBUG_NO_ACPI_I8042"] = "1"
    if variant == "ember-nogather":
        env["EMBER_DEBUG_NO_GATHER"] = "1"
    return [ember, "--no-api", "--config-file", cfg], env


def phase(lines: list[str]) -> str:
    """A short name for where the console stopped: the last kernel line's
    subsystem prefix ("i8042", "ACPI", "smpboot"...), or "no output"."""
    for line in reversed(lines):
        m = re.match(r"\[\s*[\d.]+\]\s+([\w.:-]+?):?\s", line)
        if m:
            return m.group(1).rstrip(":")
        if line.strip():
            return line.strip()[:40]
    return "no output"


def one_boot(variant: str, ember: str, kernel: str, initrd: str, timeout: float,
             trace: bool = False) -> dict:
    # Traced boots run without KASLR, so that the trace's guest rips can be
    # looked up in the kernel's System.map.
    boot_args = BOOT_ARGS + (" nokaslr" if trace else "")
    with tempfile.TemporaryDirectory() as tmp:
        argv, env = argv_for(variant, ember, kernel, initrd, tmp, boot_args)
        if trace:
            trace_restart()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)
        out, err = bytearray(), bytearray()
        seen = threading.Event()

        def reader(pipe, buf, watch):
            while chunk := os.read(pipe.fileno(), 65536):
                buf.extend(chunk)
                if watch and MARKER in buf:
                    seen.set()
            if watch:
                seen.set()  # EOF: the VMM exited
        threads = [threading.Thread(target=reader, args=(proc.stdout, out, True), daemon=True),
                   threading.Thread(target=reader, args=(proc.stderr, err, False), daemon=True)]
        for t in threads:
            t.start()
        seen.wait(timeout)
        elapsed = time.monotonic() - t0
        reached = MARKER in out
        if not reached and seen.is_set():
            threads[0].join(2)
        if not reached and not threads[0].is_alive():
            # The console's EOF: the VMM is exiting. Its status comes a moment
            # after its stdout closes; without this wait an exit was once
            # recorded as a stall at 20 s.
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        status = proc.poll()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for t in threads:
            t.join(5)
    console = bytes(out).decode(errors="replace").replace("\r", "").splitlines()
    stderr = bytes(err).decode(errors="replace").splitlines()
    if reached:
        outcome = "userspace"
    elif status is None:
        outcome = "stall"
    else:
        outcome = "exit"
    rec = {"variant": variant, "outcome": outcome, "seconds": round(elapsed, 1), "timeout": timeout,
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if trace:
        rec["traced"] = True
    if not reached:
        rec.update(status=status, phase=phase(console), console_tail=console[-TAIL:],
                   stderr_tail=stderr[-TAIL:])
        if trace:
            rec["trace_tail"] = trace_tail(TRACE_TAIL)
    return rec


def inside(a) -> int:
    """In the test host: the boots of the plan, in order. Before each, the
    boot about to run is named in CURRENT, so that a test host that dies
    during it is blamed on the right variant."""
    out = open(a.out, "a")
    current = a.out + ".current"
    if a.trace:
        trace_setup()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        print(f"test host: transparent_hugepage/enabled: {thp.read_text().strip()}", flush=True)
    for i, v in enumerate(a.plan):
        Path(current).write_text(v)
        rec = one_boot(v, a.ember, a.kernel, a.initrd, a.timeout, a.trace)
        out.write(json.dumps(rec) + "\n")
        out.flush()
        where = "" if rec["outcome"] == "userspace" else \
            f" at {rec['phase']!r}: {rec['console_tail'][-1:] or rec['stderr_tail'][-1:]}"
        print(f"{v} boot {i + 1}/{len(a.plan)}: {rec['outcome']} {rec['seconds']} s{where}",
              flush=True)
    Path(current).unlink(missing_ok=True)
    return 0


def report(path: str) -> int:
    recs = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    for r in recs:
        # Before one_boot waited for the exit status after the console's
        # EOF, a VMM that exited could be recorded as a "stall" long before
        # the bound (120 s): it was an exit. Records since carry their bound.
        if (r["outcome"] == "stall" and "timeout" not in r and r["seconds"] is not None
                and r["seconds"] < 110):
            r["outcome"] = "exit"
    by = collections.defaultdict(list)
    for r in recs:
        by[r["variant"]].append(r)
    print("| VMM | boots | reached userspace | stalled | VMM exited | test host died | where the failures stopped |")
    print("|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        rs = by.get(v, [])
        if not rs:
            continue
        n = collections.Counter(r["outcome"] for r in rs)
        where = collections.Counter(f"{r['outcome']} at {r['phase']}" for r in rs
                                    if r["outcome"] != "userspace")
        secs = sorted(r["seconds"] for r in rs if r["outcome"] == "userspace")
        med = f" (median {secs[len(secs) // 2]} s)" if secs else ""
        print(f"| {v} | {len(rs)} | {n['userspace']}{med} | {n['stall']} | {n['exit']} | "
              f"{n['host-died']} | "
              + ("; ".join(f"{c}x {w}" for w, c in where.most_common()) or "-") + " |")
    return 0


def outside(a) -> int:
    """On the host: find the images, run this script in the test host."""
    env = os.environ
    kernel = a.kernel or env.get("EMBER_DEBIAN_VMLINUZ")
    initrd = a.initrd or env.get("EMBER_INITRAMFS")
    # Only the two images this needs (not artifacts.sh: no minimal kernel build).
    if not kernel:
        kdir = subprocess.run([str(ROOT / "tools/guest/debian-kernel.sh")], capture_output=True,
                              text=True, check=True).stdout.strip()
        kernel = str(next(Path(kdir, "boot").glob("vmlinuz-*")))
    if not initrd:
        initrd = subprocess.run([str(ROOT / "tools/guest/build-initramfs.sh")],
                                capture_output=True, text=True, check=True).stdout.strip()
    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Round-robin, so that a measurement cut short stays balanced, with the
    # order rotated each round (and each chunk, by the records so far), so
    # that no variant always boots first in a test host or right after QEMU.
    start = len(Path(a.out).read_text().splitlines()) if Path(a.out).exists() else 0
    plan = []
    for r in range(a.n):
        k = (start // max(1, len(a.variants)) + r) % len(a.variants)
        plan += a.variants[k:] + a.variants[:k]
    deadline = time.time() + a.max_minutes * 60 if a.max_minutes else None
    rc = 0
    while plan:
        if deadline and time.time() > deadline:
            print(f"== --max-minutes reached: {len(plan)} boots not run")
            break
        results = tempfile.mkdtemp(prefix="nested-boot.")
        inner = Path(results) / "boots.jsonl"
        cmd = [str(ROOT / "tools/testhost/run"), "--results", results, "--",
               "env", f"EMBER_DEBIAN_VMLINUZ={kernel}",
               "/usr/bin/python3", str(Path(__file__).resolve()), "--inside",
               "--plan", ",".join(plan), "--timeout", str(a.timeout),
               "--ember", str(Path(a.ember).resolve()), "--kernel", kernel, "--initrd", initrd,
               "--out", str(inner)] + (["--trace"] if a.trace else [])
        bound = int(len(plan) * (a.timeout + 30) + 300)
        run = subprocess.run(cmd, env=dict(os.environ, EMBER_TESTHOST_TIMEOUT=os.environ.get(
            "EMBER_TESTHOST_TIMEOUT", str(bound))), stderr=subprocess.PIPE, text=True)
        rc = run.returncode
        sys.stderr.write(run.stderr)
        done = inner.read_text().splitlines() if inner.exists() else []
        current = Path(str(inner) + ".current")
        with open(out, "a") as f:
            for line in done:
                f.write(line + "\n")
            if rc in (124, 125) and current.exists():
                # The test host itself died during this boot: a failure of
                # the whole stack, recorded against the variant that ran.
                v = current.read_text().strip()
                f.write(json.dumps({"variant": v, "outcome": "host-died", "seconds": None,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "status": rc, "phase": "test host",
                                    "console_tail": run.stderr.splitlines()[-TAIL:],
                                    "stderr_tail": []}) + "\n")
                done.append("host-died")
        subprocess.run(["rm", "-rf", results])
        plan = plan[len(done):]
        if rc not in (0, 124, 125) or (rc != 0 and not done):
            print(f"== the test host ended with status {rc} without progress; stopping")
            break
    print(f"== all boots recorded in {out}:")
    report(str(out))
    return rc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=40, help="boots of each variant (default 40)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--timeout", type=float, default=120, help="bound on one boot, seconds")
    p.add_argument("--ember", default=str(ROOT / "build/ember"))
    p.add_argument("--kernel", help="Debian's vmlinuz (default: tools/guest/debian-kernel.sh's)")
    p.add_argument("--initrd", help="the busybox initramfs (default: tools/guest/build-initramfs.sh's)")
    p.add_argument("--out", default=str(ROOT / "bench/results/nested-boot.jsonl"))
    p.add_argument("--report", metavar="JSONL", help="only print the table of JSONL")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="start no new test host after this many minutes (0: no bound)")
    p.add_argument("--trace", action="store_true",
                   help="keep the test host's KVM exits before each failure (boots with nokaslr)")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.report:
        return report(a.report)
    a.variants = parse_variants(p, a.variants, VARIANTS)
    if a.inside:
        a.plan = [v for v in a.plan.split(",") if v in VARIANTS]
        return inside(a)
    return outside(a)


if __name__ == "__main__":
    sys.exit(main())
