"""Snapshots (issue 14): PUT /snapshot/create on a paused VM, PUT
/snapshot/load into fresh Embers (File memory backend), clones restored in
parallel going on from where the VM stopped, block data intact, and every
bad state file, memory file or order refused with a 400 that leaves the
process able to load a good snapshot afterwards.

The guest counts on its console, one line a second, each line with a hash
of the first 16 KiB of its disk read after dropping its page cache: the
clones must go on counting from the snapshot's count (not boot again) and
read what was written before the snapshot.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args
import test_hugepages as hp
from test_balloon import stats as balloon_stats, wait_until
from test_hugepages import hugepage_pool  # noqa: F401 (a fixture)
from test_vsock import HostEcho, echo_through, host_connect, sockdir  # noqa: F401 (a fixture)

MIB = 1024 * 1024
COUNT = re.compile(r"EMBER-COUNT=(\d+):([0-9a-f]{16}):([0-9a-f]{8}):(\d+)")
# The guest writes this to its disk before counting (and before the snapshot).
DATA = "EMBER-SNAPSHOT-DATA-0123456789"


def script_args(script: str, extra: str = "") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", end="wait", extra=f"{extra} ember.script={code}".strip())


# Each line: the count, the disk's hash, the first 4 bytes of the VM
# Generation ID (read from /dev/mem at ACPI_VMGENID_ADDR, 0xe4000) and how
# often the kernel reseeded its RNG for a VM fork (the vmgenid driver's
# doing; reading /dev/random first makes the RNG ready, without which the
# kernel does not say so).
COUNTER = (f"head -c 1 /dev/random > /dev/null; "
           f"echo {DATA} | dd of=/dev/vda conv=fsync 2>/dev/null; sync; i=0; "
           "while true; do echo 3 > /proc/sys/vm/drop_caches; "
           "h=$(dd if=/dev/vda bs=4096 count=4 2>/dev/null | sha256sum | cut -c1-16); "
           "g=$(dd if=/dev/mem bs=16 skip=58368 count=1 2>/dev/null | od -An -tx1 "
           "| tr -d ' \\n' | cut -c1-8); "
           "v=$(dmesg | grep -c 'virtual machine fork'); "
           "echo EMBER-COUNT=$i:$h:${g:-00000000}:$v; i=$((i+1)); sleep 1; done")


def counts(proc) -> list[tuple[int, str]]:
    """(count, disk hash) of each line."""
    return [(int(m.group(1)), m.group(2)) for line in proc.console_lines()
            for m in [COUNT.search(line)] if m]


def generations(proc) -> list[tuple[str, int]]:
    """(VM Generation ID prefix, RNG reseeds for a VM fork) of each line."""
    return [(m.group(3), int(m.group(4))) for line in proc.console_lines()
            for m in [COUNT.search(line)] if m]


def disk_hash(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(16384)).hexdigest()[:16]


def boot_counter(api_ember, workdir, kernel, initramfs, disk):
    vm = api_ember.start(sock=workdir / "src.sock")
    c = vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel), "initrd_path": str(initramfs),
                                    "boot_args": script_args(COUNTER)}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 128}), 204)
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": False}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    vm.proc.expect(r"EMBER-COUNT=2:", BOOT_TIMEOUT + STEP_TIMEOUT)
    return vm, c


def load_body(snap, mem, **more) -> dict:
    body = {"snapshot_path": str(snap),
            "mem_backend": {"backend_type": "File", "backend_path": str(mem)}}
    body.update(more)
    return body


@contextlib.contextmanager
def uffd_clone(api_ember, workdir, snap, mem, what):
    """The Uffd backend: starts tools/uffd/handler.c (build/uffd-handler)
    serving `mem`, loads `snap` through it into a fresh Ember with
    resume_vm and yields (that Ember, the handler's Popen, whose stdout
    the caller may read on from the handshake). When the body ends
    without an exception the clone must stop cleanly on SIGTERM; the
    handler is killed in any case."""
    handler = Path(os.environ["EMBER_BIN"]).parent / "uffd-handler"
    usock = workdir / "uffd.sock"
    h = subprocess.Popen([str(handler), str(usock), str(mem)], stdout=subprocess.PIPE, text=True)
    try:
        assert h.stdout.readline().strip() == "uffd-handler: listening"
        u = api_ember.start(sock=workdir / "uffd-api.sock")
        check_ok(u.client().put("/snapshot/load", {
            "snapshot_path": str(snap), "resume_vm": True,
            "mem_backend": {"backend_type": "Uffd", "backend_path": str(usock)}}), 204, None,
            f"PUT /snapshot/load ({what})")
        yield u, h
        u.proc.proc.terminate()
        rc = u.proc.wait_exit(EXIT_TIMEOUT)
        assert rc == 0, u.proc.report(f"SIGTERM: {describe_returncode(rc)}")
    finally:
        h.kill()
        h.wait()


def rewrite_state(src, dst, edit):
    """Copies a state file with its JSON payload changed by edit(dict), with
    both checksums made right again: only Ember's own checks can refuse it."""
    raw = src.read_bytes()
    payload = json.loads(raw[32:])
    edit(payload)
    body = json.dumps(payload).encode()
    head = bytearray(raw[:32])
    head[16:24] = struct.pack("<Q", len(body))
    head[24:28] = struct.pack("<I", zlib.crc32(body))
    head[28:32] = struct.pack("<I", zlib.crc32(bytes(head[:28])))
    dst.write_bytes(bytes(head) + body)


