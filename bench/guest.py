"""Guest part of Ember's benchmark: boots, Ember against QEMU's microvm.

  guest.py OUT.json

Needs a /dev/kvm that boots standard guests (bench/run runs this inside the
nested test host where the machine's own KVM cannot). Each round boots, in a
rotating order:

- ember-file: `ember --no-api --config-file` (configured up front, as QEMU
  is): process exec -> the init's console marker, and the memory overhead;
- qemu:       `qemu-system-x86_64 -M microvm -accel kvm`, the same kernel,
              initramfs and command line: the same two measurements;
- ember-api:  `ember --api-sock`, configured over the API: InstanceStart ->
              the boot-timer log line, and exec -> the marker by that path;
- ember-nopvh: ember-file with the vmlinux's PVH note taken out (Linux
              64-bit boot instead of the PVH entry);
- ember-2m:   ember-file with huge_pages "2M" (hugetlbfs; the pool is grown
              for the run and put back);
- kvmtool:    kvmtool's `lkvm run --nodefaults` with the same kernel's
              bzImage, when bench/run built it (EMBER_BENCH_KVMTOOL).

Guests run 1 vCPU and 128 MiB with `ember.end=wait`, so they stay up after
the marker for the memory reading and never reboot. One uncounted warm-up
round first: the test host's page cache starts cold. A boot that fails is
recorded with its output and the rounds go on.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import json

from benchlib import (INSTANCE_START, HttpConn, boot_source, connect_spin, env_int,
                      machine_config, now_ns, smaps_rollup, summary, write_json)
from native import host_facts

MS = 1e6
MARKER = re.compile(r"EMBER-INIT: started")
BOOT_TIMER = re.compile(r"Guest-boot-time = *(\d+) us")
VCPUS, MEM_MIB = 1, 128
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 ember.end=wait"
BOOT_TIMEOUT_S = 120
TAIL = 30


class Vmm:
    """One VMM process; its stdout (the guest console) and stderr are read
    line by line, each line stamped with its arrival time."""

    def __init__(self, argv):
        self.argv = argv
        self.t0 = now_ns()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.sel = selectors.DefaultSelector()
        self.partial = {}
        self.lines = []  # (ns since exec, stream, text)
        for name, pipe in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self.sel.register(pipe, selectors.EVENT_READ, name)
            self.partial[name] = b""

    def pump(self, timeout_s: float) -> bool:
        """Read whatever arrives within timeout_s; False once both pipes hit EOF."""
        if not self.sel.get_map():
            return False
        for key, _ in self.sel.select(timeout_s):
            chunk = key.fileobj.read(65536)
            t = now_ns() - self.t0
            name = key.data
            if not chunk:
                self.sel.unregister(key.fileobj)
                if self.partial[name]:
                    self.lines.append((t, name, self.partial[name].decode(errors="replace")))
                continue
            *done, self.partial[name] = (self.partial[name] + chunk).split(b"\n")
            self.lines.extend((t, name, d.decode(errors="replace").rstrip("\r")) for d in done)
        return True

    def find(self, stream, regex):
        for t, name, text in self.lines:
            if name == stream:
                m = regex.search(text)
                if m:
                    return t, m
        return None

    def wait_for(self, stream, regex, timeout_s=BOOT_TIMEOUT_S):
        """(ns since exec, match) of the first matching line."""
        deadline = time.monotonic() + timeout_s
        while True:
            hit = self.find(stream, regex)
            if hit:
                return hit
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no /{regex.pattern}/ on {stream} within {timeout_s} s")
            if not self.pump(min(left, 1.0)) and self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before /{regex.pattern}/")

    def settle(self, seconds: float):
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if not self.pump(left):
                time.sleep(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pump(0)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.sel.close()

    def tail(self):
        return [f"{name}: {text}" for _, name, text in self.lines[-TAIL:]]


def ember_file(ember, kernel, initrd, work, settle_s, huge_pages=None):
    cfg = {"boot-source": json.loads(boot_source(kernel, initrd, BOOT_ARGS)),
           "machine-config": json.loads(machine_config(VCPUS, MEM_MIB))}
    if huge_pages:
        cfg["machine-config"]["huge_pages"] = huge_pages
    path = f"{work}/vm.json"
    with open(path, "w") as f:
        json.dump(cfg, f)
    vmm = Vmm([ember, "--no-api", "--config-file", path, "--boot-timer", "--level", "Info"])
    try:
        t_marker, _ = vmm.wait_for("out", MARKER)
        t_bt, m = vmm.wait_for("err", BOOT_TIMER)
        vmm.settle(settle_s)
        mem = smaps_rollup(vmm.proc.pid, MEM_MIB << 20)
        return {"exec_to_marker_ms": t_marker / MS, "exec_to_boot_timer_line_ms": t_bt / MS,
                "boot_timer_ms": int(m.group(1)) / 1e3, **mem}
    finally:
        vmm.stop()
        ember_file.last = vmm


def qemu_microvm(qemu, kernel, initrd, work, settle_s):
    vmm = Vmm(qemu_argv(qemu, kernel, initrd))
    try:
        t_marker, _ = vmm.wait_for("out", MARKER)
        vmm.settle(settle_s)
        mem = smaps_rollup(vmm.proc.pid, MEM_MIB << 20)
        return {"exec_to_marker_ms": t_marker / MS, **mem}
    finally:
        vmm.stop()
        qemu_microvm.last = vmm


def qemu_argv(qemu, kernel, initrd):
    return [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-smp", str(VCPUS), "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", BOOT_ARGS]


def ember_api(ember, kernel, initrd, work, settle_s):
    sock_path = f"{work}/api.sock"
    vmm = Vmm([ember, "--api-sock", sock_path, "--boot-timer", "--level", "Info"])
    try:
        sock, _ = connect_spin(sock_path, vmm.proc.pid, timeout_s=BOOT_TIMEOUT_S)
        conn = HttpConn(sock)
        conn.expect("PUT", "/boot-source", boot_source(kernel, initrd, BOOT_ARGS))
        conn.expect("PUT", "/machine-config", machine_config(VCPUS, MEM_MIB))
        t_is = now_ns() - vmm.t0
        conn.expect("PUT", "/actions", INSTANCE_START)
        t_204 = now_ns() - vmm.t0
        sock.close()
        t_marker, _ = vmm.wait_for("out", MARKER)
        t_bt, m = vmm.wait_for("err", BOOT_TIMER)
        return {"exec_to_marker_ms": t_marker / MS, "exec_to_start_204_ms": t_204 / MS,
                "start_req_ms": (t_204 - t_is) / MS,
                "start_to_boot_timer_line_ms": (t_bt - t_is) / MS,
                "boot_timer_ms": int(m.group(1)) / 1e3}
    finally:
        vmm.stop()
        ember_api.last = vmm


def ember_nopvh(ember, kernel, initrd, work, settle_s):
    """ember-file with the same vmlinux minus its PVH note: the Linux 64-bit
    boot protocol instead of the PVH entry, the one difference."""
    return ember_file(ember, nopvh_copy(kernel, work), initrd, work, settle_s)


def ember_2m(ember, kernel, initrd, work, settle_s):
    """ember-file with huge_pages "2M" (the pool is sized in main())."""
    return ember_file(ember, kernel, initrd, work, settle_s, huge_pages="2M")


def kvmtool(lkvm, kernel, initrd, work, settle_s):
    """kvmtool's lkvm with no default devices and the serial console. It
    boots bzImages only (no ELF loader on x86): the bzImage of the same
    kernel build, which decompresses itself first."""
    vmm = Vmm(kvmtool_argv(lkvm, bzimage_of(kernel), initrd))
    try:
        t_marker, _ = vmm.wait_for("out", MARKER)
        vmm.settle(settle_s)
        mem = smaps_rollup(vmm.proc.pid, MEM_MIB << 20)
        return {"exec_to_marker_ms": t_marker / MS, **mem}
    finally:
        vmm.stop()
        kvmtool.last = vmm


def kvmtool_argv(lkvm, bzimage, initrd):
    # No --name: lkvm names each guest after its own pid (guest-PID), so a
    # socket one boot leaves in ~/.lkvm cannot clash with the next.
    # --nodefaults also drops kvmtool's x86 kernel parameters, which its
    # machine needs: they go back in front of the common ones.
    return [lkvm, "run", "--nodefaults", "-c", str(VCPUS), "-m", str(MEM_MIB),
            "--console", "serial", "-k", bzimage, "-i", initrd,
            "-p", f"{KVMTOOL_X86_ARGS} {BOOT_ARGS}"]


# kvmtool's own x86 defaults (x86/kvm.c, kvm__arch_set_cmdline) but for
# pci=conf1 (no PCI device here: pci=off stays) and earlyprintk: its
# interrupts and timer go through the PIC, and it has no ACPI tables.
KVMTOOL_X86_ARGS = "noapic noacpi i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1"


def bzimage_of(vmlinux):
    return os.path.join(os.path.dirname(vmlinux), "bzImage")


XEN_ELFNOTE_PHYS32_ENTRY = 18


def nopvh_copy(kernel, work):
    """A copy of the ELF kernel whose Xen PHYS32_ENTRY note has another type,
    so that no VMM finds a PVH entry point in it (made once per run)."""
    path = f"{work}/vmlinux-nopvh"
    if os.path.exists(path):
        return path
    import struct
    data = bytearray(open(kernel, "rb").read())
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    patched = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name = bytes(data[pos + 12:pos + 12 + namesz])
            if ntype == XEN_ELFNOTE_PHYS32_ENTRY and name == b"Xen\0":
                struct.pack_into("<I", data, pos + 8, 0x7e)  # an unused Xen note type
                patched += 1
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    if not patched:
        raise RuntimeError(f"{kernel} has no PVH note to take out")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.rename(path + ".tmp", path)
    return path


HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def reserve_hugepages(pages):
    """Sizes the host's 2 MiB pool for ember-2m; the previous size, or None
    if it cannot (not root, not the test host): ember-2m is then skipped."""
    try:
        with open(HUGEPAGES) as f:
            before = int(f.read())
        with open(HUGEPAGES, "w") as f:
            f.write(f"{before + pages}\n")
        with open(HUGEPAGES) as f:
            if int(f.read()) < before + pages:
                return None
        return before
    except OSError:
        return None


KINDS = {"ember-file": ember_file, "qemu": qemu_microvm, "ember-api": ember_api,
         "ember-nopvh": ember_nopvh, "ember-2m": ember_2m, "kvmtool": kvmtool}


def facts(qemu):
    f = host_facts()
    f["testhost"] = os.environ.get("TESTHOST") == "1"
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=60)
        f["qemu"] = out.stdout.splitlines()[0] if out.stdout else out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        f["qemu"] = f"unknown ({e})"
    return f


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    rounds = env_int("EMBER_BENCH_GUEST_RUNS", 3 if quick else 15)
    budget_s = env_int("EMBER_BENCH_GUEST_BUDGET_S", 300)
    settle_s = float(os.environ.get("EMBER_BENCH_SETTLE_S", "1.5"))
    ember = os.environ["EMBER_BIN"]
    kernel = os.environ["EMBER_KERNEL_VMLINUX"]
    initrd = os.environ["EMBER_INITRAMFS"]
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    lkvm = os.environ.get("EMBER_BENCH_KVMTOOL")  # bench/run: tools/peers/build-kvmtool.sh
    skipped = {}
    if not lkvm:
        skipped["kvmtool"] = os.environ.get("EMBER_BENCH_KVMTOOL_SKIPPED", "not built")
    hugepages_before = reserve_hugepages(MEM_MIB // 2 + 4)
    if hugepages_before is None:
        skipped["ember-2m"] = f"cannot grow the 2 MiB huge page pool ({HUGEPAGES})"
    result = {"host": facts(qemu), "rounds_wanted": rounds, "settle_s": settle_s,
              "vcpus": VCPUS, "mem_mib": MEM_MIB, "boot_args": BOOT_ARGS,
              "kernel": kernel, "initrd": initrd,
              "commands": {
                  "ember-file": f"{ember} --no-api --config-file VM.JSON --boot-timer --level Info"
                                f"   (VM.JSON: {VCPUS} vCPU, {MEM_MIB} MiB, the kernel, initramfs and boot_args below)",
                  "qemu": " ".join(a if " " not in a else f'"{a}"' for a in qemu_argv(qemu, kernel, initrd)),
                  "ember-api": f"{ember} --api-sock SOCK --boot-timer --level Info"
                               "   (PUT /boot-source, PUT /machine-config, PUT /actions InstanceStart)",
                  "ember-nopvh": "as ember-file, with a copy of the vmlinux whose PVH note "
                                 "(XEN_ELFNOTE_PHYS32_ENTRY) has another type: Linux 64-bit boot",
                  "ember-2m": "as ember-file, with machine-config huge_pages \"2M\"",
                  "kvmtool": " ".join(a if " " not in a else f'"{a}"' for a in
                                      kvmtool_argv(lkvm or "lkvm", bzimage_of(kernel), initrd)),
              },
              "skipped": skipped,
              "runs": {k: [] for k in KINDS if k not in skipped}, "failures": []}
    kinds = [k for k in KINDS if k not in skipped]
    start = time.monotonic()
    progress = Progress(out + ".log", start)
    result["complete"] = False
    with tempfile.TemporaryDirectory(prefix="ember-bench-guest-") as work:
        for r in range(-1, rounds):  # round -1 warms the page cache, uncounted
            if r >= 0 and time.monotonic() - start > budget_s:
                result["stopped_early"] = f"time budget of {budget_s} s used up after {r} rounds"
                break
            n = len(kinds)
            order = kinds[r % n:] + kinds[:r % n] if r >= 0 else kinds
            for kind in order:
                fn = KINDS[kind]
                t = time.monotonic()
                progress.say(f"{kind} round {r}: starting")
                vmm_bin = {"qemu": qemu, "kvmtool": lkvm}.get(kind, ember)
                try:
                    sample = fn(vmm_bin, kernel, initrd, work, settle_s)
                except Exception as e:  # noqa: BLE001 -- any failure is reported, not fatal
                    vmm = getattr(fn, "last", None)
                    result["failures"].append({"kind": kind, "round": r, "error": str(e),
                                               "tail": vmm.tail() if vmm else []})
                    progress.say(f"{kind} round {r}: FAILED: {e}", echo=True)
                    continue
                finally:
                    fn.last = None
                if r >= 0:
                    sample["round"] = r
                    result["runs"][kind].append(sample)
                progress.say(f"{kind} round {r}: exec->marker {sample['exec_to_marker_ms']:.0f} ms"
                             f" ({time.monotonic() - t:.1f} s)", echo=True)
                save(out, result, start)
    result["complete"] = True
    save(out, result, start)
    if hugepages_before is not None:
        with open(HUGEPAGES, "w") as f:
            f.write(f"{hugepages_before}\n")
    progress.say("done")


def save(out, result, start):
    """Written after every boot, so a test host that hangs leaves what was
    measured up to then in the shared results directory."""
    result["stats"] = {
        kind: {key: summary([s[key] for s in runs]) for key in (runs[0] if runs else {})
               if key != "round"}
        for kind, runs in result["runs"].items()
    }
    result["host"]["loadavg_end"] = os.getloadavg()
    result["elapsed_s"] = time.monotonic() - start
    write_json(out, result)


class Progress:
    """A timestamped log next to the results, plus a heartbeat line every
    10 s from a thread: if the test host hangs, the log tells whether the
    whole VM stopped (no heartbeat) or only a boot or the console did."""

    def __init__(self, path, start):
        self.path, self.start = path, start
        self.lock = threading.Lock()
        threading.Thread(target=self._beat, daemon=True).start()

    def say(self, text, echo=False):
        line = f"[{time.monotonic() - self.start:7.1f}] {text}"
        with self.lock, open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        if echo:
            print(f"bench: {text}", file=sys.stderr)

    def _beat(self):
        while True:
            time.sleep(10)
            self.say(f"alive, load {os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
