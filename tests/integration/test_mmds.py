"""MMDS from inside the guest: V1 and V2 flows with busybox wget (headers
included) and nc, token expiry, a PATCH /mmds seen on the next GET, the
address set by /mmds/config, and no MMDS frame on the TAP.

The guest's requests go to Ember's own small TCP/IP stack (src/mmds); the
TAP side is the test session's namespace (conftest's TestNetns).
"""

from __future__ import annotations

import base64
import socket
import struct
import threading

import pytest

from api_client import check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args

pytestmark = pytest.mark.boot

HOST_IP, GUEST_IP = "10.210.0.1", "10.210.0.2"
DATA = {"latest": {"meta-data": {"ami-id": "ami-87654321", "hostname": "ember-vm",
                                  "tags": {"team": "fire"}}}}


def token_cmd(addr: str, ttl: int) -> str:
    """Shell: PUT /latest/api/token with busybox nc (wget cannot PUT); nc
    half-closes after the request and exits when MMDS closes. The body (the
    token) is the last line."""
    return (f"printf 'PUT /latest/api/token HTTP/1.1\\r\\nHost: {addr}\\r\\n"
            f"X-metadata-token-ttl-seconds: {ttl}\\r\\n\\r\\n' | nc {addr} 80 | tail -n 1")


def boot(api_vm, kernel, initramfs, script: str, *, mmds_config: dict, data=DATA):
    c = api_vm.client()
    code = base64.b64encode(script.encode()).decode()
    args = guest_boot_args("script", end="reboot",
                           extra=f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off "
                                 f"ember.script={code}")
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel), "initrd_path": str(initramfs),
                                    "boot_args": args}), 204)
    check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
             204, None, "PUT /network-interfaces/eth0")
    check_ok(c.put("/mmds/config", mmds_config), 204, None, "PUT /mmds/config")
    check_ok(c.put("/mmds", data), 204, None, "PUT /mmds")
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    return c


def finish(api_vm):
    rc = api_vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, api_vm.proc.report(f"ember {describe_returncode(rc)}")


class TapSniffer:
    """Captures the frames the guest puts on tap0 (AF_PACKET, inside the
    test namespace) and remembers those for the MMDS address."""

    def __init__(self, netns, addr: str):
        self.addr = socket.inet_aton(addr)
        self.hits: list[bytes] = []
        self.frames = 0
        self._stop = threading.Event()
        # Open the socket inside the namespace: setns on this thread.
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/self/ns/net") as home, open(f"/run/netns/{netns.name}") as ns:
            assert libc.setns(ns.fileno(), 0x40000000) == 0  # CLONE_NEWNET
            try:
                self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
                self.sock.bind(("tap0", 0))
            finally:
                assert libc.setns(home.fileno(), 0x40000000) == 0
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(65536)
            except OSError:
                continue
            self.frames += 1
            ethertype = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0
            if ethertype == 0x0806 and frame[38:42] == self.addr:    # ARP target
                self.hits.append(frame)
            if ethertype == 0x0800 and frame[30:34] == self.addr:    # IPv4 destination
                self.hits.append(frame)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_v1_get_imds_and_json_and_nothing_on_the_tap(api_vm, kernel_vmlinux, initramfs,
                                                       test_netns):
    addr = "169.254.169.254"
    url = f"http://{addr}/latest/meta-data"
    script = (f"ip route add {addr} dev eth0; "
              f"echo EMBER-AMI=$(wget -q -O - {url}/ami-id); "
              f"echo EMBER-LIST=$(wget -q -O - {url}/ | tr '\\n' ','); "
              f"echo EMBER-JSON=$(wget -q -O - --header 'Accept: application/json' {url}/tags); "
              f"wget -q -O - {url}/nope; echo EMBER-MISSING=$?")
    sniffer = TapSniffer(test_netns, addr)
    try:
        boot(api_vm, kernel_vmlinux, initramfs, script,
             mmds_config={"network_interfaces": ["eth0"]})
        proc = api_vm.proc
        proc.expect(r"EMBER-MISSING=", BOOT_TIMEOUT + STEP_TIMEOUT)
        finish(api_vm)
    finally:
        sniffer.close()
    assert proc.value("EMBER-AMI") == "ami-87654321", proc.report("V1 GET")
    listing = next(l for l in proc.console_lines() if l.startswith("EMBER-LIST="))
    assert listing.rstrip(",") == "EMBER-LIST=ami-id,hostname,tags/", \
        proc.report(f"IMDS listing: {listing}")
    json_line = next(l for l in proc.console_lines() if l.startswith("EMBER-JSON="))
    assert json_line == 'EMBER-JSON={"team":"fire"}', proc.report(f"JSON answer: {json_line}")
    assert proc.value("EMBER-MISSING") != "0", proc.report("a missing path did not fail (404)")
    assert not sniffer.hits, f"{len(sniffer.hits)} MMDS frames reached the TAP"


