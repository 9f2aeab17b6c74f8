"""Debian's unmodified stock kernel with an ext4 root on /dev/vda.

That kernel has virtio_mmio, virtio_blk and ext4 as modules and does not read
`virtio_mmio.device=` from the command line: it must find the disk in Ember's
ACPI tables (a `LNRO0005` device in the DSDT). The Debian initramfs
(tools/guest/build-initramfs-debian.sh) loads the modules, mounts the disk
named by `ember.root=` and switches to the init on it, which runs the test's
script (the `script` hook, base64 in `ember.script=`).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess

import pytest

from ember_harness import (DEBIAN_BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, STEP_TIMEOUT,
                           describe_returncode, guest_boot_args, hook_done, kernel_release,
                           vm_config)

pytestmark = pytest.mark.boot

# What the guest saw, one EMBER-<NAME>=<value> line each. The block device's
# sysfs path and its platform device's ACPI node say how the kernel found it.
GUEST_SCRIPT = r"""
root() { awk -v f=$1 '$2 == "/" { v = $f } END { print v }' /proc/mounts; }
echo EMBER-KERNEL=$(uname -r)
echo EMBER-ROOTFS=$(root 3)
echo EMBER-ROOTDEV=$(root 1)
echo EMBER-MODULES=$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ,)
echo EMBER-PLATFORM=$(ls /sys/bus/platform/devices | grep LNRO | tr '\n' ,)
dev=$(readlink -f /sys/block/vda/device)
echo EMBER-VDA-DEVICE=$dev
fw=${dev%/*}/firmware_node
echo EMBER-VDA-ACPI=$(cat $fw/hid),$(cat $fw/path)
echo TOKEN > /hello && sync
"""


def line_value(proc, name: str) -> str:
    """The rest of the guest's `NAME=...` line (values here hold / : \\ ,)."""
    regex = re.compile(rf"{re.escape(name)}=(\S*)")
    for line in proc.console_lines():
        m = regex.search(line)
        if m:
            return m.group(1)
    proc.fail(f"the guest console has no {name}=... line")


def test_debian_kernel_mounts_ext4_root_from_vda_found_through_acpi(
        ember, workdir, debian_vmlinuz, debian_initramfs, rootfs_image):
    root = workdir / "root.ext4"
    shutil.copyfile(rootfs_image, root)
    token = os.urandom(8).hex()
    code = base64.b64encode(GUEST_SCRIPT.replace("TOKEN", token).encode()).decode()
    # i8042.noaux as in test_boot.py's Debian boot: no PS/2 mouse port probe.
    args = guest_boot_args("script", extra=f"i8042.noaux ember.root=/dev/vda ember.script={code}")
    config = vm_config(debian_vmlinuz, debian_initramfs, boot_args=args, vcpus=1, mem_mib=256)
    # The root drive is /dev/vda; Ember adds root=/dev/vda rw, which the
    # kernel leaves to the initramfs, whose init mounts it (ember.root=).
    config["drives"] = [{"drive_id": "rootfs", "path_on_host": str(root), "is_root_device": True,
                         "is_read_only": False}]

    proc = ember.start(config=config)
    proc.expect(INIT_STARTED, DEBIAN_BOOT_TIMEOUT)
    m = proc.expect(hook_done("script"), STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's script failed: {m.group(0)}")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)} after the guest rebooted")

    # One switch, by the initramfs: the init on the new root goes straight on.
    switches = [line for line in proc.console_lines() if "switching to its /sbin/init" in line]
    starts = [line for line in proc.console_lines() if "EMBER-INIT: started" in line]
    assert len(switches) == 1 and len(starts) == 1, \
        proc.report(f"expected one root switch and one init start: {switches + starts}")

    seen = {name: line_value(proc, f"EMBER-{name}")
            for name in ("KERNEL", "ROOTFS", "ROOTDEV", "MODULES", "PLATFORM", "VDA-DEVICE",
                         "VDA-ACPI")}
    print("the Debian guest saw:", *(f"  {k}={v}" for k, v in seen.items()), sep="\n")

    release = kernel_release(debian_vmlinuz)
    assert seen["KERNEL"] == release, proc.report(f"guest runs {seen['KERNEL']!r}, not {release!r}")
    # The drivers came from the initramfs as modules: this is the stock kernel.
    modules = set(seen["MODULES"].split(","))
    missing = {"virtio_mmio", "virtio_blk", "ext4"} - modules
    assert not missing, proc.report(f"modules not loaded: {sorted(missing)}")
    assert (seen["ROOTFS"], seen["ROOTDEV"]) == ("ext4", "/dev/vda"), \
        proc.report("/ is not the ext4 file system on /dev/vda")
    # Found through ACPI: the disk hangs off the platform device the kernel
    # made for the DSDT's LNRO0005 entry (Ember names them \_SB_.Vnnn).
    assert "LNRO0005:00" in seen["PLATFORM"].split(","), proc.report("no LNRO0005:00 device")
    assert "/LNRO0005:00/" in seen["VDA-DEVICE"], \
        proc.report(f"vda is not under the ACPI device: {seen['VDA-DEVICE']}")
    hid, _, path = seen["VDA-ACPI"].partition(",")
    assert hid == "LNRO0005" and path.startswith("\\_SB_."), \
        proc.report(f"vda's ACPI node: hid {hid!r}, path {path!r}")

    out = subprocess.run(["debugfs", "-R", "cat /hello", str(root)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == token, \
        f"debugfs cat /hello: {out.stdout!r} (stderr {out.stderr.strip()!r}), wrote {token}"
