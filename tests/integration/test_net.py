"""virtio-net on TAP: ping both ways, a 100 MiB TCP transfer each way with
matching sha256, two interfaces at once, a rate limit that throttles without
corrupting data.

Everything happens in the test session's own network namespace (conftest's
TestNetns): Ember runs there, its TAPs are there, the host side's addresses
are there. The guest gets its address from the kernel command line (ip=).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done, vm_config

pytestmark = pytest.mark.boot

MIB = 1024 * 1024
HOST_IP, GUEST_IP = "10.200.0.1", "10.200.0.2"
HOST_IP1, GUEST_IP1 = "10.201.0.1", "10.201.0.2"

SENDER = """
import socket, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + float(sys.argv[4])
while True:
    try:
        s = socket.create_connection((host, port), timeout=5)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
s.settimeout(max(1.0, deadline - time.monotonic()))  # a bound on the whole send
with open(path, "rb") as f:
    s.sendall(f.read())
s.close()
"""

RECEIVER = """
import hashlib, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
srv.settimeout(float(sys.argv[3]))
c, _ = srv.accept()
c.settimeout(float(sys.argv[3]))
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
print(h.hexdigest(), n)
"""


def script_args(script: str, *, end="reboot", extra="") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", end=end, extra=f"{extra} ember.script={code}".strip())


def ip_arg(guest_ip, host_ip, dev="eth0") -> str:
    return f"ip={guest_ip}::{host_ip}:255.255.255.0::{dev}:off"


@pytest.fixture
def host_addrs(test_netns):
    """Host-side addresses on tap0 and tap1, removed afterwards."""
    test_netns.ip("addr", "add", f"{HOST_IP}/24", "dev", "tap0")
    test_netns.ip("addr", "add", f"{HOST_IP1}/24", "dev", "tap1")
    yield test_netns
    test_netns.ip("addr", "flush", "dev", "tap0")
    test_netns.ip("addr", "flush", "dev", "tap1")


def iface(iface_id, tap, **more) -> dict:
    d = {"iface_id": iface_id, "host_dev_name": tap}
    d.update(more)
    return d


def finish(proc):
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")


def test_ping_both_ways(ember, kernel_vmlinux, initramfs, host_addrs):
    script = (f"ping -c 3 -W 5 {HOST_IP} >/dev/null && echo EMBER-PING-OUT=ok; "
              "echo EMBER-NET-UP; read line; echo EMBER-DONE")
    config = vm_config(kernel_vmlinux, initramfs,
                       boot_args=script_args(script, extra=ip_arg(GUEST_IP, HOST_IP)))
    config["network-interfaces"] = [iface("eth0", "tap0", guest_mac="06:00:0a:c8:00:02")]
    proc = ember.start(config=config)
    proc.expect("EMBER-NET-UP", BOOT_TIMEOUT)
    assert proc.value("EMBER-PING-OUT") == "ok", proc.report("the guest cannot ping the host")
    # busybox's ping: the host may have no iputils-ping (busybox-static is a
    # dependency anyway).
    run = host_addrs.run("busybox", "ping", "-c", "3", "-W", "5", GUEST_IP, capture_output=True,
                         text=True, timeout=STEP_TIMEOUT)
    assert run.returncode == 0, proc.report(f"the host cannot ping the guest:\n{run.stdout}")
    neigh = host_addrs.ip("neigh", "show", GUEST_IP)
    assert "06:00:0a:c8:00:02" in neigh.lower(), f"guest_mac not used: {neigh!r}"
    proc.send("go\n")
    proc.expect("EMBER-DONE", STEP_TIMEOUT)
    finish(proc)


def test_100_mib_tcp_both_ways(ember, kernel_vmlinux, initramfs, host_addrs, workdir):
    """100 MiB host -> guest; 16 MiB back (the guest's own random data and
    its hashing are slow under the nested test host)."""
    size, back = 100 * MIB, 16 * MIB
    blob = workdir / "blob"
    with open(blob, "wb") as f:
        f.write(os.urandom(size))
    want = hashlib.sha256(blob.read_bytes()).hexdigest()
    # Host -> guest: the guest listens and hashes; guest -> host: the guest
    # sends 100 MiB of its own random data and hashes what it sent.
    script = ("echo EMBER-NET-UP; "
              "echo EMBER-IN=$(nc -l -p 5000 | sha256sum | cut -d' ' -f1); "
              f"dd if=/dev/urandom of=/tmp/out bs=1M count={back // MIB} 2>/dev/null; "
              "echo EMBER-OUTSHA=$(sha256sum < /tmp/out | cut -d' ' -f1); "
              f"nc {HOST_IP} 5001 < /tmp/out; echo EMBER-SENT=$?")
    config = vm_config(kernel_vmlinux, initramfs, mem_mib=512,
                       boot_args=script_args(script, extra=ip_arg(GUEST_IP, HOST_IP)))
    config["network-interfaces"] = [iface("eth0", "tap0")]
    proc = ember.start(config=config)
    proc.expect("EMBER-NET-UP", BOOT_TIMEOUT)
    # Each direction takes seconds in the test host; the bound stays under
    # pytest-timeout's 300 s, so that a stuck transfer fails with the guest's
    # console in the report rather than a bare timeout.
    timeout = 3 * STEP_TIMEOUT
    receiver = subprocess.Popen(host_addrs.argv("/usr/bin/python3", "-c", RECEIVER, HOST_IP,
                                                "5001", str(timeout)),
                                stdout=subprocess.PIPE, text=True)
    try:
        send = host_addrs.run("/usr/bin/python3", "-c", SENDER, GUEST_IP, "5000", str(blob),
                              str(timeout), capture_output=True, text=True, timeout=timeout)
        assert send.returncode == 0, proc.report(f"sending to the guest failed: {send.stderr}")
        got_in = proc.expect(r"EMBER-IN=(\w+)", timeout).group(1)
        assert got_in == want, proc.report(f"host->guest: guest got {got_in}, sent {want}")
        proc.expect(r"EMBER-SENT=0", timeout)
        out, _ = receiver.communicate(timeout=STEP_TIMEOUT)
    finally:
        receiver.kill()
    digest, n = out.split()
    assert int(n) == back and digest == proc.value("EMBER-OUTSHA"), \
        proc.report(f"guest->host: host got {n} bytes {digest}, guest sent "
                    f"{proc.value('EMBER-OUTSHA')}")
    finish(proc)


def test_two_interfaces(ember, kernel_vmlinux, initramfs, host_addrs):
    script = (f"ip addr add {GUEST_IP1}/24 dev eth1 && ip link set eth1 up && "
              f"ping -c 2 -W 5 {HOST_IP} >/dev/null && ping -c 2 -W 5 {HOST_IP1} >/dev/null "
              "&& echo EMBER-BOTH=ok")
    config = vm_config(kernel_vmlinux, initramfs,
                       boot_args=script_args(script, extra=ip_arg(GUEST_IP, HOST_IP)))
    config["network-interfaces"] = [iface("eth0", "tap0"), iface("eth1", "tap1")]
    proc = ember.start(config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    assert proc.value("EMBER-BOTH") == "ok", proc.report(f"two interfaces: {m.group(0)}")
    finish(proc)


def test_tx_rate_limit_throttles_without_corruption(ember, kernel_vmlinux, initramfs,
                                                   host_addrs, workdir):
    metrics = workdir / "metrics.json"
    size = 8 * MIB
    script = (f"dd if=/dev/urandom of=/tmp/out bs=1M count={size // MIB} 2>/dev/null; "
              "echo EMBER-OUTSHA=$(sha256sum < /tmp/out | cut -d' ' -f1); echo EMBER-NET-UP; "
              f"nc {HOST_IP} 5002 < /tmp/out; echo EMBER-SENT=$?")
    config = vm_config(kernel_vmlinux, initramfs, mem_mib=256,
                       boot_args=script_args(script, extra=ip_arg(GUEST_IP, HOST_IP)))
    # 1 MiB every 250 ms: 4 MiB/s.
    config["network-interfaces"] = [iface("eth0", "tap0", tx_rate_limiter={
        "bandwidth": {"size": MIB, "refill_time": 250}})]
    config["metrics"] = {"metrics_path": str(metrics)}
    timeout = 3 * STEP_TIMEOUT  # with BOOT_TIMEOUT, under pytest-timeout's 300 s
    receiver = subprocess.Popen(host_addrs.argv("/usr/bin/python3", "-c", RECEIVER, HOST_IP,
                                                "5002", str(timeout)),
                                stdout=subprocess.PIPE, text=True)
    try:
        proc = ember.start(config=config)
        proc.expect(r"EMBER-SENT=0", BOOT_TIMEOUT + timeout)
        out, _ = receiver.communicate(timeout=timeout)
    finally:
        receiver.kill()
    digest, n = out.split()
    assert int(n) == size and digest == proc.value("EMBER-OUTSHA"), proc.report("data differs")
    finish(proc)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    throttled = sum(line["net_eth0"]["tx_rate_limiter_throttled"] for line in lines)
    assert throttled > 0, f"no tx throttling counted: {[l['net_eth0'] for l in lines]}"


def test_eleven_interfaces_with_mmds_and_four_drives(ember, kernel_vmlinux, initramfs,
                                                    test_netns, workdir):
    """15 virtio devices, MMDS on each interface: once more than the VMM's
    event loop held (6 fds per interface with MMDS). The guest sees them all,
    and MMDS answers on the last interface."""
    mmds = "169.254.169.254"
    script = ("echo EMBER-ETH=$(ls /sys/class/net | grep -c '^eth'); "
              "echo EMBER-VD=$(ls /sys/block | grep -c '^vd'); "
              "ip addr add 10.99.0.2/24 dev eth10 && ip link set eth10 up && "
              f"ip route add {mmds} dev eth10; "
              f"echo EMBER-MMDS=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {mmds} 80 "
              "| head -1 | cut -d' ' -f2)")
    config = vm_config(kernel_vmlinux, initramfs, mem_mib=256, boot_args=script_args(script))
    ids = [f"eth{i}" for i in range(11)]
    config["network-interfaces"] = [iface(n, f"tap{i}") for i, n in enumerate(ids)]
    config["mmds-config"] = {"network_interfaces": ids}
    config["drives"] = []
    for i in range(4):
        disk = workdir / f"d{i}.img"
        disk.write_bytes(b"\0" * MIB)
        config["drives"].append({"drive_id": f"d{i}", "path_on_host": str(disk),
                                 "is_root_device": False, "is_read_only": True})
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    assert proc.value("EMBER-ETH") == "11", proc.report("the guest's interfaces")
    assert proc.value("EMBER-VD") == "4", proc.report("the guest's drives")
    # Any HTTP status line proves the stack answered (the store is empty).
    assert re.fullmatch(r"[1-5]\d\d", proc.value("EMBER-MMDS")), proc.report("MMDS on eth10")
    finish(proc)
