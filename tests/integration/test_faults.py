"""Host faults under a running guest (issue 16): Ember keeps running, the
guest sees an I/O error, and nothing the guest flushed before the fault is
lost.

- a drive whose backing file sits on a full file system (ENOSPC: a 1 MiB
  tmpfs holding a 16 MiB sparse file);
- a drive on a block device that starts failing every request (EIO: a
  device-mapper table switched from `linear` to `error` under the guest,
  then back);
- the TAP device deleted under a running guest;
- the metrics FIFO's reader gone while flushes keep coming;
- SIGKILL of Ember while the guest writes: every record the guest had
  flushed is in the file.

Each guest runs a script (the `script` hook) that prints EMBER-<NAME>=<value>
lines and waits on its console (`read line`) where the host steps in.
Drives use cache_type Writeback, so the guest's fsync is a virtio FLUSH.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done, vm_config

pytestmark = pytest.mark.boot

MIB = 1024 * 1024
BLOCK = 4096
ENGINES = ["Sync", "Async"]


def script_args(script: str, extra: str = "") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", extra=f"{extra} ember.script={code}".strip())


def drive(path, engine: str, drive_id: str = "data") -> dict:
    return {"drive_id": drive_id, "path_on_host": str(path), "is_root_device": False,
            "is_read_only": False, "io_engine": engine, "cache_type": "Writeback"}


def record(tag: str) -> bytes:
    """The 4 KiB block the guest writes for tag (and the host expects)."""
    line = f"EMBER-RECORD {tag}\n".encode()
    return (line * (BLOCK // len(line) + 1))[:BLOCK]


# Guest helpers (the drive is the guest's only one, /dev/vda; the Debian
# kernel's virtio_blk module may still be binding): put record $1 (a tag)
# in block $2 of /dev/vda and flush
# (fsync: Writeback makes it a virtio FLUSH); read block $1 back past the
# guest's page cache and print its md5.
GUEST_LIB = r"""
n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do usleep 100000; n=$((n + 1)); done
[ -b /dev/vda ] || echo "EMBER-NO-DISK: /dev/vda is not a block device"
rec() { yes "EMBER-RECORD $1" | head -c 4096; }
put() { rec "$1" | dd of=/dev/vda bs=4096 count=1 seek="$2" conv=fsync 2>/dev/null; }
get() { blockdev --flushbufs /dev/vda 2>/dev/null
        dd if=/dev/vda bs=4096 count=1 skip="$1" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }
"""


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def finish(proc, what: str):
    m = proc.expect(hook_done("script"), STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's script failed: {m.group(0)}")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)} after {what}")


def value(proc, name: str) -> str:
    return proc.value(name)


# --- ENOSPC ------------------------------------------------------------------------

@pytest.fixture
def small_fs(workdir):
    """A 1 MiB tmpfs (root only: a mount)."""
    mnt = workdir / "small"
    mnt.mkdir()
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {run.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


@pytest.mark.parametrize("engine", ENGINES)
def test_full_filesystem_is_an_io_error_and_flushed_data_stays(ember, kernel_vmlinux, initramfs,
                                                               small_fs, engine):
    disk = small_fs / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(16 * MIB)
    script = GUEST_LIB + r"""