def test_v2_token_flow_and_expiry(api_vm, kernel_vmlinux, initramfs):
    addr = "169.254.169.254"
    url = f"http://{addr}/latest/meta-data/hostname"
    script = (f"ip route add {addr} dev eth0; "
              f"T=$({token_cmd(addr, 60)}); echo EMBER-TOKLEN=${{#T}}; "
              f"echo EMBER-WITH=$(wget -q -O - --header \"X-metadata-token: $T\" {url}); "
              f"wget -q -O - {url}; echo EMBER-WITHOUT=$?; "
              f"wget -q -O - --header 'X-metadata-token: forged' {url}; echo EMBER-FORGED=$?; "
              f"S=$({token_cmd(addr, 1)}); sleep 2; "
              f"wget -q -O - --header \"X-metadata-token: $S\" {url}; echo EMBER-EXPIRED=$?")
    boot(api_vm, kernel_vmlinux, initramfs, script,
         mmds_config={"network_interfaces": ["eth0"], "version": "V2"})
    proc = api_vm.proc
    proc.expect(r"EMBER-EXPIRED=", BOOT_TIMEOUT + STEP_TIMEOUT)
    finish(api_vm)
    assert int(proc.value("EMBER-TOKLEN")) > 20, proc.report("no token from PUT /latest/api/token")
    assert proc.value("EMBER-WITH") == "ember-vm", proc.report("GET with the token")
    for name in ("EMBER-WITHOUT", "EMBER-FORGED", "EMBER-EXPIRED"):
        assert proc.value(name) != "0", proc.report(f"{name}: V2 served a GET it must refuse (401)")


def test_patch_is_seen_on_the_next_get_at_a_custom_address(api_vm, kernel_vmlinux, initramfs):
    addr = "169.254.170.2"
    url = f"http://{addr}/latest/meta-data/hostname"
    script = (f"ip route add {addr} dev eth0; "
              f"echo EMBER-FIRST=$(wget -q -O - {url}); read line; "
              f"echo EMBER-SECOND=$(wget -q -O - {url})")
    c = boot(api_vm, kernel_vmlinux, initramfs, script,
             mmds_config={"network_interfaces": ["eth0"], "ipv4_address": addr})
    proc = api_vm.proc
    m = proc.expect(r"EMBER-FIRST=(.*)", BOOT_TIMEOUT + STEP_TIMEOUT)
    assert m.group(1) == "ember-vm", proc.report(f"first GET at {addr}")
    check_ok(c.patch("/mmds", {"latest": {"meta-data": {"hostname": "renamed"}}}), 204, None,
             "PATCH /mmds")
    proc.send("go\n")
    m = proc.expect(r"EMBER-SECOND=(.*)", STEP_TIMEOUT)
    assert m.group(1) == "renamed", proc.report("the PATCH was not seen by the guest")
    finish(api_vm)