@pytest.mark.boot
def test_clones_go_on_counting_with_their_disk(api_ember, workdir, kernel_vmlinux, initramfs):
    disk = workdir / "data.img"
    with open(disk, "wb") as f:
        f.truncate(4 * MIB)
    snap, mem = workdir / "vm.snap", workdir / "vm.mem"
    vm, c = boot_counter(api_ember, workdir, kernel_vmlinux, initramfs, disk)

    check_error(c.put("/snapshot/create", {"snapshot_path": str(snap),
                                           "mem_file_path": str(mem)}),
                "Create snapshot error", "running", context="create on a running VM")
    assert not snap.exists() and not mem.exists()
    check_ok(c.patch("/vm", {"state": "Paused"}), 204, None, "pause")
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(snap), "mem_file_path": str(mem)}),
             204, None, "PUT /snapshot/create")
    assert mem.stat().st_size == 128 * MIB
    seen = counts(vm.proc)
    last = seen[-1][0]
    expected = disk_hash(disk)
    assert all(h == expected for _, h in seen), (expected, seen)
    gens = generations(vm.proc)
    source_gen = gens[0][0]
    assert source_gen != "00000000" and all(g == (source_gen, 0) for g in gens), gens
    vm.proc.kill()

    # Two clones at once, each in a fresh Ember.
    clones = [api_ember.start(sock=workdir / f"clone{i}.sock") for i in range(2)]
    answers = [None, None]

    def load(i):
        answers[i] = clones[i].client().put("/snapshot/load", load_body(snap, mem,
                                                                       resume_vm=True))
    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for clone, answer in zip(clones, answers):
        check_ok(answer, 204, None, "PUT /snapshot/load")
    for clone in clones:
        clone.proc.expect(rf"EMBER-COUNT={last + 3}:", STEP_TIMEOUT)
        got = counts(clone.proc)
        assert got[0][0] in (last + 1, last + 2), clone.proc.report(
            f"the clone's first count {got[0]}, the snapshot's last {last}")
        assert [n for n, _ in got] == list(range(got[0][0], got[0][0] + len(got))), got
        assert all(h == expected for _, h in got), clone.proc.report(f"disk hash {got}")
        assert not any("EMBER-INIT" in line for line in clone.proc.console_lines()), \
            clone.proc.report("the clone booted again")
        # A new generation: a new ID, and the guest's kernel reseeded.
        gen, reseeds = generations(clone.proc)[-1]
        assert gen != source_gen and reseeds == 1, clone.proc.report(
            f"VM Generation ID {gen} (source {source_gen}), reseeds {reseeds}")
        info = check_ok(clone.client().get("/"), 200, "InstanceInfo")
        assert info["state"] == "Running", info
        cfg = check_ok(clone.client().get("/vm/config"), 200, "FullVmConfiguration")
        assert cfg["machine-config"]["vcpu_count"] == 2 and cfg["drives"][0]["drive_id"] == "data"
        # A clone pauses and resumes as any VM.
        check_ok(clone.client().patch("/vm", {"state": "Paused"}), 204)
        check_ok(clone.client().patch("/vm", {"state": "Resumed"}), 204)
    assert generations(clones[0].proc)[-1][0] != generations(clones[1].proc)[-1][0], "clones share an ID"
    for clone in clones:
        clone.proc.proc.terminate()
        rc = clone.proc.wait_exit(EXIT_TIMEOUT)
        assert rc == 0, clone.proc.report(f"SIGTERM: {describe_returncode(rc)}")

    # The Uffd backend: tools/uffd/handler.c serves every page from the
    # memory file; guest memory is otherwise empty anonymous memory.
    with uffd_clone(api_ember, workdir, snap, mem, "Uffd") as (u, _):
        u.proc.expect(rf"EMBER-COUNT={last + 3}:", STEP_TIMEOUT)
        got = counts(u.proc)
        assert got[0][0] in (last + 1, last + 2) and all(h_ == expected for _, h_ in got), \
            u.proc.report(f"Uffd clone: {got}, last {last}")

    # Bad inputs, each into one fresh Ember that must still load the good
    # snapshot afterwards (nothing half-restored) and stay paused.
    bad = workdir / "bad.snap"
    raw = snap.read_bytes()
    vm = api_ember.start(sock=workdir / "bad.sock")
    c = vm.client()

    def refused(body, *words, context):
        check_error(c.put("/snapshot/load", body), "Load snapshot error", *words, context=context)
        assert check_ok(c.get("/"), 200, "InstanceInfo")["state"] == "Not started", context

    bad.write_bytes(raw[:len(raw) // 2])
    refused(load_body(bad, mem), "truncated", context="truncated state file")
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x20
    bad.write_bytes(bytes(flipped))
    refused(load_body(bad, mem), "checksum", context="a flipped bit")
    other = bytearray(raw)
    other[8:12] = struct.pack("<I", 99)
    other[28:32] = struct.pack("<I", zlib.crc32(bytes(other[:28])))
    bad.write_bytes(bytes(other))
    refused(load_body(bad, mem), "version 99", context="another format version")
    rewrite_state(snap, bad, lambda p: p["vcpus"].pop())
    refused(load_body(bad, mem), "vCPU", context="a snapshot of another vCPU count")
    rewrite_state(snap, bad, lambda p: p["devices"][0]["transport"]["queues"][0]
                  .update(desc="00f0ffffff000000", ready=True))
    refused(load_body(bad, mem), "queue", context="a queue outside guest memory")
    short = workdir / "short.mem"
    with open(mem, "rb") as f, open(short, "wb") as g:
        g.write(f.read(64 * MIB))
    refused(load_body(snap, short), "memory file", context="a memory file of the wrong size")
    refused(load_body(workdir / "missing.snap", mem), "missing.snap", context="no state file")
    refused({"snapshot_path": str(snap), "mem_backend": {
        "backend_type": "Uffd", "backend_path": str(workdir / "nobody.sock")}},
        "page-fault handler", context="Uffd without a handler")
    check_error(c.put("/snapshot/load", {"snapshot_path": str(snap)}), "mem_backend",
                context="no memory backend")
    check_ok(c.put("/snapshot/load", load_body(snap, mem)), 204, None, "the good snapshot")
    assert check_ok(c.get("/"), 200, "InstanceInfo")["state"] == "Paused"
    n = len(counts(vm.proc))
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
    vm.proc.expect(rf"EMBER-COUNT={last + 2}:", STEP_TIMEOUT)
    assert n == 0, "a VM loaded without resume_vm ran"
    check_error(c.put("/snapshot/load", load_body(snap, mem)), "not supported after starting",
                context="a second load")


def test_load_after_configuration_is_refused(api_vm, workdir):
    c = api_vm.client()
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204)
    snap = workdir / "x.snap"
    snap.write_bytes(b"")
    check_error(c.put("/snapshot/load", load_body(snap, snap)), "Load snapshot error",
                "not allowed after configuring boot-specific resources",
                context="load after PUT /machine-config")


def test_snapshot_bodies_are_checked(api_vm, workdir):
    c = api_vm.client()
    check_error(c.put("/snapshot/load", {"snapshot_path": "a", "mem_file_path": "b",
                                         "mem_backend": {"backend_type": "File",
                                                         "backend_path": "b"}}),
                "too many fields", context="both memory fields")
    check_error(c.put("/snapshot/load", load_body("a", "b", unknown=1)), "unknown",
                context="an unknown field")
    check_error(c.put("/snapshot/load", {"snapshot_path": "a", "mem_backend": {
        "backend_type": "Disk", "backend_path": "b"}}), "Disk", context="a bad backend type")
    check_error(c.put("/snapshot/load", load_body("a", "b", vsock_override={})), "uds_path",
                context="a vsock_override without uds_path")
    check_error(c.put("/snapshot/create", {"snapshot_path": "a", "mem_file_path": "b"}),
                "not supported before starting", context="create before boot")
    assert check_ok(c.get("/"), 200, "InstanceInfo")["state"] == "Not started"


REBASE = Path(__file__).resolve().parents[2] / "tools" / "snapshot-rebase.py"


HOST_IP, GUEST_IP = "10.200.0.1", "10.200.0.2"


@pytest.fixture
def no_host_addrs(test_netns):
    yield test_netns
    for tap in ("tap0", "tap1"):
        test_netns.ip("addr", "flush", "dev", tap)


@pytest.mark.boot
def test_diff_chain_on_its_base_restores_the_vm(api_ember, workdir, kernel_vmlinux, initramfs,
                                          no_host_addrs):
    """track_dirty_pages: a full snapshot, the VM runs on, a diff snapshot
    holds only what changed (a sparse file), the VM runs on, a second diff;
    the diffs merged in order onto the base (tools/snapshot-rebase.py)
    restore the VM where the second diff left it, with
    its network interface moved to another TAP (network_overrides): the
    host reaches the clone there."""
    netns = no_host_addrs
    disk = workdir / "data.img"
    with open(disk, "wb") as f:
        f.truncate(4 * MIB)
    vm = api_ember.start(sock=workdir / "src.sock")
    c = vm.client()
    ip = f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off"
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args(COUNTER, ip)}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128,
                                       "track_dirty_pages": True}), 204)
    check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
             204)
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": False}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    vm.proc.expect(r"EMBER-COUNT=2:", BOOT_TIMEOUT + STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    base_snap, base_mem = workdir / "base.snap", workdir / "base.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(base_snap),
                                        "mem_file_path": str(base_mem)}), 204, None, "full")
    base_last = counts(vm.proc)[-1][0]
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
    vm.proc.expect(rf"EMBER-COUNT={base_last + 3}:", STEP_TIMEOUT)
    # A chain: diff 1, the guest goes on counting (writing its memory),
    # diff 2 on top of diff 1.
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    diff1_snap, diff1_mem = workdir / "diff1.snap", workdir / "diff1.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": str(diff1_snap),
                                        "mem_file_path": str(diff1_mem)}), 204, None, "diff 1")
    diff1_last = counts(vm.proc)[-1][0]
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
    vm.proc.expect(rf"EMBER-COUNT={diff1_last + 3}:", STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    diff_snap, diff_mem = workdir / "diff2.snap", workdir / "diff2.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": str(diff_snap),
                                        "mem_file_path": str(diff_mem)}), 204, None, "diff 2")
    last = counts(vm.proc)[-1][0]
    vm.proc.kill()
    for d in (diff1_mem, diff_mem):
        st = d.stat()
        assert st.st_size == 128 * MIB
        # Only what changed: the sparse file holds a small part of the memory.
        assert st.st_blocks * 512 < 32 * MIB, f"{d.name} holds {st.st_blocks * 512} bytes"
        assert st.st_blocks > 0
    # Rebased in order onto the base, the chain restores the VM as it was
    # at diff 2 (the count goes on from diff 2's, not diff 1's).
    for d in (diff1_mem, diff_mem):
        subprocess.run([sys.executable, str(REBASE), "--base-file", str(base_mem), "--diff-file",
                        str(d)], check=True, capture_output=True)
    clone = api_ember.start(sock=workdir / "clone.sock")
    check_ok(clone.client().put("/snapshot/load", load_body(
        diff_snap, base_mem, resume_vm=True,
        network_overrides=[{"iface_id": "eth0", "host_dev_name": "tap1"}])), 204)
    clone.proc.expect(rf"EMBER-COUNT={last + 3}:", STEP_TIMEOUT)
    got = counts(clone.proc)
    assert got[0][0] in (last + 1, last + 2), clone.proc.report(f"first {got[0]}, last {last}")
    assert not any("EMBER-INIT" in line for line in clone.proc.console_lines())
    cfg = check_ok(clone.client().get("/vm/config"), 200, "FullVmConfiguration")
    assert cfg["network-interfaces"][0]["host_dev_name"] == "tap1", cfg["network-interfaces"]
    # The clone's eth0 is on tap1 now: the host reaches it there.
    netns.ip("addr", "add", f"{HOST_IP}/24", "dev", "tap1")
    run = netns.run("busybox", "ping", "-c", "3", "-W", "5", GUEST_IP, capture_output=True,
                    text=True, timeout=60)
    assert run.returncode == 0, clone.proc.report(f"no ping through tap1:\n{run.stdout}")
    # Without the tracking, a diff is refused and names why.
    plain = api_ember.start(sock=workdir / "plain.sock")
    check_ok(plain.client().put("/snapshot/load", load_body(base_snap, base_mem)), 204)
    check_error(plain.client().put("/snapshot/create", {
        "snapshot_type": "Diff", "snapshot_path": str(workdir / "x.snap"),
        "mem_file_path": str(workdir / "x.mem")}), "track_dirty_pages", context="diff untracked")
    # An override for an interface the snapshot lacks.
    other = api_ember.start(sock=workdir / "other.sock")
    check_error(other.client().put("/snapshot/load", load_body(
        base_snap, base_mem, network_overrides=[{"iface_id": "eth9", "host_dev_name": "tap2"}])),
        "Unknown Network Device", context="override of an unknown interface")


