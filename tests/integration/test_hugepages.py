"""machine-config huge_pages "2M": guest memory from the host's pool of 2 MiB
hugetlbfs pages (as Firecracker, docs/hugepages.md). The test sizes the pool
itself through /proc/sys/vm/nr_hugepages (root; the test host) and puts it
back afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, STEP_TIMEOUT, \
    describe_returncode, guest_boot_args, vm_config
from test_api import expect_guest_info, machine_config
from test_api import vm_config as get_vm_config

pytestmark = pytest.mark.boot

NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
MEM_MIB = 128
PAGES = MEM_MIB // 2


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0])
    return out


def pool_in_use() -> int:
    """2 MiB pages taken (faulted in) plus reserved for mappings."""
    m = meminfo()
    return m["HugePages_Total"] - m["HugePages_Free"] + m["HugePages_Rsvd"]


@pytest.fixture
def hugepage_pool():
    """set(n): sizes the pool to n free pages (or skips); restored at the end."""
    if os.geteuid() != 0 or not os.access(NR_HUGEPAGES, os.W_OK):
        pytest.skip("needs root and a writable /proc/sys/vm/nr_hugepages (the test host)")
    if "Hugepagesize" not in meminfo() or meminfo()["Hugepagesize"] != 2048:
        pytest.skip("the host's default huge page size is not 2 MiB")
    before = NR_HUGEPAGES.read_text().strip()
    assert pool_in_use() == 0, f"the pool is already in use: {meminfo()}"

    def set_pool(n: int):
        NR_HUGEPAGES.write_text(f"{n}\n")
        got = meminfo()["HugePages_Total"]
        if got < n:
            pytest.skip(f"the host could only find {got} of {n} free 2 MiB pages")
        assert got == n, meminfo()

    yield set_pool
    NR_HUGEPAGES.write_text(before + "\n")


def test_2m_guest_memory_comes_from_the_pool(api_vm, kernel_vmlinux, initramfs, hugepage_pool):
    hugepage_pool(PAGES + 8)
    c = api_vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": guest_boot_args("info", end="wait")}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB,
                                       "huge_pages": "2M"}), 204, None, "PUT /machine-config")
    assert machine_config(c)["huge_pages"] == "2M"
    assert get_vm_config(c)["machine-config"]["huge_pages"] == "2M"
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT), 204,
             None, "InstanceStart")
    # The guest sees all of its memory, and all of it is the pool's:
    # reserved at InstanceStart, faulted in as the guest touches it.
    expect_guest_info(api_vm.proc, 1, MEM_MIB)
    m = meminfo()
    assert pool_in_use() == PAGES, api_vm.proc.report(f"pool after boot: {m}")
    assert m["HugePages_Total"] - m["HugePages_Free"] > 0, api_vm.proc.report(
        f"the guest booted but touched no huge page: {m}")
    api_vm.proc.proc.terminate()
    rc = api_vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, api_vm.proc.report(f"SIGTERM: ember {describe_returncode(rc)}")
    assert pool_in_use() == 0, f"ember exited, the pool is still in use: {meminfo()}"


def test_2m_with_a_short_pool_is_a_clear_error(api_vm, kernel_vmlinux, initramfs,
                                               hugepage_pool):
    """Not a SIGBUS once the guest runs: InstanceStart fails and says why."""
    hugepage_pool(PAGES - 1)
    c = api_vm.client()
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": guest_boot_args("info", end="wait")}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB,
                                       "huge_pages": "2M"}), 204)
    check_error(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT),
                "huge pages", "nr_hugepages", f"({PAGES} pages)")
    assert pool_in_use() == 0, meminfo()
    assert api_vm.proc.proc.poll() is None, api_vm.proc.report("ember exited after the error")
    # Nothing was left half-made: with the pool grown, the same start works.
    hugepage_pool(PAGES)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT), 204,
             None, "InstanceStart after the pool grew")
    api_vm.proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    api_vm.proc.proc.terminate()
    rc = api_vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, api_vm.proc.report(f"SIGTERM: ember {describe_returncode(rc)}")


def test_2m_from_the_config_file(ember, kernel_vmlinux, initramfs, hugepage_pool):
    hugepage_pool(PAGES)
    config = vm_config(kernel_vmlinux, initramfs, vcpus=1, mem_mib=MEM_MIB,
                       boot_args=guest_boot_args("info"))
    config["machine-config"]["huge_pages"] = "2M"
    proc = ember.start(config=config)
    expect_guest_info(proc, 1, MEM_MIB)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"after the guest rebooted, ember {describe_returncode(rc)}")
    assert pool_in_use() == 0, meminfo()
