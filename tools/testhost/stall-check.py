#!/usr/bin/python3
"""Boots the minimal guest N times with a verbose console, under Ember or
under QEMU's microvm machine, and reports the runs that stall.

Run it inside the nested test host, where the stall happens (see
tools/testhost/README.md, "Known problem"):

    eval "$(tools/guest/artifacts.sh)"
    tools/testhost/run -- /usr/bin/python3 tools/testhost/stall-check.py \\
        --vmm qemu --kernel "$EMBER_KERNEL_BZIMAGE" --initrd "$EMBER_INITRAMFS"

On a stall it prints the last KVM exits the nested host's kernel traced
(tracefs events kvm_exit and kvm_userspace_exit), which show what the vCPU
is doing.
"""
import argparse
import json
import os
import subprocess
import tempfile
import threading
import time

TRACE = "/sys/kernel/tracing"
ARGS = "console=ttyS0 reboot=k panic=1 pci=off ember.hook=info ember.end=reboot"
DONE = b"EMBER-HOOK: info rc=0"


def tracing(on: bool):
    os.system(f"mountpoint -q {TRACE} || mount -t tracefs nodev {TRACE}")
    for ev in ("kvm/kvm_exit", "kvm/kvm_userspace_exit"):
        with open(f"{TRACE}/events/{ev}/enable", "w") as f:
            f.write("1" if on else "0")
    with open(f"{TRACE}/trace", "w") as f:
        f.write("")


def argv_for(vmm, ember, kernel, initrd, tmp):
    if vmm == "qemu":
        # microvm has no i8042: after `reboot` QEMU keeps running, so a run
        # counts as done when the hook's marker appears.
        return ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host",
                "-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
                "-append", ARGS]
    cfg = os.path.join(tmp, "vm.json")
    with open(cfg, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": kernel, "initrd_path": initrd,
                                   "boot_args": ARGS},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": 128}}, f)
    return [ember, "--no-api", "--config-file", cfg]


def one_run(argv, timeout):
    """True if the marker appeared within timeout, False on a stall."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=0)
    buf = bytearray()
    seen = threading.Event()

    def reader():
        while chunk := os.read(proc.stdout.fileno(), 65536):
            buf.extend(chunk)
            if DONE in buf:
                seen.set()
        seen.set()
    threading.Thread(target=reader, daemon=True).start()
    seen.wait(timeout)
    ok = DONE in buf
    proc.kill()
    proc.wait()
    if not ok:
        tail = bytes(buf[-200:]).decode(errors="replace").replace("\r", "")
        print(f"  console ends: ...{tail!r}")
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vmm", choices=("ember", "qemu"), default="ember")
    p.add_argument("--ember", default=os.path.join(os.path.dirname(__file__), "../../build/ember"))
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--timeout", type=float, default=45)
    a = p.parse_args()
    tracing(True)
    stalls = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.n):
            t0 = time.monotonic()
            ok = one_run(argv_for(a.vmm, a.ember, a.kernel, a.initrd, tmp), a.timeout)
            print(f"{a.vmm} run {i}: {'ok' if ok else 'STALL'} {time.monotonic() - t0:.1f}s",
                  flush=True)
            if not ok:
                stalls += 1
                os.system(f"tail -n 3 {TRACE}/trace | cut -c1-230")
            with open(f"{TRACE}/trace", "w") as f:
                f.write("")
    tracing(False)
    print(f"{a.vmm}: {stalls} of {a.n} runs stalled")


if __name__ == "__main__":
    main()