# ---- vsock and the balloon across a restore ----

# Host-initiated connections reach the guest's echo server on port 52; after
# "go" on the console the guest connects to the host's echo at port 5000.
VSOCK_GUEST = ("vsock-tool listen 52 & read go; "
               "vsock-tool echo 2 5000 65536 | sed s/EMBER-/EMBER-AFTER-/; read end")


@pytest.mark.boot
def test_vsock_connects_anew_after_restore(api_ember, workdir, kernel_vmlinux, initramfs,
                                           sockdir):
    """A connection open at the snapshot ends with the source; the clone
    binds uds_path anew and sends the guest a transport reset; new
    connections work both ways (the guest's listener survives the reset)."""
    uds = str(sockdir / "v.sock")
    vm = api_ember.start(sock=workdir / "src.sock")
    c = vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args(VSOCK_GUEST)}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204)
    check_ok(c.put("/vsock", {"guest_cid": 3, "uds_path": uds}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    vm.proc.expect(r"EMBER-VSOCK-LISTENING=52", BOOT_TIMEOUT + STEP_TIMEOUT)
    old, line = host_connect(uds, 52, STEP_TIMEOUT)
    assert line.startswith(b"OK "), line
    old.sendall(b"ping")
    assert old.recv(4) == b"ping"
    snap, mem = workdir / "vm.snap", workdir / "vm.mem"
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(snap), "mem_file_path": str(mem)}),
             204, None, "PUT /snapshot/create with vsock")
    vm.proc.kill()
    assert old.recv(1) == b"", "the open connection ends with the source"
    old.close()

    # The source's socket file is still there: the clone listens at another
    # path (vsock_override), binding it anew.
    uds = str(sockdir / "w.sock")
    echo = HostEcho(uds + "_5000")
    clone = api_ember.start(sock=workdir / "clone.sock")
    check_error(clone.client().put("/snapshot/load", load_body(
        snap, mem, vsock_override={"uds_path": "x" * 97})), "uds_path",
        context="a vsock_override path too long for sun_path")
    check_ok(clone.client().put("/snapshot/load", load_body(
        snap, mem, resume_vm=True, vsock_override={"uds_path": uds})), 204, None,
        "PUT /snapshot/load with vsock")
    start = time.monotonic()
    s, line = host_connect(uds, 52, STEP_TIMEOUT)
    if not line.startswith(b"OK "):
        # Tell a lost race (a later connection works) from a wait that
        # never ends (the guest never acknowledged the transport reset).
        took = time.monotonic() - start
        s.close()
        time.sleep(3)
        s, again = host_connect(uds, 52, STEP_TIMEOUT)
        raise AssertionError(clone.proc.report(
            f"host->guest after restore: {line!r} after {took:.1f} s; 3 s later: {again!r}"))
    data = os.urandom(65536)
    assert echo_through(s, data) == data, clone.proc.report("echo after restore")
    s.close()
    clone.proc.send("go\n")
    assert clone.proc.expect(r"EMBER-AFTER-ECHO-OK=(\d+)", STEP_TIMEOUT).group(1) == "1", \
        clone.proc.report("guest->host after restore")
    echo.close()
    assert [n for n, _ in echo.crcs] == [65536], echo.crcs
    clone.proc.proc.terminate()
    rc = clone.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, clone.proc.report(f"SIGTERM: {describe_returncode(rc)}")


