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
              the boot-timer log line, and exec -> the marker by that path.

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


def ember_file(ember, kernel, initrd, work, settle_s):
    cfg = {"boot-source": json.loads(boot_source(kernel, initrd, BOOT_ARGS)),
           "machine-config": json.loads(machine_config(VCPUS, MEM_MIB))}
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


KINDS = {"ember-file": ember_file, "qemu": qemu_microvm, "ember-api": ember_api}


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
    result = {"host": facts(qemu), "rounds_wanted": rounds, "settle_s": settle_s,
              "vcpus": VCPUS, "mem_mib": MEM_MIB, "boot_args": BOOT_ARGS,
              "kernel": kernel, "initrd": initrd,
              "commands": {
                  "ember-file": f"{ember} --no-api --config-file VM.JSON --boot-timer --level Info"
                                f"   (VM.JSON: {VCPUS} vCPU, {MEM_MIB} MiB, the kernel, initramfs and boot_args below)",
                  "qemu": " ".join(a if " " not in a else f'"{a}"' for a in qemu_argv(qemu, kernel, initrd)),
                  "ember-api": f"{ember} --api-sock SOCK --boot-timer --level Info"
                               "   (PUT /boot-source, PUT /machine-config, PUT /actions InstanceStart)",
              },
              "runs": {k: [] for k in KINDS}, "failures": []}
    kinds = list(KINDS)
    start = time.monotonic()
    progress = Progress(out + ".log", start)
    result["complete"] = False
    with tempfile.TemporaryDirectory(prefix="ember-bench-guest-") as work:
        for r in range(-1, rounds):  # round -1 warms the page cache, uncounted
            if r >= 0 and time.monotonic() - start > budget_s:
                result["stopped_early"] = f"time budget of {budget_s} s used up after {r} rounds"
                break
            order = kinds[r % 3:] + kinds[:r % 3] if r >= 0 else kinds
            for kind in order:
                fn = KINDS[kind]
                t = time.monotonic()
                progress.say(f"{kind} round {r}: starting")
                try:
                    sample = fn(ember if kind != "qemu" else qemu, kernel, initrd, work, settle_s)
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
