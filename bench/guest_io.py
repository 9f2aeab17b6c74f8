"""I/O part of Ember's benchmark: block and network throughput, Ember
against QEMU's microvm and kvmtool.

  guest_io.py OUT.json

Parts (EMBER_BENCH_PARTS, words `block` and `net`; both by default). Needs a
/dev/kvm that boots standard guests, and root for the network part (a
network namespace with a TAP of its own). bench/run runs it inside the
nested test host where this machine's KVM cannot boot guests.

Each round boots three VMs (four with kvmtool), in a rotating order, every
one with the same kernel build and initramfs, 1 vCPU, 256 MiB:

- ember-sync:  Ember, the scratch drive on the Sync engine;
- ember-async: Ember, the scratch drive on the Async (io_uring) engine;
- qemu:        QEMU microvm, virtio-blk-device (cache=writeback, aio=threads)
               and virtio-net-device on the same TAP (vhost=off);
- kvmtool:     kvmtool's lkvm (EMBER_BENCH_KVMTOOL, built by bench/run; skipped
               with the reason in EMBER_BENCH_KVMTOOL_SKIPPED otherwise):
               virtio-pci, its only x86 transport for a disk, so the bzImage
               of the same kernel build plus CONFIG_VIRTIO_PCI
               (EMBER_BENCH_KVMTOOL_KERNEL) and pci=conf1; the image with -d,
               the TAP with -n mode=tap (no vhost).

The guest runs one script (the initramfs's `script` hook, ember.script= on
the command line). Block: busybox dd on /dev/vda, a raw scratch file of
EMBER_BENCH_BLOCK_MIB made once per run on the host (tmpfs in the test
host) and shared by every VM; the guest times each dd with /proc/uptime and
prints it. Net: the guest sends EMBER_BENCH_NET_MIB to the host with busybox
nc, then receives as much; the host side (this process, in the namespace)
counts the bytes and takes the time. The VMM's stdout is the guest console.

One uncounted warm-up round first, with small sizes: the test host's page
cache starts cold, and QEMU's block and net code is paged in on first use.
A failed boot is recorded with its output and the rounds go on.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import env_int, summary, write_json
from guest import KVMTOOL_X86_ARGS, Progress, Vmm, facts

VCPUS, MEM_MIB = 1, 256
HOST_IP, GUEST_IP = "10.213.0.1", "10.213.0.2"
TX_PORT, RX_PORT = 5101, 5102  # guest -> host, host -> guest
MIB = 1 << 20
BOOT_TIMEOUT_S = 120
DONE = re.compile(r"EMBER-HOOK: script rc=(-?\d+)")
MMIO_LINE = re.compile(r"EMBER-MMIO (.*)")
QUEUE_LINE = re.compile(r"EMBER-QUEUE (.*)")
QUEUE_LIMITS = ("max_sectors_kb", "max_hw_sectors_kb", "max_segments", "max_segment_size",
                "read_ahead_kb", "nr_requests")
IO_LINE = re.compile(r"EMBER-IO (\S+) (-?\d+) ([\d.]+) ([\d.]+)")
IRQ_LINE = re.compile(r"EMBER-IRQ (a|z)((?: \d+)*)\s*$")
KINDS = ("ember-sync", "ember-async", "qemu", "kvmtool")
# The x86 kernel reads at most 2048 bytes of command line (with its NUL);
# kvmtool cuts a longer one off without a word.
CMDLINE_MAX = 2047
WARMUP_MIB = 4

# Block workloads: (name, dd arguments, MiB moved as a function of the size
# knob). Every one starts with the guest's caches dropped. The buffered read
# runs twice: the first pass also puts guest RAM that nothing has touched
# yet into the page cache, and what that costs depends on how the VMM
# mapped guest RAM (see guest_ram); the second pass reuses those pages and
# leaves the block path alone to measure. 4 KiB runs one
# request at a time (dd is synchronous): random offsets would cost a fork
# per request in busybox sh, and on a tmpfs-backed image a 4 KiB request
# costs the same wherever it lands, so these run sequentially.
BLOCK = (
    ("seq-write-direct", "if=/dev/zero of=/dev/vda bs=1M count={n} oflag=direct", 1.0),
    ("seq-read", "if=/dev/vda of=/dev/null bs=1M count={n}", 1.0),
    ("seq-read-again", "if=/dev/vda of=/dev/null bs=1M count={n}", 1.0),
    ("seq-read-direct", "if=/dev/vda of=/dev/null bs=1M count={n} iflag=direct", 1.0),
    ("4k-read-direct", "if=/dev/vda of=/dev/null bs=4k count={k} iflag=direct", None),
    ("4k-write-direct", "if=/dev/zero of=/dev/vda bs=4k count={k} oflag=direct", None),
)


def boot_args(script: str, code: str | None = None) -> str:
    """The guest's kernel command line; `code` replaces the base64 of the
    script (for showing the command in the report)."""
    code = code or base64.b64encode(script.encode()).decode()
    return (f"console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 "
            f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off "
            f"ember.hook=script ember.script={code} ember.end=wait")


def guest_script(parts, block_mib: int, k4_count: int, net_mib: int, probe=False) -> str:
    """The guest's shell script; kept short, it goes base64 into the kernel
    command line (2048 bytes at most). r NAME CMD: drops the caches, runs
    CMD and prints `EMBER-IO NAME STATUS START END` with /proc/uptime (10 ms
    resolution; a shell builtin reads it, so nothing is forked around the
    timed command)."""
    s = ["r(){ sync;echo 3 >/proc/sys/vm/drop_caches;read a _ </proc/uptime;eval \"$2\";"
         "c=$?;read z _ </proc/uptime;echo \"EMBER-IO $1 $c $a $z\";}"]
    if probe:
        # How the guest found its virtio devices: virtio_mmio.device= on
        # the command line (QEMU microvm adds those itself, Ember too), ACPI
        # (LNRO0005 devices in the DSDT), or PCI (kvmtool).
        s.append("echo EMBER-MMIO $(grep -o 'virtio_mmio.device=[^ ]*' /proc/cmdline)"
                 " $(ls /sys/bus/platform/devices|grep -i -e virtio -e LNRO)"
                 " $(ls /sys/bus/pci/drivers/virtio-pci 2>/dev/null|grep :)"
                 # and which interrupt controller delivers their interrupts
                 " $(grep virtio /proc/interrupts|tr -s ' '|cut -d' ' -f4|sort -u|sed s/^/chip=/)")
        if "block" in parts:
            # The request limits the guest derived from the device.
            s.append("cd /sys/block/vda/queue&&echo EMBER-QUEUE $(for f in " + " ".join(QUEUE_LIMITS)
                     + ";do echo $f=$(cat $f);done);cd /")
    if "block" in parts:
        for name, args, _ in BLOCK:
            s.append(f"r {name} 'dd {args.format(n=block_mib, k=k4_count)} 2>/dev/null'")
    if "net" in parts:
        # Guest -> host: tcp-send (tools/guest/bench), static, 256 KiB send()
        # calls from one buffer: busybox `dd | nc` cost the guest a pipe and
        # nc's small reads, and under TCG the guest's CPU is the bottleneck.
        # Host -> guest into /dev/null; nc -w bounds the connect.
        # The guest's eth0 tx_packets and virtio interrupt counts (1 vCPU:
        # one column) around it: frames and interrupts per MiB, a VMM's
        # batching and notification behaviour seen from inside.
        s.append("q(){ echo EMBER-IRQ $1 $(cat /sys/class/net/eth0/statistics/tx_packets)"
                 " $(grep virtio /proc/interrupts|tr -s ' '|cut -d' ' -f3);}")
        s.append("q a")
        s.append(f"r net-tx 'tcp-send {HOST_IP} {TX_PORT} {net_mib}'")
        s.append("q z")
        s.append(f"r net-rx 'nc -w 30 {HOST_IP} {RX_PORT} >/dev/null'")
    return ";".join(s)


# --- network namespace --------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def setns(fd: int):
    if hasattr(os, "setns"):  # Python 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Netns:
    """A network namespace of our own with one TAP (up, HOST_IP on it).
    The calling thread moves into it, so the VMMs started from here and the
    host-side sockets are all inside; close() moves back and deletes it."""

    def __init__(self):
        self.name = f"ember-bench-{os.getpid()}"
        self.tap = "tapbench0"
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._ip("netns", "add", self.name)
        try:
            for args in (("tuntap", "add", self.tap, "mode", "tap"),
                         ("link", "set", self.tap, "up"), ("link", "set", "lo", "up"),
                         ("addr", "add", f"{HOST_IP}/24", "dev", self.tap)):
                self._ip("-n", self.name, *args)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                setns(fd)
            finally:
                os.close(fd)
        except BaseException:
            self._ip("netns", "del", self.name, check=False)
            raise

    @staticmethod
    def _ip(*args, check=True):
        run = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
        if check and run.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {run.stderr.strip()}")

    def close(self):
        setns(self.home)
        os.close(self.home)
        self._ip("-n", self.name, "link", "del", self.tap, check=False)
        self._ip("netns", "del", self.name, check=False)


class NetPeer:
    """The host side of one boot's transfers, on a thread: accepts the
    guest's connection on TX_PORT and counts what arrives until EOF, then
    accepts on RX_PORT, sends `size` bytes and waits for the guest to close
    (its nc exits once it has read everything). Times are taken here, from
    the accept to the EOF."""

    def __init__(self, size: int, timeout_s: float):
        self.size, self.timeout_s = size, timeout_s
        self.result, self.error = {}, None
        self.socks, self.conns = [], []
        for port in (TX_PORT, RX_PORT):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((HOST_IP, port))
            s.listen(1)
            s.settimeout(timeout_s)
            self.socks.append(s)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result["net-tx"] = self._receive(self.socks[0])
            self.result["net-rx"] = self._send(self.socks[1])
        except Exception as e:  # noqa: BLE001 -- reported with the boot
            self.error = f"{type(e).__name__}: {e}"

    def _receive(self, srv):
        c, _ = srv.accept()
        self.conns.append(c)
        with c:
            c.settimeout(self.timeout_s)
            t0, n = time.monotonic(), 0
            while b := c.recv(MIB):
                n += len(b)
            return {"bytes": n, "s": time.monotonic() - t0}

    def _send(self, srv):
        c, _ = srv.accept()
        self.conns.append(c)
        with c:
            c.settimeout(self.timeout_s)
            t0 = time.monotonic()
            chunk = bytes(MIB)
            left = self.size
            while left:
                c.sendall(chunk[:min(left, MIB)])
                left -= min(left, MIB)
            c.shutdown(socket.SHUT_WR)
            extra = c.recv(16)  # b"" once the guest has read all and closed
            return {"bytes": self.size, "s": time.monotonic() - t0, "extra": len(extra)}

    def close(self):
        # A boot that died leaves the thread blocked in accept() or recv():
        # close() alone would not wake it, and a listener it still holds
        # keeps the port, so every later boot's bind() failed with
        # EADDRINUSE. shutdown() wakes it.
        for s in self.socks + self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected, or closed already
            s.close()
        self.thread.join(5)


# --- the VMs ------------------------------------------------------------------------

def ember_argv(ember, cfg_path):
    return [ember, "--no-api", "--config-file", cfg_path, "--level", "Warning"]


def ember_config(kernel, initrd, args, image, engine, tap):
    cfg = {"boot-source": {"kernel_image_path": kernel, "initrd_path": initrd, "boot_args": args},
           "machine-config": {"vcpu_count": VCPUS, "mem_size_mib": MEM_MIB}}
    if image:
        cfg["drives"] = [{"drive_id": "scratch", "path_on_host": image, "is_root_device": False,
                          "is_read_only": False, "cache_type": "Writeback", "io_engine": engine}]
    if tap:
        cfg["network-interfaces"] = [{"iface_id": "eth0", "host_dev_name": tap}]
    return cfg


def qemu_argv(qemu, kernel, initrd, args, image, tap):
    argv = [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-smp", str(VCPUS), "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", args]
    if image:
        argv += ["-drive", f"id=d0,file={image},format=raw,if=none,cache=writeback,aio=threads",
                 "-device", "virtio-blk-device,drive=d0"]
    if tap:
        argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                 "-device", "virtio-net-device,netdev=n0"]
    return argv


def kvmtool_argv(lkvm, bzimage, initrd, args, image, tap):
    """lkvm with no default devices (as guest.py), on its own x86 transport,
    virtio-pci: on x86 kvmtool has virtio-mmio for a NIC (`trans=mmio`) but
    not for a disk (`--virtio-transport mmio` is for ARM and RISC-V). So its
    guest is the bzImage of the same kernel build with CONFIG_VIRTIO_PCI=y
    added (tools/peers/build-kvmtool-kernel.sh), and `pci=conf1` (kvmtool's
    own x86 default) where the others have `pci=off`. The scratch image is a
    raw disk (the host's page cache; a guest flush is fsync), the TAP has no
    vhost (as QEMU's vhost=off)."""
    args = " ".join("pci=conf1" if a == "pci=off" else a for a in args.split())
    argv = [lkvm, "run", "--nodefaults", "-c", str(VCPUS), "-m", str(MEM_MIB),
            "--console", "serial", "-k", bzimage, "-i", initrd]
    if image:
        argv += ["-d", image]
    if tap:
        argv += ["-n", f"mode=tap,tapif={tap}"]
    return argv + ["-p", f"{KVMTOOL_X86_ARGS} {args}"]


def kvmtool_version(lkvm):
    try:
        run = subprocess.run([lkvm, "version"], capture_output=True, text=True, timeout=60)
        return (run.stdout.strip() or run.stderr.strip()) + f" ({lkvm})"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def links_libaio(path):
    """Whether lkvm was built with libaio (Linux AIO for its disks; kvmtool's
    Makefile uses it when the headers are there), else it does synchronous
    preadv/pwritev on the device's I/O thread."""
    with open(path, "rb") as f:
        return b"libaio.so" in f.read()


def one_boot(kind, env, script, sizes, work):
    """Boots one VM, waits for the script, returns {workload: sample}."""
    args = boot_args(script)
    image, tap = env["image"], env["tap"]
    if kind == "qemu":
        argv = qemu_argv(env["qemu"], env["kernel"], env["initrd"], args, image, tap)
    elif kind == "kvmtool":
        argv = kvmtool_argv(env["kvmtool"], env["kvmtool_kernel"], env["initrd"], args, image, tap)
        if len(argv[-1]) > CMDLINE_MAX:
            raise RuntimeError(f"kvmtool's command line is {len(argv[-1])} bytes, more than the "
                               f"{CMDLINE_MAX} the kernel takes: the script would be cut off")
    else:
        engine = "Async" if kind == "ember-async" else "Sync"
        path = f"{work}/vm.json"
        with open(path, "w") as f:
            json.dump(ember_config(env["kernel"], env["initrd"], args, image, engine, tap), f)
        argv = ember_argv(env["ember"], path)
    one_boot.mmio = one_boot.queue = one_boot.ram = None
    peer = NetPeer(sizes["net"] * MIB, env["step_timeout_s"]) if tap else None
    vmm = Vmm(argv)
    one_boot.last = vmm
    try:
        _, m = vmm.wait_for("out", DONE, BOOT_TIMEOUT_S + env["step_timeout_s"])
        samples, errors = {}, []
        for _, stream, text in vmm.lines:
            hit = IO_LINE.search(text) if stream == "out" else None
            if not hit:
                continue
            name, rc, a, z = hit.group(1), int(hit.group(2)), float(hit.group(3)), float(hit.group(4))
            if rc != 0:
                errors.append(f"{name}: exit status {rc}")
                continue
            samples[name] = {"guest_s": z - a}
        try:
            one_boot.ram = guest_ram(vmm.proc.pid)
        except OSError as e:
            errors.append(f"reading /proc/PID/smaps: {e}")
        probe = vmm.find("out", MMIO_LINE)
        if probe:
            one_boot.mmio = probe[1].group(1).split()
        probe = vmm.find("out", QUEUE_LINE)
        if probe:
            one_boot.queue = dict(kv.split("=", 1) for kv in probe[1].group(1).split() if "=" in kv)
        if m.group(1) != "0":
            errors.append(f"the script ended with status {m.group(1)}")
        counts = {}
        for _, stream, text in vmm.lines:
            hit = IRQ_LINE.search(text) if stream == "out" else None
            if hit:
                nums = [int(x) for x in hit.group(2).split()]
                if nums:
                    counts[hit.group(1)] = (nums[0], sum(nums[1:]))
        if "net-tx" in samples and {"a", "z"} <= counts.keys():
            samples["net-tx"]["guest_tx_packets"] = counts["z"][0] - counts["a"][0]
            samples["net-tx"]["guest_irqs"] = counts["z"][1] - counts["a"][1]
        if peer:
            peer.close()
            if peer.error:
                errors.append(f"host side of the network transfers: {peer.error}")
            for name, r in peer.result.items():
                if name in samples:
                    samples[name].update(host_s=r["s"], bytes=r["bytes"])
        for name, s in samples.items():
            mib = sizes.get(name)
            secs = s.get("host_s", s["guest_s"])
            if name.startswith("net") and s.get("bytes") != sizes["net"] * MIB:
                errors.append(f"{name}: {s.get('bytes')} bytes moved, {sizes['net'] * MIB} expected")
                mib = None
            s["mib_s"] = mib / secs if mib and secs > 0 else None
        return samples, errors
    finally:
        if peer:
            peer.close()
        vmm.stop()


def guest_ram(pid: int) -> dict | None:
    """Where the VMM mapped guest RAM and how much of it the host backs
    with transparent huge pages. KVM maps a guest range with a 2 MiB page
    only if the host address is as aligned as the guest-physical one, so an
    unaligned mapping makes every first touch of a 4 KiB guest page a
    separate nested page fault."""
    want_kb = MEM_MIB << 10
    best, cur = None, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):
                lo, hi = (int(x, 16) for x in first.split("-"))
                cur = {"start": lo, "size_kb": (hi - lo) >> 10}
                continue
            if cur and want_kb <= cur["size_kb"] <= want_kb + 8192 and first in ("Rss:", "AnonHugePages:"):
                cur[first[:-1]] = int(line.split()[1])
                if first == "AnonHugePages:" and (not best or cur.get("Rss", 0) > best.get("Rss", 0)):
                    best = cur
    if not best:
        return None
    return {"aligned_2m": best["start"] % (2 << 20) == 0, "rss_kb": best.get("Rss"),
            "anon_huge_kb": best.get("AnonHugePages")}


def sizes_for(parts, block_mib, k4_count, net_mib):
    sizes = {}
    if "block" in parts:
        for name, _, per in BLOCK:
            sizes[name] = block_mib * per if per else k4_count * 4096 / MIB
    if "net" in parts:
        sizes["net"] = net_mib
        sizes["net-tx"] = sizes["net-rx"] = net_mib
    return sizes


def make_image(path, mib):
    """A raw scratch image, every block written (not sparse), so the first
    reads of the first VM do not differ from the others'."""
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    parts = [p for p in os.environ.get("EMBER_BENCH_PARTS", "block net").split()
             if p in ("block", "net")] or ["block", "net"]
    rounds = env_int("EMBER_BENCH_IO_RUNS", 2 if quick else 4)
    block_mib = env_int("EMBER_BENCH_BLOCK_MIB", 128 if quick else 256)
    k4_count = env_int("EMBER_BENCH_BLOCK_4K", 1024 if quick else 2048)
    net_mib = env_int("EMBER_BENCH_NET_MIB", 8 if quick else 16)
    step_timeout_s = env_int("EMBER_BENCH_IO_STEP_TIMEOUT_S", 240)
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    # bench/run: tools/peers/build-kvmtool.sh and build-kvmtool-kernel.sh
    lkvm = os.environ.get("EMBER_BENCH_KVMTOOL")
    lkvm_kernel = os.environ.get("EMBER_BENCH_KVMTOOL_KERNEL")
    kvmtool_skipped = None
    if not lkvm:
        kvmtool_skipped = os.environ.get("EMBER_BENCH_KVMTOOL_SKIPPED", "not built")
    elif not lkvm_kernel:
        kvmtool_skipped = os.environ.get("EMBER_BENCH_KVMTOOL_SKIPPED",
                                         "no guest kernel with CONFIG_VIRTIO_PCI (EMBER_BENCH_KVMTOOL_KERNEL)")
        lkvm = None
    kinds = [k for k in KINDS if k != "kvmtool" or lkvm]
    # The default budget was set for three VMs a round; kvmtool's fourth
    # stretches it in proportion, so it does not cost a round.
    budget_s = env_int("EMBER_BENCH_IO_BUDGET_S", (100 if quick else 180) * len(kinds) // 3)
    net_skipped = None
    if "net" in parts and os.geteuid() != 0:
        net_skipped = "not root: the network part needs a network namespace and a TAP of its own"
        parts.remove("net")
    env = {"ember": os.environ["EMBER_BIN"], "kernel": os.environ["EMBER_KERNEL_VMLINUX"],
           "initrd": os.environ["EMBER_INITRAMFS"], "qemu": qemu, "kvmtool": lkvm,
           "kvmtool_kernel": lkvm_kernel,
           "image": None, "tap": None, "step_timeout_s": step_timeout_s}
    script = guest_script(parts, block_mib, k4_count, net_mib)
    warm_script = guest_script(parts, WARMUP_MIB, 64, WARMUP_MIB, probe=True)
    sizes = sizes_for(parts, block_mib, k4_count, net_mib)
    warm_sizes = sizes_for(parts, WARMUP_MIB, 64, WARMUP_MIB)
    result = {"host": facts(qemu), "parts": parts, "rounds_wanted": rounds, "quick": quick,
              "vcpus": VCPUS, "mem_mib": MEM_MIB, "block_mib": block_mib, "block_4k_count": k4_count,
              "net_mib": net_mib, "sizes_mib": sizes, "kernel": env["kernel"],
              "initrd": env["initrd"], "guest_script": script, "boot_args": boot_args("", "BASE64-SCRIPT"),
              "kinds": kinds, "runs": {k: [] for k in kinds}, "failures": [], "complete": False,
              "net_skipped": net_skipped, "kvmtool_skipped": kvmtool_skipped,
              "kvmtool_libaio": links_libaio(lkvm) if lkvm else None}
    if lkvm:
        result["host"]["kvmtool"] = kvmtool_version(lkvm)
    if not parts:
        raise SystemExit(f"guest_io: nothing to run ({net_skipped})")
    start = time.monotonic()
    progress = Progress(out + ".log", start)
    netns = None
    # The image goes on tmpfs (/dev/shm) where there is one: both VMMs then
    # measure their own path to the host's page cache, not a disk.
    scratch_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="ember-bench-io-", dir=scratch_dir) as work:
        if "block" in parts:
            env["image"] = f"{work}/scratch.raw"
            result["image_dir"] = os.path.dirname(work)
            make_image(env["image"], max(block_mib, WARMUP_MIB, -(-k4_count * 4096 // MIB)))
        if "net" in parts:
            netns = Netns()
            env["tap"] = netns.tap
        result["commands"] = commands(env, script)
        try:
            run_rounds(result, env, rounds, budget_s, (warm_script, warm_sizes), (script, sizes),
                       work, progress, out, start)
        finally:
            if netns:
                netns.close()
    result["complete"] = True
    save(out, result, start)
    progress.say("done")


def commands(env, script):
    args = boot_args("", "BASE64-SCRIPT")
    cfg = ember_config(env["kernel"], env["initrd"], args, env["image"] and "IMAGE", "ENGINE",
                       env["tap"])
    cmds = {"ember": " ".join(ember_argv(env["ember"], "VM.JSON")) + "   VM.JSON: " + json.dumps(cfg),
            "qemu": " ".join(a if " " not in a else f'"{a}"' for a in
                             qemu_argv(env["qemu"], env["kernel"], env["initrd"], args,
                                       env["image"] and "IMAGE", env["tap"])),
            "guest script": script}
    if env["kvmtool"]:
        cmds["kvmtool"] = " ".join(a if " " not in a else f'"{a}"' for a in
                                   kvmtool_argv(env["kvmtool"], env["kvmtool_kernel"], env["initrd"], args,
                                                env["image"] and "IMAGE", env["tap"]))
    return cmds


def run_rounds(result, env, rounds, budget_s, warm, real, work, progress, out, start):
    for r in range(-1, rounds):  # round -1: the warm-up, small sizes, uncounted
        if r >= 0 and time.monotonic() - start > budget_s:
            result["stopped_early"] = f"time budget of {budget_s} s used up after {r} rounds"
            break
        script, sizes = warm if r < 0 else real
        kinds = result["kinds"]
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)] if r >= 0 else list(kinds)
        for kind in order:
            t = time.monotonic()
            progress.say(f"{kind} round {r}: starting")
            one_boot.last = one_boot.mmio = one_boot.queue = one_boot.ram = None
            try:
                samples, errors = one_boot(kind, env, script, sizes, work)
            except Exception as e:  # noqa: BLE001 -- any failure is reported, not fatal
                vmm = one_boot.last
                result["failures"].append({"kind": kind, "round": r, "error": str(e),
                                           "tail": vmm.tail() if vmm else []})
                progress.say(f"{kind} round {r}: FAILED: {e}", echo=True)
                save(out, result, start)
                continue
            if errors:
                vmm = one_boot.last
                result["failures"].append({"kind": kind, "round": r, "error": "; ".join(errors),
                                           "tail": vmm.tail() if vmm else []})
            if one_boot.mmio:
                result.setdefault("mmio_devices", {})[kind] = one_boot.mmio
            if one_boot.queue:
                result.setdefault("queue_limits", {})[kind] = one_boot.queue
            if r >= 0:
                result["runs"][kind].append({"round": r, **samples, "guest_ram": one_boot.ram})
            rates = " ".join(f"{n} {s['mib_s']:.1f}" for n, s in samples.items() if s.get("mib_s"))
            progress.say(f"{kind} round {r}: MiB/s {rates}" + (f"; {errors}" if errors else "")
                         + f" ({time.monotonic() - t:.1f} s)", echo=True)
            save(out, result, start)


def save(out, result, start):
    """Written after every boot: a test host that hangs leaves what was
    measured up to then."""
    stats = {}
    for kind, runs in result["runs"].items():
        names = sorted({n for r in runs for n, v in r.items() if isinstance(v, dict) and "mib_s" in v})
        stats[kind] = {n: {"mib_s": summary([r[n]["mib_s"] for r in runs if n in r]),
                           "guest_s": summary([r[n]["guest_s"] for r in runs if n in r])}
                       for n in names}
    result["stats"] = stats
    result["host"]["loadavg_end"] = os.getloadavg()
    result["elapsed_s"] = time.monotonic() - start
    write_json(out, result)


if __name__ == "__main__":
    main()
