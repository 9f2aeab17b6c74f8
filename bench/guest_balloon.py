"""Balloon part of Ember's benchmark: soft allocation, Ember against QEMU.

  guest_balloon.py OUT.json

For each VMM (Ember, QEMU's microvm with virtio-balloon-device), N microVMs
of 256 MiB run side by side; each guest dirties 200 MiB (a ramfs file of
zeros written by dd) and frees it, then idles. The host's memory is read
(the VMMs' summed RssAnon, and MemAvailable), every balloon is inflated to
200 MiB at once (Ember: PATCH /balloon; QEMU: QMP `balloon` to 56 MiB), and
once every guest reports its balloon full the memory is read again. The
report gives what came back per VM and how long inflating all of them took.

Needs a /dev/kvm that boots standard guests (bench/run runs it in the
nested test host where this machine's cannot).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import sys
import tempfile
import time

from benchlib import INSTANCE_START, HttpConn, boot_source, connect_spin, env_int, \
    machine_config, write_json
from guest import Vmm, facts

MIB = 1 << 20
MEM_MIB, DIRTY_MIB, BALLOON_MIB = 256, 200, 200
STEP_TIMEOUT_S = 300
SCRIPT = f"""mkdir -p /r && mount -t ramfs ramfs /r
dd if=/dev/zero of=/r/big bs=1M count={DIRTY_MIB} 2>/dev/null && echo EMBER-DIRTIED
rm -f /r/big
echo EMBER-FREED
"""
BOOT_ARGS = ("console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 ember.hook=script "
             "ember.end=wait ember.script=" + base64.b64encode(SCRIPT.encode()).decode())
FREED = re.compile(r"EMBER-FREED")


def rss_anon(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class EmberVm:
    kind = "ember"

    def __init__(self, ember, kernel, initrd, work, i):
        self.sock_path = f"{work}/ember-{i}.sock"
        self.vmm = Vmm([ember, "--api-sock", self.sock_path])
        sock, _ = connect_spin(self.sock_path, self.vmm.proc.pid, timeout_s=60)
        self.conn = HttpConn(sock)
        self.conn.expect("PUT", "/boot-source", boot_source(kernel, initrd, BOOT_ARGS))
        self.conn.expect("PUT", "/machine-config", machine_config(1, MEM_MIB))
        self.conn.expect("PUT", "/balloon", json.dumps(
            {"amount_mib": 0, "deflate_on_oom": False, "stats_polling_interval_s": 1}))
        self.conn.expect("PUT", "/actions", INSTANCE_START)

    def inflate(self, mib):
        self.conn.expect("PATCH", "/balloon", json.dumps({"amount_mib": mib}))

    def balloon_mib(self) -> int:
        data = self.conn.expect("GET", "/balloon/statistics", status=200)
        return json.loads(data)["actual_mib"]

    def stop(self):
        self.conn.sock.close()
        self.vmm.stop()


class Qmp:
    def __init__(self, path, pid):
        deadline = time.monotonic() + 60
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline or os.waitpid(pid, os.WNOHANG)[0]:
                    raise RuntimeError(f"QMP socket {path} did not open")
                time.sleep(0.05)
        self.f = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            msg = json.loads(self.f.readline())
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        msg = self._read()
        if "error" in msg:
            raise RuntimeError(f"QMP {name}: {msg['error']}")
        return msg["return"]


class QemuVm:
    kind = "qemu"

    def __init__(self, qemu, kernel, initrd, work, i):
        qmp_path = f"{work}/qmp-{i}.sock"
        self.argv = argv(qemu, kernel, initrd, qmp_path)
        self.vmm = Vmm(self.argv)
        self.qmp = Qmp(qmp_path, self.vmm.proc.pid)

    def inflate(self, mib):
        self.qmp.cmd("balloon", value=(MEM_MIB - mib) * MIB)

    def balloon_mib(self) -> int:
        return MEM_MIB - self.qmp.cmd("query-balloon")["actual"] // MIB

    def stop(self):
        self.qmp.sock.close()
        self.vmm.stop()


def argv(qemu, kernel, initrd, qmp_path):
    return [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-smp", "1", "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-device", "virtio-balloon-device", "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-kernel", kernel, "-initrd", initrd, "-append", BOOT_ARGS]


def wait_all(what, vms, check, timeout_s=STEP_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not all(check(vm) for vm in vms):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not every VM within {timeout_s} s")
        for vm in vms:
            vm.vmm.pump(0.05)


def run(kind_cls, binary, kernel, initrd, work, n):
    vms = []
    try:
        for i in range(n):
            vms.append(kind_cls(binary, kernel, initrd, work, i))
        wait_all("dirty and free", vms, lambda vm: vm.vmm.find("out", FREED))
        time.sleep(1)  # let the last frees settle before the reading
        rss0, avail0 = sum(rss_anon(vm.vmm.proc.pid) for vm in vms), mem_available()
        t0 = time.monotonic()
        for vm in vms:
            vm.inflate(BALLOON_MIB)
        wait_all("inflate", vms, lambda vm: vm.balloon_mib() >= BALLOON_MIB)
        took = time.monotonic() - t0
        rss1, avail1 = sum(rss_anon(vm.vmm.proc.pid) for vm in vms), mem_available()
        return {"vms": n, "rss_before_mib": rss0 / MIB, "rss_after_mib": rss1 / MIB,
                "returned_per_vm_mib": (rss0 - rss1) / MIB / n,
                "mem_available_gain_mib": (avail1 - avail0) / MIB,
                "inflate_all_s": took}
    finally:
        for vm in vms:
            vm.stop()
        run.last = vms


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    n = env_int("EMBER_BENCH_BALLOON_VMS", 2 if quick else 4)
    ember = os.environ["EMBER_BIN"]
    kernel = os.environ["EMBER_KERNEL_VMLINUX"]
    initrd = os.environ["EMBER_INITRAMFS"]
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    result = {"host": facts(qemu), "vms": n, "mem_mib": MEM_MIB, "dirty_mib": DIRTY_MIB,
              "balloon_mib": BALLOON_MIB, "kernel": kernel, "initrd": initrd,
              "commands": {
                  "ember": f"{ember} --api-sock SOCK; PUT /boot-source, /machine-config "
                           f"({MEM_MIB} MiB), /balloon (0 MiB, statistics every 1 s), "
                           f"InstanceStart; then PATCH /balloon {BALLOON_MIB} MiB",
                  "qemu": " ".join(argv(qemu, kernel, initrd, "QMP.SOCK"))
                          + f"; then QMP balloon value={(MEM_MIB - BALLOON_MIB)} MiB"},
              "runs": {}, "failures": []}
    with tempfile.TemporaryDirectory(prefix="ember-bench-balloon-") as work:
        for kind, cls, binary in (("ember", EmberVm, ember), ("qemu", QemuVm, qemu)):
            try:
                result["runs"][kind] = run(cls, binary, kernel, initrd, work, n)
                print(f"balloon {kind}: {result['runs'][kind]}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 -- reported, not fatal
                tails = [t for vm in getattr(run, "last", []) for t in vm.vmm.tail()]
                result["failures"].append({"kind": kind, "error": str(e), "tail": tails[-40:]})
                print(f"balloon {kind}: FAILED: {e}", file=sys.stderr)
            write_json(out, result)
    result["complete"] = True
    write_json(out, result)


def section(b) -> list:
    """The report's lines for this part (bench/report.py)."""
    lines = ["## 8. Soft allocation: the balloon, Ember against QEMU", "",
             f"{b['vms']} microVMs of {b['mem_mib']} MiB at once; each guest dirtied "
             f"{b['dirty_mib']} MiB and freed it, then every balloon was inflated to "
             f"{b['balloon_mib']} MiB together. Memory from the VMMs' summed RssAnon and the "
             "test host's MemAvailable. Goal: Ember returns at least as much as QEMU, faster.",
             "", "| VMM | RSS before (MiB) | RSS after (MiB) | returned per VM (MiB) | "
             "MemAvailable gain (MiB) | inflating all took (s) |", "|---|---|---|---|---|---|"]
    for kind, r in b.get("runs", {}).items():
        lines.append(f"| {kind} | {r['rss_before_mib']:.0f} | {r['rss_after_mib']:.0f} | "
                     f"{r['returned_per_vm_mib']:.1f} | {r['mem_available_gain_mib']:.0f} | "
                     f"{r['inflate_all_s']:.2f} |")
    for fl in b.get("failures", []):
        lines += ["", f"{fl['kind']} failed: {fl['error']}", "```", *fl["tail"], "```"]
    return lines


if __name__ == "__main__":
    main()