put first 0; echo EMBER-FIRST-RC=$?
# 2 MiB more than the 1 MiB file system holds, flushed.
dd if=/dev/zero of=/dev/vda bs=65536 count=32 seek=64 conv=fsync 2>/dev/null; echo EMBER-FULL-RC=$?
echo EMBER-FIRST-MD5=$(get 0)
put again 1; echo EMBER-AGAIN-RC=$?
"""
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["drives"] = [drive(disk, engine)]
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    assert value(proc, "EMBER-FIRST-RC") == "0", proc.report("the first write failed")
    assert value(proc, "EMBER-FULL-RC") != "0", \
        proc.report("writing past a full file system did not fail in the guest")
    assert value(proc, "EMBER-FIRST-MD5") == md5(record("first")), \
        proc.report("the guest reads back other data than it flushed before the fault")
    finish(proc, "the file system filled up")
    assert disk.read_bytes()[:BLOCK] == record("first"), "the flushed block is not in the file"
    # Sync moves part of the data, then gets ENOSPC, and says so; io_uring
    # completes the write short, without an errno.
    why = "No space left on device" if engine == "Sync" else "file system full"
    assert any(why in l for l in proc.log_lines()), \
        proc.report(f"ember did not say why the write failed ({why!r})")


# --- EIO ---------------------------------------------------------------------------

class FlakyDevice:
    """A device-mapper device over a loop device over a file: `linear` until
    fail(), then `error` (every request EIO) until heal()."""

    def __init__(self, backing: Path, size: int):
        self.sectors = size // 512
        self.name = f"ember-flaky-{os.getpid()}-{backing.parent.name}"
        for module in ("loop", "dm_mod"):
            subprocess.run(["modprobe", module], capture_output=True, timeout=60)
        with open(backing, "wb") as f:
            f.truncate(size)
        self.loop = self._run("losetup", "--find", "--show", str(backing)).strip()
        try:
            self._run("dmsetup", "create", self.name, "--table", self._linear())
        except BaseException:
            self._run("losetup", "-d", self.loop)
            raise
        # The devtmpfs node (dm-N): the test host has no udev to make
        # /dev/mapper/NAME.
        blk = self._run("dmsetup", "info", "-c", "--noheadings", "-o", "blkdevname", self.name)
        self.path = Path("/dev") / blk.strip()

    def _linear(self) -> str:
        return f"0 {self.sectors} linear {self.loop} 0"

    @staticmethod
    def _run(*argv: str) -> str:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            pytest.fail(f"{' '.join(argv)}: {run.stderr.strip()}", pytrace=False)
        return run.stdout

    def _load(self, table: str):
        self._run("dmsetup", "suspend", self.name)
        self._run("dmsetup", "reload", self.name, "--table", table)
        self._run("dmsetup", "resume", self.name)

    def fail(self):
        self._load(f"0 {self.sectors} error")

    def heal(self):
        self._load(self._linear())

    def close(self):
        subprocess.run(["dmsetup", "remove", "--retry", self.name], capture_output=True, timeout=60)
        subprocess.run(["losetup", "-d", self.loop], capture_output=True, timeout=60)


@pytest.fixture
def flaky_device(workdir):
    if shutil.which("dmsetup") is None or shutil.which("losetup") is None:
        pytest.skip("needs dmsetup and losetup (make setup installs dmsetup)")
    if os.geteuid() != 0:
        pytest.skip("device-mapper needs root")
    dev = FlakyDevice(workdir / "backing.img", 8 * MIB)
    yield dev
    dev.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_failing_block_device_is_an_io_error_and_flushed_data_stays(ember, kernel_vmlinux,
                                                                     initramfs, flaky_device,
                                                                     workdir, engine):
    script = GUEST_LIB + r"""
put before 0; echo EMBER-BEFORE-RC=$?
echo EMBER-WAIT-FAIL; read line
put during 1; echo EMBER-WRITE-RC=$?
# Far from what the partition scan read: not in the host's page cache.
dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=1024 iflag=direct 2>/dev/null; echo EMBER-READ-RC=$?
echo EMBER-WAIT-HEAL; read line
echo EMBER-BEFORE-MD5=$(get 0)
put after 3; echo EMBER-AFTER-RC=$?
"""
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["drives"] = [drive(flaky_device.path, engine)]
    proc = ember.start(config=config)
    proc.expect("EMBER-WAIT-FAIL", BOOT_TIMEOUT)
    assert value(proc, "EMBER-BEFORE-RC") == "0", proc.report("the first write failed")
    flaky_device.fail()
    proc.send("go\n")
    proc.expect("EMBER-WAIT-HEAL", STEP_TIMEOUT)
    assert value(proc, "EMBER-WRITE-RC") != "0", proc.report("a write to a failing device "
                                                             "did not fail in the guest")
    assert value(proc, "EMBER-READ-RC") != "0", proc.report("a read from a failing device "
                                                            "did not fail in the guest")
    flaky_device.heal()
    proc.send("go\n")
    finish(proc, "the device failed and came back")
    assert value(proc, "EMBER-BEFORE-MD5") == md5(record("before")), \
        proc.report("the block flushed before the fault reads back changed")
    assert value(proc, "EMBER-AFTER-RC") == "0", \
        proc.report("the drive does not work again once the device is back")
    backing = (workdir / "backing.img").read_bytes()
    assert backing[:BLOCK] == record("before"), "the flushed block is not on the device"
    assert backing[3 * BLOCK:4 * BLOCK] == record("after"), "the later block is not on the device"
    assert any("Input/output error" in l for l in proc.log_lines()), \
        proc.report("ember did not say why the requests failed")


# --- SIGKILL -----------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_during_writes_keeps_every_flushed_record(ember, kernel_vmlinux, initramfs,
                                                          workdir, engine):
    disk = workdir / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(4 * MIB)
    script = GUEST_LIB + r"""
