"""Boots real guests: kernel formats, vCPUs, memory, serial I/O, exit on reboot,
boot timer, Debian's stock kernel.

The guest is the test initramfs (tools/guest): init prints
`EMBER-INIT: started`, runs the hook named by `ember.hook=`, prints
`EMBER-HOOK: <name> rc=<n>`, then reboots (`ember.end=reboot`) or idles
(`ember.end=wait`).
"""

from __future__ import annotations

import secrets

import pytest

from ember_harness import (BOOT_TIMEOUT, DEBIAN_BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED,
                           STEP_TIMEOUT, describe_returncode, guest_boot_args, hook_done,
                           kernel_release, vm_config)

pytestmark = pytest.mark.boot

MIB = 1024 * 1024


def expect_hook_ok(proc, hook: str):
    m = proc.expect(hook_done(hook), STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's {hook} hook failed: {m.group(0)}")


def expect_clean_exit(proc):
    """The guest reboots (reboot -f -> i8042 reset): ember must exit 0."""
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"after the guest rebooted, ember {describe_returncode(rc)}; expected status 0")


def boot_info(ember, kernel, initramfs, *, vcpus=1, mem_mib=128, args=(), extra_boot_args="",
              boot_timeout=BOOT_TIMEOUT, verbose=False):
    """Boot with the info hook through to the guest's reboot and ember's exit 0."""
    config = vm_config(kernel, initramfs, vcpus=vcpus, mem_mib=mem_mib,
                       boot_args=guest_boot_args("info", extra=extra_boot_args, verbose=verbose))
    proc = ember.start(*args, config=config)
    proc.expect(INIT_STARTED, boot_timeout)
    expect_hook_ok(proc, "info")
    expect_clean_exit(proc)
    return proc


@pytest.mark.parametrize("kernel_fixture", ["kernel_vmlinux", "kernel_bzimage"], ids=["vmlinux", "bzimage"])
def test_minimal_kernel_boots_to_init_and_exits_on_reboot(request, ember, initramfs, kernel_fixture):
    kernel = request.getfixturevalue(kernel_fixture)
    release = kernel_release(kernel)

    # Quiet like every boot here (see guest_boot_args for the open bug).
    proc = boot_info(ember, kernel, initramfs)

    # The guest ran the kernel we configured.
    guest_release = proc.value("EMBER-KERNEL")
    assert guest_release == release, proc.report(f"guest runs kernel {guest_release!r}, expected {release!r}")


# boot_params' type_of_loader as the guest's kernel saw it: Ember's Linux
# boot sets 0xff; Linux's own PVH entry code records 0xb0 (a non-Xen PVH
# loader), whatever Ember wrote anywhere else.
LOADER_LINUX_BOOT, LOADER_PVH = "0xff", "0xb0"


@pytest.mark.parametrize("kernel_fixture,loader", [("kernel_vmlinux", LOADER_PVH),
                                                   ("kernel_bzimage", LOADER_LINUX_BOOT)],
                         ids=["vmlinux-pvh", "bzimage-linux-boot"])
def test_elf_kernel_with_pvh_note_boots_through_pvh(request, ember, initramfs, kernel_fixture,
                                                     loader):
    """As Firecracker: a vmlinux with XEN_ELFNOTE_PHYS32_ENTRY (the test
    kernel has CONFIG_PVH=y) boots through its PVH entry point, with the
    command line, initrd and memory map from hvm_start_info (the info hook
    and init ran, so all three arrived). A bzImage has no ELF notes."""
    kernel = request.getfixturevalue(kernel_fixture)
    proc = boot_info(ember, kernel, initramfs, args=("--level", "Info"), mem_mib=256)
    got = proc.value("EMBER-BOOT-LOADER")
    assert got == loader, proc.report(f"guest's boot_params type_of_loader is {got}, "
                                      f"expected {loader}")
    proto = "PVH" if loader == LOADER_PVH else "Linux 64-bit boot"
    assert any(f"({proto})" in line for line in proc.log_lines()), \
        proc.report(f"ember did not log a {proto} entry")
    memtotal = int(proc.value("EMBER-MEMTOTAL-KB")) * 1024
    assert 0.75 * 256 * MIB < memtotal <= 256 * MIB, proc.report(
        f"guest MemTotal {memtotal / MIB:.1f} MiB: the memory map did not arrive whole")