@pytest.mark.boot
def test_balloon_keeps_its_target_and_inflates_after_restore(api_ember, workdir, kernel_vmlinux,
                                                             initramfs):
    """A balloon of 16 MiB is snapshotted; the clone reports the same
    target and interval, and a PATCH inflates it further: the driver takes
    the pages (actual follows) and the statistics, polled by the re-armed
    timer, show the guest's free memory falling."""
    vm = api_ember.start(sock=workdir / "src.sock")
    c = vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args("echo EMBER-IDLE; read end")}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204)
    check_ok(c.put("/balloon", {"amount_mib": 0, "deflate_on_oom": False,
                                "stats_polling_interval_s": 1}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    vm.proc.expect(r"EMBER-IDLE", BOOT_TIMEOUT + STEP_TIMEOUT)
    check_ok(c.patch("/balloon", {"amount_mib": 16}), 204)
    wait_until("actual 16 MiB and statistics", lambda: balloon_stats(c)["actual_mib"] == 16
             and "free_memory" in balloon_stats(c), 2 * STEP_TIMEOUT, vm.proc)
    snap, mem = workdir / "vm.snap", workdir / "vm.mem"
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(snap), "mem_file_path": str(mem)}),
             204, None, "PUT /snapshot/create with a balloon")
    vm.proc.kill()

    clone = api_ember.start(sock=workdir / "clone.sock")
    cc = clone.client()
    check_error(cc.put("/snapshot/load", load_body(snap, mem, vsock_override={
        "uds_path": str(workdir / "v.sock")})), "Unknown Vsock Device",
        context="vsock_override for a snapshot without vsock")
    check_ok(cc.put("/snapshot/load", load_body(snap, mem, resume_vm=True)), 204, None,
             "PUT /snapshot/load with a balloon")
    got = check_ok(cc.get("/balloon"), 200, "Balloon")
    assert got["amount_mib"] == 16 and got["stats_polling_interval_s"] == 1, got
    before = balloon_stats(cc)
    assert before["target_mib"] == 16 and before["actual_mib"] == 16, before
    check_ok(cc.patch("/balloon", {"amount_mib": 48}), 204, None, "PATCH /balloon after restore")
    wait_until("actual 48 MiB", lambda: balloon_stats(cc)["actual_mib"] == 48, 2 * STEP_TIMEOUT,
             clone.proc)
    wait_until("free memory 24 MiB lower", lambda: balloon_stats(cc).get("free_memory", 1 << 62)
             <= before["free_memory"] - 24 * MIB, 2 * STEP_TIMEOUT, clone.proc)
    clone.proc.proc.terminate()
    rc = clone.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, clone.proc.report(f"SIGTERM: {describe_returncode(rc)}")


