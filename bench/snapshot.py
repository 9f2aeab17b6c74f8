"""Snapshot part of Ember's benchmark: create and restore, Ember against
QEMU's migration to a file.

  snapshot.py OUT.json

Needs a /dev/kvm that boots standard guests (bench/run runs it inside the
nested test host where the machine's own KVM cannot). For each guest size
(128 MiB and 1 GiB, 1 vCPU) a guest boots and prints a tick line every
10 ms of its own time and is snapshotted (Ember and QEMU); then the
restores, the sizes in alternation round by round:

- ember create: PATCH /vm Paused, PUT /snapshot/create (Full): the
  request's time, the state file's and the memory file's sizes (apparent
  and allocated);
- ember load, File and Uffd (tools/uffd/handler.c), each in a fresh
  `ember --api-sock`: PUT /snapshot/load with resume_vm -> its 204, and
  -> the guest's next tick on the console; also exec -> that tick, and
  the VMM thread's CPU time for the load (Ember's log);
- qemu: `-M microvm` with the same kernel, initramfs and command line;
  QMP `stop` + `migrate exec:cat > FILE` until completed (create); a new
  QEMU with `-incoming "exec:cat FILE"`, `cont` once the stream is in (a
  stopped source's state arrives paused): exec -> the next tick (restore);
- qemu defer: a new QEMU with `-incoming defer`, timed as Ember's load
  (from the restore request, the process already up, its QMP connected):
  QMP `migrate-incoming exec:cat FILE` -> the migration completed (its
  MIGRATION event, then `query-migrate` must say "completed"), and ->
  the next tick after `cont`; also exec -> that tick.

Guest times in the nested test host are TCG-inflated: compare ratios only.
No speed is asserted.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time

from benchlib import HttpConn, boot_source, connect_spin, env_int, machine_config, now_ns, \
    summary, write_json
from guest import BOOT_TIMEOUT_S, MS, Vmm, qemu_argv
from native import host_facts

TICK = re.compile(r"EMBER-TICK=(\d+)")
LOAD_CPU = re.compile(r"load snapshot: .*VMM thread CPU (\d+) us")
# The same line's spans of the whole request: the state file read and
# checked, the VM rebuilt (vmm_restore and what follows it), its start.
LOAD_SPANS = re.compile(r"load snapshot: state file and config (\d+) us, VM (\d+) us, "
                        r"start (\d+) us")
# Ember's "VM restored: ... in T ms (memory a, KVM VM b, devices c, vCPUs d,
# state e; ...)": where vmm_restore's time went.
PHASES = re.compile(r"VM restored: .* in ([\d.]+) ms \(memory ([\d.]+), KVM VM ([\d.]+), "
                    r"devices ([\d.]+), vCPUs ([\d.]+), state ([\d.]+);")
PHASE_NAMES = ("restore", "memory", "kvm_vm", "devices", "vcpus", "state")
# The same line's empty KVM VM, made on its own thread while the state file
# was read: its wall time, most of it hidden.
EARLY_VM = re.compile(r"VM restored: .*empty KVM VM made alongside in ([\d.]+) ms")


def first_err(lines, pattern):
    """The match of pattern in the first line of Ember's stderr it matches, or None."""
    return next((m for _, name, text in lines if name == "err"
                 for m in [pattern.search(text)] if m), None)


def load_phases(lines) -> dict:
    """phase_<name>_ms of the first "VM restored" line on stderr (None if absent)."""
    m = first_err(lines, PHASES)
    if not m:
        return {f"phase_{k}_ms": None for k in PHASE_NAMES + ("early_vm",)}
    early = EARLY_VM.search(m.string)
    return {"phase_early_vm_ms": float(early.group(1)) if early else None,
            **{f"phase_{k}_ms": float(v) for k, v in zip(PHASE_NAMES, m.groups())}}
SCRIPT = "i=0; while true; do echo EMBER-TICK=$i; i=$((i+1)); usleep 10000; done"
BOOT_ARGS = ("console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 ember.hook=script "
             "ember.end=wait ember.script=" + base64.b64encode(SCRIPT.encode()).decode())
SIZES_MIB = [128, 1024]