@pytest.mark.parametrize("vcpus", [1, 2, 4])
def test_guest_sees_configured_vcpus(ember, kernel_vmlinux, initramfs, vcpus):
    proc = boot_info(ember, kernel_vmlinux, initramfs, vcpus=vcpus)

    nproc = proc.value("EMBER-NPROC")
    assert nproc == str(vcpus), proc.report(f"guest has {nproc} CPUs online, configured vcpu_count={vcpus}")


@pytest.mark.parametrize("mem_mib", [128, 512])
def test_guest_sees_configured_memory(ember, kernel_vmlinux, initramfs, mem_mib):
    proc = boot_info(ember, kernel_vmlinux, initramfs, mem_mib=mem_mib)

    memtotal = int(proc.value("EMBER-MEMTOTAL-KB")) * 1024
    # MemTotal is the RAM the kernel manages: the configured size minus what
    # firmware areas, the kernel image and early reservations take (a few MiB
    # for a minimal 6.1 kernel). It can never exceed the configured size.
    low, high = int(0.75 * mem_mib * MIB), mem_mib * MIB
    assert low < memtotal <= high, proc.report(
        f"guest MemTotal is {memtotal / MIB:.1f} MiB with mem_size_mib={mem_mib}; "
        f"expected more than {low / MIB:.0f} MiB and at most {mem_mib} MiB")


def test_stdin_reaches_guest_serial_input(ember, kernel_vmlinux, initramfs):
    token = f"hello-ember-{secrets.token_hex(8)}"
    config = vm_config(kernel_vmlinux, initramfs, boot_args=guest_boot_args("echo"))
    proc = ember.start(config=config)
    proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    proc.expect(r"EMBER-READY", STEP_TIMEOUT)

    proc.send(token + "\n")

    echoed = proc.expect(r"EMBER-ECHO=([\w-]*)", STEP_TIMEOUT).group(1)
    assert echoed == token, proc.report(f"guest read {echoed!r} from its serial console, we wrote {token!r}")
    expect_hook_ok(proc, "echo")
    expect_clean_exit(proc)


def test_ember_keeps_running_while_the_guest_does(ember, kernel_vmlinux, initramfs):
    """Control for the exit-on-reboot checks: without a reboot there is no exit."""
    config = vm_config(kernel_vmlinux, initramfs, boot_args=guest_boot_args("info", end="wait"))
    proc = ember.start(config=config)
    proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    expect_hook_ok(proc, "info")

    # The guest now sleeps forever. This is an observation window for a
    # negative check, not a synchronisation delay.
    assert proc.still_running_after(5), \
        proc.report(f"ember {describe_returncode(proc.proc.returncode)} although the guest never rebooted")


def boot_time_lines(proc):
    return [line for line in proc.log_lines() if "Guest-boot-time" in line]


def test_boot_timer_logs_guest_boot_time(ember, kernel_vmlinux, initramfs):
    # The test init writes 123 to the boot timer at 0xC0000000 (busybox devmem).
    proc = boot_info(ember, kernel_vmlinux, initramfs, args=("--boot-timer", "--level", "Info"))

    assert boot_time_lines(proc), proc.report("--boot-timer --level Info: no 'Guest-boot-time' line on stderr")


def test_no_guest_boot_time_without_boot_timer(ember, kernel_vmlinux, initramfs):
    """Control: the boot-timer device only exists with --boot-timer."""
    proc = boot_info(ember, kernel_vmlinux, initramfs, args=("--level", "Info"))

    assert not boot_time_lines(proc), \
        proc.report("'Guest-boot-time' logged although --boot-timer was not given")


def test_debian_stock_kernel_boots_to_init(ember, debian_vmlinuz, initramfs):
    release = kernel_release(debian_vmlinuz)

    proc = boot_info(ember, debian_vmlinuz, initramfs, vcpus=2, mem_mib=256,
                     extra_boot_args="i8042.noaux", boot_timeout=DEBIAN_BOOT_TIMEOUT)

    guest_release = proc.value("EMBER-KERNEL")
    assert guest_release == release, \
        proc.report(f"guest runs kernel {guest_release!r}, expected Debian's {release!r}")
