"""vsock part of Ember's benchmark: host<->guest stream throughput and
connection-setup latency, Ember (virtio-vsock, Unix-socket backend) against
QEMU's microvm with vhost-vsock-device (the in-kernel vhost_vsock backend).

  guest_vsock.py OUT.json

Each round boots both VMMs (rotating order) with the same kernel and
initramfs, 1 vCPU, 256 MiB, guest CID 3. The guest (vsock-tool, from
tools/guest/evil/vsock-tool.c) starts its echo server on port 52 and sends
EMBER_BENCH_VSOCK_MIB to the host's port 5000 (`send ... raw`: one block
sent over and over, no per-byte work in the guest, which under TCG would
cost as much as the transfer); then the host:

- guest->host: timed by the host, from accepting the connection to its EOF
  (Ember: a Unix socket at <uds_path>_5000; QEMU: AF_VSOCK port 5000);
- echo: sends EMBER_BENCH_VSOCK_MIB to the guest's echo server while
  reading the echo back; MiB/s of payload one way;
- connection setup: EMBER_BENCH_VSOCK_CONNS connections one after another,
  each timed from socket() until it is usable (Ember: connect to uds_path,
  "CONNECT 52\\n", until "OK <port>\\n" is read; QEMU: AF_VSOCK connect() to
  CID 3 port 52, which returns once the guest answered), then closed.

Ember's side also records its metrics over the whole boot (the three
steps together): the vsock group's packets and queue events (the guest's
kicks), the interrupts it raised and the vCPUs' MMIO exits, as counts per
MiB moved (guest->host plus both ways of the echo), to show where the time
goes. One uncounted warm-up round with small sizes first. Needs /dev/vhost-vsock
(the test host loads vhost_vsock) for QEMU's side; without it only Ember is
measured and the report says why. Nothing is asserted.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time

from benchlib import env_int, summary, write_json
from guest import Progress, Vmm, facts

VCPUS, MEM_MIB, CID = 1, 256, 3
ECHO_PORT, SINK_PORT = 52, 5000
MIB = 1 << 20
BOOT_TIMEOUT_S = 240
LISTENING = re.compile(r"EMBER-VSOCK-LISTENING=52")
SENT = re.compile(r"EMBER-SEND-MS=(\d+)")
KINDS = ("ember", "qemu")


def boot_args(mib: int) -> str:
    script = (f"vsock-tool listen {ECHO_PORT} & "
              f"vsock-tool send 2 {SINK_PORT} {mib * MIB} raw")
    code = base64.b64encode(script.encode()).decode()
    return ("console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 "
            f"ember.hook=script ember.script={code} ember.end=wait")


def ember_argv(env, args, work):
    cfg = {"boot-source": {"kernel_image_path": env["kernel"], "initrd_path": env["initrd"],
                           "boot_args": args},
           "machine-config": {"vcpu_count": VCPUS, "mem_size_mib": MEM_MIB},
           "vsock": {"guest_cid": CID, "uds_path": f"{work}/v.sock"},
           "metrics": {"metrics_path": f"{work}/metrics.json"}}
    path = f"{work}/vm.json"
    with open(path, "w") as f:
        json.dump(cfg, f)
    return [env["ember"], "--no-api", "--config-file", path, "--level", "Warning"]


def qemu_argv(env, args):
    return [env["qemu"], "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu",
            "host", "-smp", str(VCPUS), "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", env["kernel"], "-initrd", env["initrd"], "-append", args,
            "-device", f"vhost-vsock-device,guest-cid={CID}"]


class Sink:
    """The host's port 5000: takes one connection, counts its bytes and
    times it from accept to EOF."""

    def __init__(self, sock):
        self.sock, self.bytes, self.seconds, self.error = sock, 0, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.sock.accept()
            t0 = time.monotonic()
            with conn:
                while chunk := conn.recv(1 << 18):
                    self.bytes += len(chunk)
            self.seconds = time.monotonic() - t0
        except OSError as e:
            self.error = str(e)


# Ember's counters kept per boot: (group, field).
COUNTERS = (("vsock", "tx_queue_event_count"), ("vsock", "rx_queue_event_count"),
            ("vsock", "tx_packets_count"), ("vsock", "rx_packets_count"),
            ("vsock", "tx_bytes_count"), ("vsock", "rx_bytes_count"),
            ("interrupts", "triggers"), ("vcpu", "exit_mmio_read"), ("vcpu", "exit_mmio_write"))


def ember_counters(work):
    """Sums of COUNTERS over the metrics lines Ember wrote (increments)."""
    sums = {f"{g}.{k}": 0 for g, k in COUNTERS}
    try:
        with open(f"{work}/metrics.json") as f:
            for line in f:
                m = json.loads(line)
                for g, k in COUNTERS:
                    sums[f"{g}.{k}"] += m.get(g, {}).get(k, 0)
    except (OSError, ValueError) as e:
        return {"error": str(e)}
    return sums


def connect(kind, work, timeout):
    """A usable connection to the guest's echo port (see the module doc)."""
    if kind == "qemu":
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((CID, ECHO_PORT))
        return s
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(f"{work}/v.sock")
    s.sendall(b"CONNECT 52\n")
    line = b""
    while not line.endswith(b"\n"):
        c = s.recv(64)
        if not c:
            raise OSError(f"closed after {line!r}")
        line += c
    if not line.startswith(b"OK "):
        raise OSError(f"answer {line!r}")
    return s


