"""virtio-block: an ext4 root on /dev/vda, data written by the guest as the
host sees it (and back), both I/O engines, read-only drives, a PATCH that
swaps the backing file, and a bandwidth limit.

The guest runs shell scripts passed on its command line (the `script` hook,
base64 in `ember.script=`); it prints EMBER-<NAME>=<value> lines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from ember_harness import (BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode,
                           guest_boot_args, hook_done, vm_config)

pytestmark = pytest.mark.boot

MIB = 1024 * 1024
ENGINES = ["Sync", "Async"]


def script_args(script: str, end: str = "reboot", extra: str = "") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", end=end, extra=f"{extra} ember.script={code}".strip())


def drive(drive_id, path, *, root=False, ro=False, engine="Sync", **more) -> dict:
    d = {"drive_id": drive_id, "path_on_host": str(path), "is_root_device": root,
         "is_read_only": ro, "io_engine": engine}
    d.update(more)
    return d


def sha256(path, length: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left is None or left > 0:
            chunk = f.read(MIB if left is None else min(MIB, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def run_script(ember, config: dict, *args: str, timeout=STEP_TIMEOUT):
    """Boots config, waits for the script hook and a clean exit (the guest
    reboots); returns the process for its EMBER-... values."""
    proc = ember.start(*args, config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + timeout)
    assert m.group(1) == "0", proc.report(f"the guest's script failed: {m.group(0)}")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)} after the guest rebooted")
    return proc


def blank(path, size: int):
    with open(path, "wb") as f:
        f.truncate(size)


# --- root filesystem ----------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_ext4_root_on_vda_and_the_host_reads_what_the_guest_wrote(ember, workdir,
                                                                 kernel_vmlinux, rootfs_image,
                                                                 engine):
    root = workdir / "root.ext4"
    shutil.copyfile(rootfs_image, root)
    token = os.urandom(8).hex()
    script = ("echo EMBER-ROOTFS=$(awk '$2 == \"/\" { print $3 }' /proc/mounts); "
              f"echo {token} > /hello && sync")
    config = vm_config(kernel_vmlinux, None, boot_args=script_args(script))
    config["drives"] = [drive("rootfs", root, root=True, engine=engine)]
    proc = run_script(ember, config)
    assert proc.value("EMBER-ROOTFS") == "ext4", proc.report("/ is not the ext4 drive")
    out = subprocess.run(["debugfs", "-R", "cat /hello", str(root)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == token, \
        f"debugfs cat /hello: {out.stdout!r} (stderr {out.stderr.strip()!r}), wrote {token}"


# --- data -----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_64_mib_of_random_data_round_trip(ember, workdir, kernel_vmlinux, initramfs, engine):
    disk = workdir / "data.img"
    blank(disk, 64 * MIB)
    # Written through the page cache, synced, then read back from the
    # device itself (caches dropped), in the same boot...
    write = ("dd if=/dev/urandom of=/dev/vda bs=1M count=64 2>/dev/null && sync && "
             "echo 3 > /proc/sys/vm/drop_caches && "
             "echo EMBER-SHA=$(sha256sum < /dev/vda | cut -d' ' -f1)")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(write))
    config["drives"] = [drive("data", disk, engine=engine)]
    proc = run_script(ember, config, timeout=3 * STEP_TIMEOUT)
    host = sha256(disk)
    assert proc.value("EMBER-SHA") == host, \
        proc.report(f"guest read back {proc.value('EMBER-SHA')}, the host file is {host}")
    assert host != sha256(os.devnull) and os.path.getsize(disk) == 64 * MIB
    # ... and after a reboot, by a new guest.
    read = "echo EMBER-SHA=$(sha256sum < /dev/vda | cut -d' ' -f1)"
    config["boot-source"]["boot_args"] = script_args(read)
    proc = run_script(ember, config, timeout=3 * STEP_TIMEOUT)
    assert proc.value("EMBER-SHA") == host, proc.report("the data changed across a reboot")


def test_read_only_drive_refuses_writes(ember, workdir, kernel_vmlinux, initramfs):
    disk = workdir / "ro.img"
    with open(disk, "wb") as f:
        f.write(os.urandom(MIB))
    before = sha256(disk)
    script = ("echo EMBER-RO=$(cat /sys/block/vda/ro); "
              "dd if=/dev/zero of=/dev/vda bs=4096 count=16 conv=fsync 2>/dev/null; "
              "echo EMBER-DD=$?; exit 0")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["drives"] = [drive("ro", disk, ro=True)]
    proc = run_script(ember, config)
    assert proc.value("EMBER-RO") == "1", proc.report("the guest does not see a read-only disk")
    assert proc.value("EMBER-DD") != "0", proc.report("a write to the read-only disk succeeded")
    assert sha256(disk) == before, "the read-only drive's file changed"


def test_patch_path_swap_is_seen_by_the_guest(api_vm, workdir, kernel_vmlinux, initramfs):
    small, big = workdir / "small.img", workdir / "big.img"
    blank(small, 2 * MIB)
    with open(big, "wb") as f:
        f.write(b"EMBER-SWAPPED-IN")
        f.truncate(6 * MIB)
    # Print the size, wait for it to change, then read the new file's start.
    script = ("old=$(cat /sys/block/vda/size); echo EMBER-SIZE=$old; "
              "while [ \"$(cat /sys/block/vda/size)\" = \"$old\" ]; do usleep 50000; done; "
              "echo EMBER-NEWSIZE=$(cat /sys/block/vda/size); "
              "echo 3 > /proc/sys/vm/drop_caches; "
              "echo EMBER-HEAD=$(dd if=/dev/vda bs=16 count=1 2>/dev/null)")
    c = api_vm.client()
    from api_client import check_ok
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args(script)}), 204)
    check_ok(c.put("/drives/data", drive("data", small)), 204, None, "PUT /drives/data")
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204, None, "InstanceStart")
    proc = api_vm.proc
    m = proc.expect(r"EMBER-SIZE=(\d+)", BOOT_TIMEOUT)
    assert int(m.group(1)) == 2 * MIB // 512, proc.report(f"size before: {m.group(0)}")
    check_ok(c.patch("/drives/data", {"drive_id": "data", "path_on_host": str(big)}), 204, None,
             "PATCH /drives/data")
    m = proc.expect(r"EMBER-NEWSIZE=(\d+)", STEP_TIMEOUT)
    assert int(m.group(1)) == 6 * MIB // 512, proc.report(f"size after: {m.group(0)}")
    proc.expect(r"EMBER-HEAD=EMBER-SWAPPED-IN", STEP_TIMEOUT)
    drives = c.get("/vm/config").body["drives"]
    assert drives[0]["path_on_host"] == str(big), drives
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")


def test_bandwidth_limit_throttles_without_losing_data(ember, workdir, kernel_vmlinux,
                                                      initramfs):
    disk, metrics = workdir / "limited.img", workdir / "metrics.json"
    blank(disk, 16 * MIB)
    script = ("dd if=/dev/urandom of=/dev/vda bs=1M count=8 2>/dev/null && sync && "
              "echo 3 > /proc/sys/vm/drop_caches && "
              "echo EMBER-SHA=$(dd if=/dev/vda bs=1M count=8 2>/dev/null | sha256sum | "
              "cut -d' ' -f1)")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    # 1 MiB bucket refilled every 250 ms: 4 MiB/s, well below what the guest
    # writes unthrottled.
    config["drives"] = [drive("limited", disk, rate_limiter={
        "bandwidth": {"size": MIB, "refill_time": 250}})]
    config["metrics"] = {"metrics_path": str(metrics)}
    proc = run_script(ember, config, timeout=3 * STEP_TIMEOUT)
    assert proc.value("EMBER-SHA") == sha256(disk, 8 * MIB), proc.report("data differs")
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    throttled = sum(line["block_limited"]["rate_limiter_throttled_events"] for line in lines)
    written = sum(line["block_limited"]["write_bytes"] for line in lines)
    assert throttled > 0, f"no throttling counted: {[l['block_limited'] for l in lines]}"
    assert written >= 8 * MIB, f"block_limited.write_bytes sums to {written}"


def test_eight_drives_in_order_with_their_ids(ember, workdir, kernel_vmlinux, initramfs):
    """At least 8 drives; each is the file it was given, in the configured
    order (vda, vdb, ...), and GET_ID (sysfs `serial`) answers its drive_id."""
    drives = []
    for i in range(8):
        path = workdir / f"d{i}.img"
        with open(path, "wb") as f:
            f.write(f"EMBER-DISK-{i}".encode().ljust(16, b"."))
            f.truncate(MIB)
        drives.append(drive(f"disk_{i}", path, ro=(i % 2 == 1)))
    script = ("for d in a b c d e f g h; do "
              "echo EMBER-vd$d=$(cat /sys/block/vd$d/serial),"
              "$(dd if=/dev/vd$d bs=16 count=1 2>/dev/null),$(cat /sys/block/vd$d/ro); done")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["drives"] = drives
    proc = run_script(ember, config)
    for i, letter in enumerate("abcdefgh"):
        serial, head, ro = _triple(proc, f"EMBER-vd{letter}")
        assert serial == f"disk_{i}", proc.report(f"vd{letter}: serial {serial!r}")
        assert head == f"EMBER-DISK-{i}".ljust(16, "."), proc.report(f"vd{letter}: {head!r}")
        assert ro == str(i % 2), proc.report(f"vd{letter}: ro={ro}")


def _triple(proc, name: str) -> tuple[str, str, str]:
    for line in proc.console_lines():
        if line.startswith(name + "="):
            parts = line[len(name) + 1:].split(",")
            if len(parts) == 3:
                return parts[0], parts[1], parts[2]
    proc.fail(f"the guest console has no {name}=serial,head,ro line")