i=0
while [ $i -lt 1000 ]; do put r$i $i || break; echo EMBER-FLUSHED-$i; i=$((i + 1)); done
"""
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["drives"] = [drive(disk, engine)]
    proc = ember.start(config=config)
    proc.expect("EMBER-FLUSHED-5$", BOOT_TIMEOUT + STEP_TIMEOUT)
    proc.proc.send_signal(signal.SIGKILL)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == -signal.SIGKILL, proc.report("ember was not killed by SIGKILL")
    flushed = [int(m.group(1)) for l in proc.console_lines()
               for m in [re.search(r"EMBER-FLUSHED-(\d+)$", l)] if m]
    assert flushed and flushed[-1] >= 5, proc.report("no flushed records seen")
    data = disk.read_bytes()
    lost = [i for i in range(flushed[-1] + 1) if data[i * BLOCK:(i + 1) * BLOCK] != record(f"r{i}")]
    assert not lost, proc.report(f"records {lost} were flushed by the guest but are not in the file")


# --- the TAP removed ---------------------------------------------------------------

HOST_IP, GUEST_IP = "10.202.0.1", "10.202.0.2"


def test_tap_removed_under_a_running_guest(ember, kernel_vmlinux, initramfs, test_netns):
    tap = "tapgone"
    test_netns.ip("tuntap", "add", tap, "mode", "tap")
    try:
        test_netns.ip("addr", "add", f"{HOST_IP}/24", "dev", tap)
        test_netns.ip("link", "set", tap, "up")
        script = (f"ping -c 2 -W 5 {HOST_IP} >/dev/null; echo EMBER-PING-BEFORE=$?; "
                  "echo EMBER-NET-UP; read line; "
                  f"ping -c 3 -W 1 {HOST_IP} >/dev/null; echo EMBER-PING-AFTER=$?; "
                  "echo EMBER-STILL-HERE")
        extra = f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off"
        config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script, extra))
        config["network-interfaces"] = [{"iface_id": "eth0", "host_dev_name": tap}]
        proc = ember.start(config=config)
        proc.expect("EMBER-NET-UP", BOOT_TIMEOUT)
        assert value(proc, "EMBER-PING-BEFORE") == "0", proc.report("no network before")
        test_netns.ip("link", "del", tap)
        proc.send("go\n")
        proc.expect("EMBER-STILL-HERE", STEP_TIMEOUT)
        assert value(proc, "EMBER-PING-AFTER") != "0", proc.report("ping worked without a TAP")
        finish(proc, "its TAP was removed")
    finally:
        test_netns.run("ip", "link", "del", tap, capture_output=True, timeout=60)


# --- the metrics FIFO's reader gone ------------------------------------------------

def test_metrics_fifo_reader_gone(ember, kernel_vmlinux, initramfs, workdir):
    """A reader takes the first metrics line and leaves; then 100
    FlushMetrics (far more than the pipe holds) must each be answered, the
    guest must keep running, and a new reader gets whole lines."""
    from api_client import ApiClient

    fifo = workdir / "metrics.fifo"
    os.mkfifo(fifo)
    lines: list[bytes] = []
    reader_done = threading.Event()

    def first_reader():
        with open(fifo, "rb") as f:
            lines.append(f.readline())
        reader_done.set()
    threading.Thread(target=first_reader, daemon=True).start()
    config = vm_config(kernel_vmlinux, initramfs,
                       boot_args=guest_boot_args("echo"))
    config["metrics"] = {"metrics_path": str(fifo)}
    path = ember.write_config(config)
    sock = workdir / "api.sock"
    proc = ember.start("--api-sock", str(sock), "--config-file", str(path))
    proc.expect("EMBER-READY", BOOT_TIMEOUT)
    assert reader_done.wait(STEP_TIMEOUT), proc.report("no metrics line at start")
    assert json.loads(lines[0])["utc_timestamp_ms"] > 0
    client = ApiClient(sock)
    statuses = [client.put("/actions", {"action_type": "FlushMetrics"}).status for _ in range(100)]
    assert set(statuses) <= {204, 400}, statuses
    assert 204 in statuses, statuses
    # A new reader gets whole JSON lines from what waited in the pipe.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with os.fdopen(fd, "rb") as f:
            first = f.readline()
    except BlockingIOError:
        first = b""
    assert first and json.loads(first), proc.report(f"no whole metrics line waited: {first[:200]!r}")
    proc.send("still-here\n")
    proc.expect("EMBER-ECHO=still-here", STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
