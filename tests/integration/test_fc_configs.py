"""Ember's equivalents of the example config files Firecracker ships
(tests/integration/fc-configs/, see its README): each starts Ember as
`--no-api --config-file` and must do what Firecracker does with the
original: boot (the rootfs's init starts, then reboots: exit 0), or refuse
with the named field and exit 152.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, describe_returncode
from test_bad_inputs import expect_error

CONFIGS = Path(__file__).resolve().parent / "fc-configs"
EXIT_BAD_CONFIGURATION = 152



def config_text(name: str, kernel, rootfs_copy) -> str:
    text = (CONFIGS / name).read_text()
    assert "@KERNEL@" in text and "@ROOTFS@" in text, name
    return text.replace("@KERNEL@", str(kernel)).replace("@ROOTFS@", str(rootfs_copy))


def cpu_info(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.split(":", 1)[0].strip() == key:
            return line.split(":", 1)[1].strip()
    return ""


def host_runs_c3() -> bool:
    """Firecracker's rule for C3: an Intel Skylake, Cascade Lake or Ice Lake
    (family 6; model 0x55 stepping 4 or 7, or model 0x6a stepping 6)."""
    if cpu_info("vendor_id") != "GenuineIntel" or cpu_info("cpu family") != "6":
        return False
    return (int(cpu_info("model")), int(cpu_info("stepping"))) in ((0x55, 4), (0x55, 7), (0x6a, 6))


@pytest.mark.boot
@pytest.mark.parametrize("name", [
    "full.json", "network.json", "mmds-v1.json", "mmds-v2.json",  # explicit nulls
    "smt.json",
])
def test_example_config_boots(ember, workdir, kernel_vmlinux, rootfs_image, name):
    rootfs = workdir / "rootfs.ext4"
    shutil.copy(rootfs_image, rootfs)
    proc = ember.start(config_text=config_text(name, kernel_vmlinux, rootfs))
    proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"{name}: the guest rebooted, ember {describe_returncode(rc)}")


@pytest.mark.boot
def test_example_config_with_cpu_template_c3(request, ember, workdir, kernel_vmlinux,
                                             rootfs_image):
    """C3 is a template for three Intel models: Firecracker refuses it on
    other CPUs (the test host's is an AMD EPYC) and boots with it on them."""
    rootfs = workdir / "rootfs.ext4"
    shutil.copy(rootfs_image, rootfs)
    proc = ember.start(config_text=config_text("cpu-template-c3.json", kernel_vmlinux, rootfs))
    if not host_runs_c3():
        expect_error(proc, "CPU template")
        assert proc.proc.returncode == EXIT_BAD_CONFIGURATION
        return
    proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"C3: the guest rebooted, ember {describe_returncode(rc)}")


@pytest.mark.parametrize("name,field", [("no-mem-size.json", "mem_size_mib"),
                                        ("no-vcpu-count.json", "vcpu_count")])
def test_example_config_missing_field(ember, workdir, kernel_vmlinux, rootfs_image, name, field):
    rootfs = workdir / "rootfs.ext4"
    shutil.copy(rootfs_image, rootfs)
    proc = ember.start(config_text=config_text(name, kernel_vmlinux, rootfs))
    line = expect_error(proc, f"missing field `{field}`")
    assert proc.proc.returncode == EXIT_BAD_CONFIGURATION, line