# ---- huge pages across a restore ----

HTICK = re.compile(r"EMBER-HTICK=(\d+)")
HTICKER = "i=0; while true; do echo EMBER-HTICK=$i; i=$((i+1)); sleep 1; done"


def hticks(proc) -> list[int]:
    return [int(m.group(1)) for line in proc.console_lines() for m in [HTICK.search(line)] if m]


def configure_2m_source(api_ember, workdir, kernel_vmlinux, initramfs, script, **machine):
    """A source VM of hp.MEM_MIB on 2 MiB pages running `script`,
    configured but not started; returns it and its client."""
    vm = api_ember.start(sock=workdir / "src.sock")
    c = vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args(script)}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": hp.MEM_MIB,
                                       "huge_pages": "2M", **machine}), 204)
    return vm, c


def expect_2m_handshake(handler, mib):
    """The handler's first line: the handshake said 2 MiB pages (it copies
    whole ones: 4 KiB copies into hugetlbfs memory fail, and the guest
    would never run)."""
    line = handler.stdout.readline().strip()
    assert line == f"uffd-handler: region 0: {mib * MIB} bytes in {2 * MIB}-byte pages", line


@pytest.mark.boot
def test_2m_snapshot_restores_through_uffd(api_ember, workdir, kernel_vmlinux, initramfs,
                                           hugepage_pool):
    """huge_pages "2M" (Firecracker's docs/hugepages.md, "Huge Pages and
    Snapshotting"): the snapshot records it, and the load takes it by
    default; the File backend cannot map hugetlbfs memory and is refused;
    the Uffd backend gets guest memory from the pool, the handshake says
    2 MiB pages, and the handler fills whole ones: the restored guest goes
    on counting."""
    mib = hp.MEM_MIB
    hugepage_pool(2 * hp.PAGES + 8)
    vm, c = configure_2m_source(api_ember, workdir, kernel_vmlinux, initramfs, HTICKER)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    vm.proc.expect(r"EMBER-HTICK=2\b", BOOT_TIMEOUT + STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    snap, mem = workdir / "vm.snap", workdir / "vm.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(snap), "mem_file_path": str(mem)}),
             204, None, "PUT /snapshot/create")
    last = hticks(vm.proc)[-1]
    vm.proc.kill()
    vm.proc.wait_exit(EXIT_TIMEOUT)
    assert mem.stat().st_size == mib * MIB
    assert hp.pool_in_use() == 0, hp.meminfo()

    # File: the snapshot's 2M, or 2M asked for, is refused; nothing built.
    f = api_ember.start(sock=workdir / "file.sock")
    for extra in ({}, {"huge_pages": "2M"}):
        check_error(f.client().put("/snapshot/load", load_body(snap, mem, **extra)),
                    "Load snapshot error", "Cannot restore hugetlbfs backed snapshot",
                    "Please use uffd", context=f"2M with the File backend {extra}")
        assert check_ok(f.client().get("/"), 200, "InstanceInfo")["state"] == "Not started"
    check_error(f.client().put("/snapshot/load", load_body(snap, mem, huge_pages="1G")),
                "huge_pages", "1G", context="an unknown huge_pages")
    assert hp.pool_in_use() == 0, hp.meminfo()

    with uffd_clone(api_ember, workdir, snap, mem, "Uffd, 2M") as (u, h):
        expect_2m_handshake(h, mib)
        u.proc.expect(rf"EMBER-HTICK={last + 3}\b", STEP_TIMEOUT)
        got = hticks(u.proc)
        assert got[0] in (last + 1, last + 2) and got == list(range(got[0], got[0] + len(got))), \
            u.proc.report(f"restored ticks {got}, the snapshot's last {last}")
        assert not any("EMBER-INIT" in line for line in u.proc.console_lines())
        cfg = check_ok(u.client().get("/vm/config"), 200, "FullVmConfiguration")
        assert cfg["machine-config"]["huge_pages"] == "2M", cfg["machine-config"]
        # All of guest memory is reserved from the pool again.
        assert hp.pool_in_use() == hp.PAGES, u.proc.report(f"pool: {hp.meminfo()}")
    assert hp.pool_in_use() == 0, hp.meminfo()