def echo(s, nbytes):
    data = os.urandom(MIB)
    got = [0]

    def reader():
        while chunk := s.recv(1 << 18):
            got[0] += len(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t0 = time.monotonic()
    t.start()
    for _ in range(nbytes // MIB):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join()
    if got[0] != nbytes:
        raise OSError(f"echo: {got[0]} of {nbytes} bytes came back")
    return time.monotonic() - t0


def one_boot(kind, env, mib, conns, work):
    for name in os.listdir(work):
        if name.startswith("v.sock") or name == "metrics.json":
            os.unlink(os.path.join(work, name))
    if kind == "qemu":
        lsock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        lsock.bind((socket.VMADDR_CID_ANY, SINK_PORT))
    else:
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(f"{work}/v.sock_{SINK_PORT}")
    lsock.listen(4)
    sink = Sink(lsock)
    args = boot_args(mib)
    vmm = Vmm(qemu_argv(env, args) if kind == "qemu" else ember_argv(env, args, work))
    one_boot.last = vmm
    try:
        vmm.wait_for("out", LISTENING, BOOT_TIMEOUT_S)
        _, m = vmm.wait_for("out", SENT, env["step_timeout_s"])
        sink.thread.join(env["step_timeout_s"])
        if sink.seconds is None:
            raise RuntimeError(f"guest->host: {sink.error or 'no EOF'}")
        if sink.bytes != mib * MIB:
            raise RuntimeError(f"guest->host: {sink.bytes} of {mib * MIB} bytes")
        sample = {"g2h_mib_s": mib / sink.seconds, "g2h_guest_ms": int(m.group(1))}
        s = connect(kind, work, env["step_timeout_s"])
        with s:
            sample["echo_mib_s"] = mib / echo(s, mib * MIB)
        setup = []
        for _ in range(conns):
            t0 = time.monotonic()
            s = connect(kind, work, env["step_timeout_s"])
            setup.append((time.monotonic() - t0) * 1e3)
            s.close()
        sample["setup_ms"] = summary(setup)
    finally:
        lsock.close()
        vmm.stop()
    if kind == "ember":
        sample["counters"] = ember_counters(work)
    return sample


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    rounds = env_int("EMBER_BENCH_VSOCK_RUNS", 1 if quick else 5)
    mib = env_int("EMBER_BENCH_VSOCK_MIB", 8 if quick else 32)
    conns = env_int("EMBER_BENCH_VSOCK_CONNS", 30 if quick else 100)
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    env = {"ember": os.environ["EMBER_BIN"], "kernel": os.environ["EMBER_KERNEL_VMLINUX"],
           "initrd": os.environ["EMBER_INITRAMFS"], "qemu": qemu,
           "step_timeout_s": env_int("EMBER_BENCH_VSOCK_STEP_TIMEOUT_S", 300)}
    kinds = list(KINDS)
    qemu_skipped = None
    if not os.path.exists("/dev/vhost-vsock"):
        qemu_skipped = "no /dev/vhost-vsock (modprobe vhost_vsock): QEMU's side not measured"
        kinds.remove("qemu")
    result = {"host": facts(qemu), "rounds_wanted": rounds, "quick": quick, "mib": mib,
              "conns": conns, "vcpus": VCPUS, "mem_mib": MEM_MIB, "kernel": env["kernel"],
              "initrd": env["initrd"], "runs": {k: [] for k in KINDS}, "failures": [],
              "qemu_skipped": qemu_skipped, "complete": False,
              "commands": {"ember": " ".join(ember_argv(env, "ARGS", "/tmp")[:-2])
                           + " (vsock: guest_cid 3, uds_path WORK/v.sock)",
                           "qemu": " ".join(qemu_argv(env, "ARGS"))}}
    start = time.monotonic()
    progress = Progress(out + ".log", start)
    with tempfile.TemporaryDirectory(prefix="vsb", dir="/tmp") as work:
        for r in range(-1, rounds):  # -1: warm-up, uncounted
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)] if r >= 0 else kinds
            for kind in order:
                t = time.monotonic()
                progress.say(f"{kind} round {r}: starting")
                one_boot.last = None
                try:
                    sample = one_boot(kind, env, mib if r >= 0 else 2, conns if r >= 0 else 5,
                                      work)
                except Exception as e:  # noqa: BLE001 -- reported, not fatal
                    vmm = one_boot.last
                    result["failures"].append({"kind": kind, "round": r, "error": str(e),
                                               "tail": vmm.tail() if vmm else []})
                    progress.say(f"{kind} round {r}: FAILED: {e}", echo=True)
                    save(out, result, start)
                    continue
                if r >= 0:
                    result["runs"][kind].append({"round": r, **sample})
                progress.say(f"{kind} round {r}: g2h {sample['g2h_mib_s']:.1f} MiB/s, echo "
                             f"{sample['echo_mib_s']:.1f} MiB/s, setup p50 "
                             f"{sample['setup_ms']['median']:.2f} ms ({time.monotonic() - t:.1f} s)",
                             echo=True)
                save(out, result, start)
    result["complete"] = True
    save(out, result, start)


def save(out, result, start):
    stats = {}
    for kind, runs in result["runs"].items():
        if runs:
            stats[kind] = {"g2h_mib_s": summary([r["g2h_mib_s"] for r in runs]),
                           "echo_mib_s": summary([r["echo_mib_s"] for r in runs]),
                           "setup_p50_ms": summary([r["setup_ms"]["median"] for r in runs]),
                           "setup_p90_ms": summary([r["setup_ms"]["p90"] for r in runs])}
    result["stats"] = stats
    result["elapsed_s"] = time.monotonic() - start
    write_json(out, result)


if __name__ == "__main__":
    main()