def next_tick(vmm: Vmm, after_ns: int, timeout_s=BOOT_TIMEOUT_S) -> int:
    """ns since exec of the first tick line that arrived after after_ns."""
    deadline = time.monotonic() + timeout_s
    while True:
        for t, name, text in vmm.lines:
            if name == "out" and t > after_ns and TICK.search(text):
                return t
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("no tick on the console after the restore")
        if not vmm.pump(min(left, 1.0)) and vmm.proc.poll() is not None:
            raise RuntimeError(f"exited with {vmm.proc.returncode}")


def tick_period(vmm: Vmm, after_ns: int) -> float | None:
    """Median ms between the guest's ticks after after_ns: its loop's period
    when undisturbed, against which a restore's first tick reads."""
    ts = [t for t, name, text in vmm.lines if name == "out" and t > after_ns and TICK.search(text)]
    gaps = sorted((b - a) / MS for a, b in zip(ts, ts[1:]))
    return gaps[len(gaps) // 2] if gaps else None


def api(vmm: Vmm, path: str) -> HttpConn:
    sock, _ = connect_spin(path, vmm.proc.pid, timeout_s=BOOT_TIMEOUT_S)
    return HttpConn(sock)


def ember_create(ember, kernel, initrd, work, mib) -> dict:
    sock = f"{work}/src.sock"
    vmm = Vmm([ember, "--api-sock", sock])
    try:
        c = api(vmm, sock)
        c.expect("PUT", "/boot-source", boot_source(kernel, initrd, BOOT_ARGS))
        c.expect("PUT", "/machine-config", machine_config(1, mib))
        c.expect("PUT", "/actions", json.dumps({"action_type": "InstanceStart"}))
        vmm.wait_for("out", TICK)
        t_settle = now_ns() - vmm.t0
        vmm.settle(1.0)
        period = tick_period(vmm, t_settle)
        c.expect("PATCH", "/vm", json.dumps({"state": "Paused"}))
        t = now_ns()
        c.expect("PUT", "/snapshot/create", json.dumps({
            "snapshot_path": f"{work}/vm.snap", "mem_file_path": f"{work}/vm.mem"}))
        create_ms = (now_ns() - t) / MS
        st = os.stat(f"{work}/vm.mem")
        return {"create_ms": create_ms, "state_bytes": os.path.getsize(f"{work}/vm.snap"),
                "mem_bytes": st.st_size, "mem_allocated_bytes": st.st_blocks * 512,
                "tick_period_ms": period}
    finally:
        vmm.stop()


def ember_load(ember, work, backend) -> dict:
    sock = f"{work}/load.sock"
    handler = None
    if backend == "Uffd":
        usock = f"{work}/uffd.sock"
        handler = subprocess.Popen([os.path.join(os.path.dirname(ember), "uffd-handler"), usock,
                                    f"{work}/vm.mem"], stdout=subprocess.PIPE, text=True)
        handler.stdout.readline()  # "listening"
        path = usock
    else:
        path = f"{work}/vm.mem"
    vmm = Vmm([ember, "--api-sock", sock, "--level", "Info"])
    try:
        c = api(vmm, sock)
        # Ember answers before the clock starts, as QEMU's QMP greeting and
        # capabilities do for QEMU's: the socket accepts connections before
        # Ember's start-up is over, and a load sent at once waited for it
        # (5-7 ms in the test host), which is start-up, not restore.
        c.expect("GET", "/", None, 200)
        t = now_ns() - vmm.t0
        c.expect("PUT", "/snapshot/load", json.dumps({
            "snapshot_path": f"{work}/vm.snap", "resume_vm": True,
            "mem_backend": {"backend_type": backend, "backend_path": path}}))
        t_204 = now_ns() - vmm.t0
        t_tick = next_tick(vmm, t_204)
        # Ember's own log: the VMM thread's CPU time for the load (its
        # work and KVM's, not the time it waited for a busy host).
        cpu = first_err(vmm.lines, LOAD_CPU)
        spans = first_err(vmm.lines, LOAD_SPANS)
        span = {f"span_{k}_ms": (int(spans.group(i + 1)) / 1000 if spans else None)
                for i, k in enumerate(("state_file", "vm", "start"))}
        return {"load_204_ms": (t_204 - t) / MS, "load_to_tick_ms": (t_tick - t) / MS,
                "exec_to_tick_ms": t_tick / MS,
                "load_vmm_cpu_ms": int(cpu.group(1)) / 1000 if cpu else None,
                **span, **load_phases(vmm.lines)}
    finally:
        vmm.stop()
        if handler:
            handler.kill()
            handler.wait()


class Qmp:
    def __init__(self, path: str, pid: int):
        self.sock, _ = connect_spin(path, pid, timeout_s=BOOT_TIMEOUT_S)
        self.sock.settimeout(BOOT_TIMEOUT_S)
        self.buf = b""
        self.events = []  # (ns, event) in arrival order, kept while waiting for returns
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("QMP closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name: str, **args) -> dict:
        self.sock.sendall(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        while True:
            m = self.read()
            if "event" in m:
                self.events.append((now_ns(), m))
            if "return" in m or "error" in m:
                if "error" in m:
                    raise RuntimeError(f"QMP {name}: {m['error']}")
                return m["return"]

    def wait_event(self, name: str, done) -> tuple[int, dict]:
        """(arrival ns, event) of the first event `name` whose data done()
        accepts, from those already read or the next to come; the socket's
        timeout bounds the wait."""
        i = 0
        while True:
            while i < len(self.events):
                t, m = self.events[i]
                i += 1
                if m["event"] == name and done(m.get("data", {})):
                    return t, m
            m = self.read()
            if "event" in m:
                self.events.append((now_ns(), m))


def qemu_cmd(qemu, kernel, initrd, mib, work, extra):
    argv = qemu_argv(qemu, kernel, initrd)
    argv[argv.index("-m") + 1] = f"{mib}M"
    argv[argv.index("-append") + 1] = BOOT_ARGS
    return argv + ["-qmp", f"unix:{work}/qmp.sock,server=on,wait=off"] + extra


def qemu_create(qemu, kernel, initrd, work, mib) -> dict:
    vmm = Vmm(qemu_cmd(qemu, kernel, initrd, mib, work, []))
    try:
        q = Qmp(f"{work}/qmp.sock", vmm.proc.pid)
        vmm.wait_for("out", TICK)
        t_settle = now_ns() - vmm.t0
        vmm.settle(1.0)
        period = tick_period(vmm, t_settle)
        q.cmd("stop")
        t = now_ns()
        q.cmd("migrate", uri=f"exec:cat > {work}/qemu.mig")
        while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.005)
        create_ms = (now_ns() - t) / MS
        st = os.stat(f"{work}/qemu.mig")
        return {"create_ms": create_ms, "mem_bytes": st.st_size,
                "mem_allocated_bytes": st.st_blocks * 512, "tick_period_ms": period}
    finally:
        vmm.stop()


def qemu_restore(qemu, kernel, initrd, work, mib) -> dict:
    """The source was stopped before its migration, so the incoming QEMU
    stays paused when the stream is in (as an Ember load without
    resume_vm): `cont` once it is, as fast as QMP tells."""
    vmm = Vmm(qemu_cmd(qemu, kernel, initrd, mib, work,
                       ["-incoming", f"exec:cat {work}/qemu.mig"]))
    try:
        q = Qmp(f"{work}/qmp.sock", vmm.proc.pid)
        while q.cmd("query-status").get("status") == "inmigrate":
            time.sleep(0.002)
        t_in = now_ns() - vmm.t0
        q.cmd("cont")
        t_tick = next_tick(vmm, t_in)
        return {"exec_to_tick_ms": t_tick / MS, "exec_to_incoming_done_ms": t_in / MS}
    finally:
        vmm.stop()


def qemu_defer_restore(qemu, kernel, initrd, work, mib) -> dict:
    """As Ember's load: QEMU's process is up and its QMP connected before
    the clock starts at `migrate-incoming`. The end of the stream is the
    MIGRATION event "completed" (no polling that would compete with the
    load for QEMU's main loop), checked with `query-migrate`; then `cont`
    (the stopped source's state arrives paused) and the next tick."""
    vmm = Vmm(qemu_cmd(qemu, kernel, initrd, mib, work, ["-incoming", "defer"]))
    try:
        q = Qmp(f"{work}/qmp.sock", vmm.proc.pid)
        q.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        t = now_ns() - vmm.t0
        q.cmd("migrate-incoming", uri=f"exec:cat {work}/qemu.mig")
        t_done, ev = q.wait_event("MIGRATION",
                                  lambda d: d.get("status") in ("completed", "failed"))
        t_done -= vmm.t0
        status = q.cmd("query-migrate").get("status")
        if ev["data"]["status"] != "completed" or status != "completed":
            raise RuntimeError(f"incoming migration: event {ev['data']}, query-migrate {status}")
        while q.cmd("query-status").get("status") == "inmigrate":
            time.sleep(0.001)
        q.cmd("cont")
        t_tick = next_tick(vmm, t_done)
        return {"migrate_done_ms": (t_done - t) / MS, "migrate_to_tick_ms": (t_tick - t) / MS,
                "exec_to_tick_ms": t_tick / MS}
    finally:
        vmm.stop()


def main():
    out = sys.argv[1]
    ember = os.path.abspath(os.environ["EMBER_BIN"])
    kernel, initrd = os.environ["EMBER_KERNEL_VMLINUX"], os.environ["EMBER_INITRAMFS"]
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    rounds = env_int("EMBER_BENCH_SNAPSHOT_RUNS", 1 if os.environ.get("EMBER_BENCH_QUICK") else 3)
    work = os.environ.get("TMPDIR", "/tmp") + f"/ember-snapbench-{os.getpid()}"
    os.makedirs(work, exist_ok=True)
    result = {"host": host_facts(), "rounds": rounds, "boot_args": BOOT_ARGS, "sizes": {},
              "commands": {
                  "snapshot ember": f"{os.environ['EMBER_BIN']} --api-sock SOCK --level Info",
                  "snapshot uffd": f"{os.path.dirname(os.environ['EMBER_BIN'])}/uffd-handler "
                                   "SOCK MEMORY_FILE",
                  "snapshot qemu": " ".join(qemu_cmd(qemu, kernel, initrd, 128, "WORK",
                                                     ["-incoming", "exec:cat WORK/qemu.mig"])),
                  "snapshot qemu defer": " ".join(qemu_cmd(qemu, kernel, initrd, 128, "WORK",
                                                           ["-incoming", "defer"])) +
                  "; QMP migrate-incoming uri=exec:cat WORK/qemu.mig"}}
    # Both sizes are created first and restored in alternation, round by
    # round: the test host's speed drifts (other work, its own TCG), and
    # a drift must not pass for a difference between the sizes.
    dirs = {mib: f"{work}/{mib}" for mib in SIZES_MIB}
    samples = {mib: {"ember_file": [], "ember_uffd": [], "qemu": [], "qemu_defer": []}
               for mib in SIZES_MIB}
    for mib in SIZES_MIB:
        os.makedirs(dirs[mib], exist_ok=True)
        r = result["sizes"][str(mib)] = {"errors": []}
        for name, fn in (("ember_create", lambda: ember_create(ember, kernel, initrd, dirs[mib], mib)),
                         ("qemu_create", lambda: qemu_create(qemu, kernel, initrd, dirs[mib], mib))):
            try:
                r[name] = fn()
            except Exception as e:  # recorded, the rest goes on
                r["errors"].append(f"{name}: {e}")
        write_json(out, result)
    for _ in range(rounds):
        for mib in SIZES_MIB:
            r, d = result["sizes"][str(mib)], dirs[mib]
            for kind, fn in (("ember_file", lambda: ember_load(ember, d, "File")),
                             ("ember_uffd", lambda: ember_load(ember, d, "Uffd")),
                             ("qemu", lambda: qemu_restore(qemu, kernel, initrd, d, mib)),
                             ("qemu_defer",
                              lambda: qemu_defer_restore(qemu, kernel, initrd, d, mib))):
                if kind.startswith("qemu") and "qemu_create" not in r:
                    continue
                if kind.startswith("ember") and "ember_create" not in r:
                    continue
                try:
                    samples[mib][kind].append(fn())
                except Exception as e:
                    r["errors"].append(f"{kind}: {e}")
    for mib in SIZES_MIB:
        result["sizes"][str(mib)]["restore"] = {
            k: {f: summary([s[f] for s in v]) for f in v[0]} for k, v in samples[mib].items() if v}
        for f in ("vm.mem", "qemu.mig"):
            try:
                os.unlink(f"{dirs[mib]}/{f}")
            except FileNotFoundError:
                pass
    write_json(out, result)


if __name__ == "__main__":
    main()