# The guest reads the first MiB of its disk and closes it (the last close
# drops the device's page cache); writes and frees DFILL_MIB of memory, so
# that what it allocates later is memory it touched before the base
# snapshot, not fresh pages whose first mapping KVM may log by itself;
# then it keeps the device open on fd 3, and after "go" on its console
# reads it again, into its page cache: memory only Ember's block device
# writes. From then on it hashes it from the cache.
DREAD_MIB = 1
DFILL_MIB = 64
_DREAD = (f"h=$(dd if=/dev/vda bs=65536 count={16 * DREAD_MIB} 2>/dev/null "
          "| sha256sum | cut -c1-16)")
DREADER = (f"{_DREAD}; echo EMBER-DFIRST=$h; "
           f"dd if=/dev/zero of=/dfill bs=1048576 count={DFILL_MIB} 2>/dev/null; rm /dfill; "
           "exec 3< /dev/vda; echo EMBER-DREADY; read go; "
           f"i=0; while true; do {_DREAD}; echo EMBER-DTICK=$i:$h; i=$((i+1)); sleep 1; done")
DTICK = re.compile(r"EMBER-DTICK=(\d+):([0-9a-f]{16})")


def dticks(proc) -> list[tuple[int, str]]:
    return [(int(m.group(1)), m.group(2)) for line in proc.console_lines()
            for m in [DTICK.search(line)] if m]


