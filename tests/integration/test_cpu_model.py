"""The CPU model a guest sees, as Firecracker configures it: machine-config
`smt` (pairs of vCPUs as the two threads of a core), the static templates
(`cpu_template`, deprecated: answered with "Deprecation: true") with
Firecracker's host checks, and custom templates (PUT /cpu-config, the config
file's "cpu-config") whose CPUID bits the guest sees."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done, vm_config

# Flags a guest's /proc/cpuinfo shows when the CPU has them: (flag, CPUID
# leaf, register, bit). None is needed to boot a 64-bit Linux.
HIDEABLE = [("movbe", 0x1, "ecx", 22), ("popcnt", 0x1, "ecx", 23), ("abm", 0x80000001, "ecx", 5)]


def script_args(script: str) -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", extra=f"ember.script={code}")


def run_script(ember, config: dict, script: str):
    config["boot-source"]["boot_args"] = script_args(script)
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    return proc


def host_cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.split(":", 1)[0].strip() == key:
            return line.split(":", 1)[1].strip()
    return ""


TOPOLOGY = ("echo EMBER-SIB0=$(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list); "
            "echo EMBER-CORE1=$(cat /sys/devices/system/cpu/cpu1/topology/core_id); "
            "echo EMBER-NPROC=$(grep -c ^processor /proc/cpuinfo)")


@pytest.mark.boot
@pytest.mark.parametrize("smt", [True, False])
def test_smt_makes_vcpu_pairs_threads_of_a_core(ember, kernel_vmlinux, initramfs, smt):
    config = vm_config(kernel_vmlinux, initramfs, boot_args="", vcpus=2)
    config["machine-config"]["smt"] = smt
    proc = run_script(ember, config, TOPOLOGY)
    assert proc.value("EMBER-NPROC") == "2", proc.report("vCPUs online")
    siblings, core1 = proc.value("EMBER-SIB0"), proc.value("EMBER-CORE1")
    if smt:
        assert siblings == "0-1" and core1 == "0", \
            proc.report(f"smt: cpu0's siblings {siblings!r}, cpu1's core {core1!r}")
    else:
        assert siblings == "0" and core1 == "1", \
            proc.report(f"no smt: cpu0's siblings {siblings!r}, cpu1's core {core1!r}")


def template_hiding(leaf: int, reg: str, bit: int) -> dict:
    bitmap = "0b" + "0" + "x" * bit  # bit `bit` cleared, the others left
    return {"cpuid_modifiers": [{"leaf": hex(leaf), "subleaf": "0x0", "flags": 0,
                                 "modifiers": [{"register": reg, "bitmap": bitmap}]}]}


@pytest.mark.boot
def test_custom_template_hides_a_cpuid_flag(api_ember, kernel_vmlinux, initramfs):
    host_flags = host_cpuinfo("flags").split()
    hideable = [h for h in HIDEABLE if h[0] in host_flags]
    assert hideable, f"the host has none of {[h[0] for h in HIDEABLE]}: {host_flags}"
    flag, leaf, reg, bit = hideable[0]
    vm = api_ember.start()
    c = vm.client()
    check_ok(c.put("/cpu-config", template_hiding(leaf, reg, bit)), 204, None, "PUT /cpu-config")
    # One word for the harness's value(): the flags joined by commas.
    script = "echo EMBER-FLAGS=$(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2 | xargs | tr ' ' ,)"
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": script_args(script)}), 204)
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204)
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT), 204)
    # PUT /cpu-config is a before-boot request.
    check_error(c.put("/cpu-config", {}), "after starting", context="PUT /cpu-config after start")
    vm.proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    flags = vm.proc.value("EMBER-FLAGS").split(",")
    assert "fpu" in flags, vm.proc.report(f"guest flags {flags}")
    assert flag not in flags, vm.proc.report(f"the template cleared {flag}, the guest has it")


def test_cpu_config_refuses_bad_templates_naming_the_field(api_vm):
    c = api_vm.client()
    check_error(c.put("/cpu-config", {"cpuid_modifiers": [{"leaf": "1", "subleaf": "0x0",
                                                           "flags": 0, "modifiers": []}]}),
                "0x", context="leaf without a number prefix")
    check_error(c.put("/cpu-config", {"msr_modifiers": [{"addr": "0x10a",
                                                         "bitmap": "0b102"}]}),
                "bitmap", context="bad bitmap character")
    check_error(c.put("/cpu-config", {"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0",
                                                           "flags": 0, "modifiers": [
                                                               {"register": "rax",
                                                                "bitmap": "0b1"}]}]}),
                "register", context="unknown register")
    check_error(c.put("/cpu-config", {"reg_modifiers": []}), "reg_modifiers",
                context="unknown field")
    check_ok(c.put("/cpu-config", {}), 204, None, "an empty template")


def test_template_msr_kvm_refuses_fails_the_start(api_vm, kernel_vmlinux, initramfs):
    """An MSR this KVM does not have: InstanceStart answers 400 naming it and
    the VM does not start."""
    c = api_vm.client()
    check_ok(c.put("/cpu-config", {"msr_modifiers": [{"addr": "0x2dead",
                                                      "bitmap": "0b1"}]}), 204)
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs)}), 204)
    check_error(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT),
                "0x2dead", context="InstanceStart with an MSR KVM lacks")
    assert c.get("/").body["state"] == "Not started"


def test_static_template_is_deprecated_and_checked_against_the_host(api_vm, kernel_vmlinux,
                                                                    initramfs):
    """T2A runs on AMD Milan only: elsewhere InstanceStart is refused with
    Firecracker's words. Setting cpu_template at all is deprecated."""
    c = api_vm.client()
    r = c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2A"})
    check_ok(r, 204, None, "PUT /machine-config with cpu_template")
    assert r.headers.get("Deprecation") == "true", r.describe()
    got = check_ok(c.get("/machine-config"), 200, "MachineConfiguration")
    assert got["cpu_template"] == "T2A", got
    # Without the field: no Deprecation header, and the template stays.
    r = c.patch("/machine-config", {"mem_size_mib": 256})
    check_ok(r, 204)
    assert r.headers.get("Deprecation") is None, r.describe()
    assert c.get("/machine-config").body["cpu_template"] == "T2A"
    milan = (host_cpuinfo("vendor_id") == "AuthenticAMD" and host_cpuinfo("cpu family") == "25"
             and host_cpuinfo("model") == "1" and host_cpuinfo("stepping") == "1")
    if milan:
        pytest.skip("the host is an AMD Milan, where T2A runs: the boot tests cover it")
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs)}), 204)
    want = ("vendor mismatched" if host_cpuinfo("vendor_id") != "AuthenticAMD"
            else "CPU model is not permitted")
    check_error(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT),
                "CPU template", want, context="InstanceStart with T2A")
    # "None" drops it (and is deprecated too).
    r = c.patch("/machine-config", {"cpu_template": "None"})
    check_ok(r, 204)
    assert r.headers.get("Deprecation") == "true", r.describe()
    assert "cpu_template" not in c.get("/machine-config").body


def test_mmds_v1_is_deprecated(api_vm):
    c = api_vm.client()
    check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
             204)
    for body, deprecated in (({"network_interfaces": ["eth0"]}, True),
                             ({"network_interfaces": ["eth0"], "version": "V1"}, True),
                             ({"network_interfaces": ["eth0"], "version": "V2"}, False)):
        r = c.put("/mmds/config", body)
        check_ok(r, 204, None, f"PUT /mmds/config {body}")
        assert (r.headers.get("Deprecation") == "true") == deprecated, (body, r.describe())