@pytest.mark.boot
def test_2m_diff_on_its_base_restores_through_uffd(api_ember, workdir, kernel_vmlinux,
                                                   initramfs, hugepage_pool):
    """Diff snapshots of a huge_pages "2M" VM (Firecracker allows them:
    track_dirty_pages on hugetlbfs memory, at 4 KiB granularity; docs/
    hugepages.md, "Known Limitations"). After a full snapshot the disk
    gets new data and the guest reads it into its page cache, a diff
    follows: rebased onto the base and restored through Uffd, the guest
    goes on hashing what it read. Those pages only Ember wrote (virtio-blk
    reads), which KVM's dirty log does not see: the diff must hold them
    all the same, from Ember's bitmap of its own writes."""
    mib = hp.MEM_MIB
    hugepage_pool(2 * hp.PAGES + 8)
    disk = workdir / "data.img"
    first = os.urandom(DREAD_MIB * MIB)
    disk.write_bytes(first + bytes(3 * MIB))
    vm, c = configure_2m_source(api_ember, workdir, kernel_vmlinux, initramfs, DREADER,
                                track_dirty_pages=True)
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": True}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    got = vm.proc.expect(r"EMBER-DFIRST=([0-9a-f]{16})", BOOT_TIMEOUT + STEP_TIMEOUT).group(1)
    assert got == hashlib.sha256(first).hexdigest()[:16], got
    vm.proc.expect(r"EMBER-DREADY", STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    base_snap, base_mem = workdir / "base.snap", workdir / "base.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_path": str(base_snap),
                                        "mem_file_path": str(base_mem)}), 204, None, "full, 2M")
    # New data for the read after "go": a page left out of the diff would
    # restore with what the base holds there (the first read's, or older).
    payload = os.urandom(DREAD_MIB * MIB)
    with open(disk, "r+b") as fh:
        fh.write(payload)
    expected = hashlib.sha256(payload).hexdigest()[:16]
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204)
    vm.proc.send("go\n")
    vm.proc.expect(r"EMBER-DTICK=2:", STEP_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204)
    diff_snap, diff_mem = workdir / "diff.snap", workdir / "diff.mem"
    check_ok(c.put("/snapshot/create", {"snapshot_type": "Diff", "snapshot_path": str(diff_snap),
                                        "mem_file_path": str(diff_mem)}), 204, None, "diff, 2M")
    seen = dticks(vm.proc)
    assert all(h == expected for _, h in seen), vm.proc.report(f"source: {seen}, {expected}")
    last = seen[-1][0]
    vm.proc.kill()
    vm.proc.wait_exit(EXIT_TIMEOUT)
    st = diff_mem.stat()
    assert st.st_size == mib * MIB
    # 4 KiB granularity: what changed, not every 2 MiB page it lies in.
    assert DREAD_MIB * MIB <= st.st_blocks * 512 < 32 * MIB, \
        f"the diff holds {st.st_blocks * 512} bytes"
    subprocess.run([sys.executable, str(REBASE), "--base-file", str(base_mem), "--diff-file",
                    str(diff_mem)], check=True, capture_output=True)
    with uffd_clone(api_ember, workdir, diff_snap, base_mem, "Uffd, 2M, base + diff") as (u, h):
        expect_2m_handshake(h, mib)
        u.proc.expect(rf"EMBER-DTICK={last + 3}:", STEP_TIMEOUT)
        got = dticks(u.proc)
        assert got[0][0] in (last + 1, last + 2), u.proc.report(f"first {got[0]}, last {last}")
        assert [n for n, _ in got] == list(range(got[0][0], got[0][0] + len(got))), got
        assert all(h_ == expected for _, h_ in got), u.proc.report(
            f"the page cache after restore: {got}, the disk's {expected}")
        assert not any("EMBER-INIT" in line for line in u.proc.console_lines())
        cfg = check_ok(u.client().get("/vm/config"), 200, "FullVmConfiguration")
        assert cfg["machine-config"]["huge_pages"] == "2M", cfg["machine-config"]
        assert cfg["machine-config"]["track_dirty_pages"] is False, cfg["machine-config"]
    assert hp.pool_in_use() == 0, hp.meminfo()
