"""Firecracker's REST API on `ember --api-sock`.

The contract is Firecracker's swagger, as Ember's own copy trimmed to the
routes it serves (docs/api/ember-api.yaml, in every clone): every response
body is validated against its definition (api_client.Swagger),
every error is HTTP 400 with an Error body whose fault_message names what is
wrong, and a refused request changes nothing (GET /vm/config is compared
before and after).

Tests marked `boot` start a guest through the API (the test initramfs, as in
test_boot.py); the rest need only the ember binary and the swagger. The
checks against Firecracker's own swagger (../shared/reference, or
EMBER_API_SPEC) are skipped, with the reason, where it is absent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from api_client import (EMBER_SPEC, REQUEST_TIMEOUT, ApiVm, check_error, check_ok,
                        firecracker_swagger, raw_request, read_response, swagger)
from ember_harness import (BOOT_TIMEOUT, ERROR_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED,
                           STEP_TIMEOUT, describe_returncode, guest_boot_args, hook_done)

MIB = 1024 * 1024
CURL = "/usr/bin/curl"
DEFAULT_MAX_PAYLOAD = 51200

ERR_AFTER_START = "The requested operation is not supported after starting the microVM."
ERR_BEFORE_START = "The requested operation is not supported before starting the microVM."
# Firecracker takes PUT /drives and /network-interfaces after start as a
# hotplug, which needs PCI (its --enable-pci; Ember has none).
ERR_NO_PCI = "PCI is not enabled"
NOT_YET = "not supported by Ember yet"

DEFAULT_MACHINE = {"vcpu_count": 1, "mem_size_mib": 128, "smt": False,
                   "track_dirty_pages": False, "huge_pages": "None"}

# What Ember serves: the routes of its own spec copy (docs/api/ember-api.yaml,
# made by tools/api-spec.py). Every other (method, path) of Firecracker's
# swagger must be refused with a 400 that names the missing feature.


def _served_routes() -> set[tuple[str, str]]:
    import yaml
    spec = yaml.safe_load(EMBER_SPEC.read_text())
    return {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops
            if m in ("get", "put", "patch", "post", "delete")}


IMPLEMENTED = _served_routes()
# First path segment -> a word the fault_message must contain.
FEATURE_WORDS = {
    "balloon": "balloon", "cpu-config": "CPU", "drives": "block", "pmem": "pmem",
    "entropy": "entropy", "serial": "serial", "hotplug": "hotplug",
    "snapshot": "snapshot", "vsock": "vsock",
}


# --- helpers ----------------------------------------------------------------------

def vm_config(client, context: str = "GET /vm/config") -> dict:
    return check_ok(client.get("/vm/config"), 200, "FullVmConfiguration", context)


def machine_config(client) -> dict:
    return check_ok(client.get("/machine-config"), 200, "MachineConfiguration", "GET /machine-config")


def instance_info(client) -> dict:
    return check_ok(client.get("/"), 200, "InstanceInfo", "GET /")


def fake_boot_files(workdir) -> tuple[str, str]:
    """Readable files for PUT /boot-source (checked for existence, not parsed)."""
    kernel, initrd = workdir / "vmlinux-stub", workdir / "initrd-stub"
    kernel.write_bytes(b"\0" * 4096)
    initrd.write_bytes(b"\0" * 4096)
    return str(kernel), str(initrd)


def configure(client, workdir) -> dict:
    """A non-default configuration to break things in; returns GET /vm/config."""
    kernel, initrd = fake_boot_files(workdir)
    check_ok(client.put("/boot-source", {"kernel_image_path": kernel, "initrd_path": initrd,
                                         "boot_args": "console=ttyS0 quiet"}), 204, None,
             "PUT /boot-source")
    check_ok(client.put("/machine-config", {"vcpu_count": 2, "mem_size_mib": 256}), 204, None,
             "PUT /machine-config")
    check_ok(client.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
             204, None, "PUT /network-interfaces/eth0")
    return vm_config(client)


def assert_unchanged(client, before: dict, what: str):
    after = vm_config(client, f"GET /vm/config after {what}")
    assert after == before, (f"{what} was refused but changed the configuration:\n"
                             f"before: {json.dumps(before)}\nafter:  {json.dumps(after)}")


def padded_json(obj: dict, size: int) -> bytes:
    """obj as JSON, padded with spaces inside the object to exactly size bytes."""
    text = json.dumps(obj)
    pad = size - len(text)
    assert pad >= 0, f"{text!r} is already longer than {size} bytes"
    return (text[:-1] + " " * pad + "}").encode()


def api_boot_sequence(client, kernel, initramfs, *, boot_args: str, vcpus: int, mem_mib: int):
    """Firecracker's getting-started sequence: boot source, machine, start."""
    check_ok(client.put("/boot-source", {"kernel_image_path": str(kernel),
                                         "initrd_path": str(initramfs),
                                         "boot_args": boot_args}), 204, None, "PUT /boot-source")
    check_ok(client.put("/machine-config", {"vcpu_count": vcpus, "mem_size_mib": mem_mib}),
             204, None, "PUT /machine-config")
    check_ok(client.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT),
             204, None, "PUT /actions InstanceStart")


def expect_guest_info(proc, vcpus: int, mem_mib: int):
    """The guest reached init, ran the info hook and sees the configured machine."""
    proc.expect(INIT_STARTED, BOOT_TIMEOUT)
    m = proc.expect(hook_done("info"), STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's info hook failed: {m.group(0)}")
    nproc = proc.value("EMBER-NPROC")
    assert nproc == str(vcpus), proc.report(f"guest has {nproc} CPUs online, PUT vcpu_count={vcpus}")
    memtotal = int(proc.value("EMBER-MEMTOTAL-KB")) * 1024
    assert 0.75 * mem_mib * MIB < memtotal <= mem_mib * MIB, \
        proc.report(f"guest MemTotal {memtotal / MIB:.1f} MiB with PUT mem_size_mib={mem_mib}")


def expect_exit(vm: ApiVm, what: str, timeout: float = EXIT_TIMEOUT):
    rc = vm.proc.wait_exit(timeout)
    assert rc == 0, vm.proc.report(f"{what}: ember {describe_returncode(rc)}; expected status 0")


class Failures:
    """Collects failed checks of a table-driven test and reports them all at once."""

    def __init__(self, vm: ApiVm):
        self.vm = vm
        self.items: list[str] = []

    def check(self, what: str, fn, *args):
        try:
            fn(*args)
        except AssertionError as e:
            self.items.append(f"{what}: {e}")

    def assert_none(self):
        assert not self.items, self.vm.proc.report(
            f"{len(self.items)} check(s) failed:\n" + "\n".join(self.items))


# --- the swagger itself -------------------------------------------------------------

def test_swagger_validator_resolves_refs_and_rejects_bad_bodies():
    """Control for every schema check below: the validator is not vacuous."""
    s = swagger()
    good = {"id": "x", "state": "Running", "vmm_version": "1", "app_name": "Ember"}
    assert s.errors(good, "InstanceInfo") == []
    assert s.errors(dict(good, state="Bogus"), "InstanceInfo")
    assert s.errors({"id": "x"}, "InstanceInfo")
    # $ref two levels down: FullVmConfiguration -> MachineConfiguration -> CpuTemplate.
    bad_template = {"machine-config": {"vcpu_count": 1, "mem_size_mib": 1, "cpu_template": "X"}}
    assert any("cpu_template" in e for e in s.errors(bad_template, "FullVmConfiguration"))
    assert s.errors({"machine-config": {"vcpu_count": 1}}, "FullVmConfiguration")
    assert s.errors({"fault_message": 3}, "Error")
    assert s.errors({"fault_message": "x", "other": 1}, "Error")          # strict
    assert s.errors({"fault_message": "x", "other": 1}, "Error", strict=False) == []


def test_embers_spec_is_firecrackers_for_what_it_serves():
    """Cross-check: every route and definition of docs/api/ember-api.yaml is
    Firecracker's, unchanged, so a body valid against Ember's spec is valid
    against Firecracker's. Skipped where Firecracker's swagger is absent."""
    fc, ours = firecracker_swagger(), swagger()
    assert ours.doc["info"]["version"] == fc.doc["info"]["version"], \
        f"{EMBER_SPEC} is of API {ours.doc['info']['version']}, Firecracker's of " \
        f"{fc.doc['info']['version']}: regenerate it with tools/api-spec.py"
    differ = [name for name, schema in ours.definitions.items()
              if fc.definitions.get(name) != schema]
    assert not differ, f"definitions that differ from Firecracker's: {differ}"
    routes = [(m, path) for path, ops in ours.paths().items() for m, op in ops.items()
              if fc.paths().get(path, {}).get(m) != op]
    assert not routes, f"routes that differ from Firecracker's: {routes}"


# --- reads and defaults ---------------------------------------------------------------

def test_machine_config_defaults_before_any_put(api_vm):
    c = api_vm.client()
    assert machine_config(c) == DEFAULT_MACHINE
    config = vm_config(c)
    assert "boot-source" not in config, f"boot-source present before any PUT: {config}"
    assert config["machine-config"] == DEFAULT_MACHINE
    assert config.get("drives") == [] and config.get("network-interfaces") == [], config


def test_instance_info_and_version(api_ember, ember_bin):
    vm = api_ember.start("--id", "api-test-7")
    c = vm.client()
    info = instance_info(c)
    assert info["id"] == "api-test-7", info
    assert info["state"] == "Not started", info
    assert info["app_name"] == "Ember", info
    version = check_ok(c.get("/version"), 200, "FirecrackerVersion", "GET /version")
    assert version["firecracker_version"] == info["vmm_version"], (version, info)
    out = subprocess.run([str(ember_bin), "--version"], capture_output=True, text=True,
                         timeout=ERROR_TIMEOUT).stdout.strip()
    assert out == f"Ember v{info['vmm_version']}", f"ember --version says {out!r}, the API {info}"


def test_default_instance_id(api_vm):
    assert instance_info(api_vm.client())["id"] == "anonymous-instance"


# --- configuration that works -----------------------------------------------------------

def test_put_machine_config_sets_it_and_resets_omitted_fields(api_vm):
    c = api_vm.client()
    full = {"vcpu_count": 2, "mem_size_mib": 256, "smt": False, "track_dirty_pages": True,
            "huge_pages": "Transparent", "cpu_template": "None"}
    check_ok(c.put("/machine-config", full), 204, None, "PUT /machine-config")
    got = machine_config(c)
    want = {k: v for k, v in full.items() if k != "cpu_template"}
    assert {k: got.get(k) for k in want} == want, got
    assert got.get("cpu_template", "None") == "None", got
    assert vm_config(c)["machine-config"] == got

    # Firecracker: optional fields a PUT omits go back to their defaults.
    check_ok(c.put("/machine-config", {"vcpu_count": 32, "mem_size_mib": 512}), 204)
    assert machine_config(c) == dict(DEFAULT_MACHINE, vcpu_count=32, mem_size_mib=512)


def test_patch_machine_config_changes_only_what_it_names(api_vm):
    c = api_vm.client()
    check_ok(c.put("/machine-config", {"vcpu_count": 3, "mem_size_mib": 256,
                                       "track_dirty_pages": True}), 204)
    check_ok(c.patch("/machine-config", {"mem_size_mib": 300}), 204, None, "PATCH mem_size_mib")
    assert machine_config(c) == dict(DEFAULT_MACHINE, vcpu_count=3, mem_size_mib=300,
                                     track_dirty_pages=True)
    check_ok(c.patch("/machine-config", {"vcpu_count": 4, "huge_pages": "Transparent"}), 204)
    assert machine_config(c) == dict(DEFAULT_MACHINE, vcpu_count=4, mem_size_mib=300,
                                     track_dirty_pages=True, huge_pages="Transparent")


def test_put_boot_source_replaces_it(api_vm, workdir):
    c = api_vm.client()
    kernel, initrd = fake_boot_files(workdir)
    first = {"kernel_image_path": kernel, "initrd_path": initrd, "boot_args": "console=ttyS0 a=1"}
    check_ok(c.put("/boot-source", first), 204, None, "PUT /boot-source")
    assert vm_config(c)["boot-source"] == first
    # A second PUT replaces the whole resource: no initrd any more.
    second = {"kernel_image_path": kernel, "boot_args": "console=ttyS0 b=2"}
    check_ok(c.put("/boot-source", second), 204, None, "PUT /boot-source again")
    got = vm_config(c)["boot-source"]
    assert got == {**second, "initrd_path": None}, got


def test_failed_instance_start_leaves_the_vm_configurable(api_vm, workdir):
    """A kernel that is no kernel: InstanceStart fails with 400, nothing starts."""
    c = api_vm.client()
    before = configure(c, workdir)
    check_error(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT),
                "kernel", context="InstanceStart with a stub kernel")
    assert instance_info(c)["state"] == "Not started"
    assert_unchanged(c, before, "a failed InstanceStart")
    check_ok(c.patch("/machine-config", {"vcpu_count": 1}), 204, None, "PATCH after failed start")


# --- refused requests ---------------------------------------------------------------------

def test_instance_start_without_boot_source(api_vm):
    c = api_vm.client()
    before = vm_config(c)
    msg = check_error(c.put("/actions", {"action_type": "InstanceStart"}), "kernel")
    assert msg == "Start microvm error: Cannot start microvm without kernel configuration.", msg
    assert instance_info(c)["state"] == "Not started"
    assert_unchanged(c, before, "InstanceStart without a boot source")


def test_runtime_actions_before_start(api_vm, workdir):
    """FlushMetrics, SendCtrlAltDel, pause, resume and the PATCHes of drives
    and network interfaces: not before InstanceStart (Firecracker's message),
    with or without a metrics sink."""
    c = api_vm.client()
    configure(c, workdir)
    (workdir / "disk").write_bytes(b"\0" * 4096)
    check_ok(c.put("/drives/d0", {"drive_id": "d0", "path_on_host": str(workdir / "disk"),
                                  "is_root_device": False, "is_read_only": True}), 204)
    before = vm_config(c)
    cases = [("PUT", "/actions", {"action_type": "FlushMetrics"}),
             ("PUT", "/actions", {"action_type": "SendCtrlAltDel"}),
             ("PATCH", "/vm", {"state": "Paused"}), ("PATCH", "/vm", {"state": "Resumed"}),
             ("PATCH", "/drives/d0", {"drive_id": "d0", "path_on_host": str(workdir / "disk")}),
             ("PATCH", "/network-interfaces/eth0", {"iface_id": "eth0"})]
    for method, path, body in cases:
        msg = check_error(c.request(method, path, body), context=f"{method} {path} {body}")
        assert msg == ERR_BEFORE_START, f"{method} {path} {body} before start: {msg!r}"
    check_ok(c.put("/metrics", {"metrics_path": str(workdir / "m.json")}), 204)
    before = vm_config(c)
    msg = check_error(c.put("/actions", {"action_type": "FlushMetrics"}))
    assert msg == ERR_BEFORE_START, f"FlushMetrics with a sink, before start: {msg!r}"
    assert (workdir / "m.json").read_text() == "", "a refused FlushMetrics wrote metrics"
    assert instance_info(c)["state"] == "Not started"
    assert_unchanged(c, before, "actions before start")


def test_boot_source_files_must_exist(api_vm, workdir):
    c = api_vm.client()
    before = configure(c, workdir)
    kernel, _ = fake_boot_files(workdir)
    missing = str(workdir / "no-such-file")
    check_error(c.put("/boot-source", {"kernel_image_path": missing}),
                "kernel_image_path", missing)
    check_error(c.put("/boot-source", {"kernel_image_path": kernel, "initrd_path": missing}),
                "initrd_path", missing)
    assert_unchanged(c, before, "PUT /boot-source with a missing file")



# (method, path, body, words the fault_message must contain)
BAD_BODIES = [
    # PUT /machine-config
    ("PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 1.5}, ["mem_size_mib"]),
    ("PUT", "/machine-config", {"vcpu_count": True, "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": None, "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "smt": "no"}, ["smt"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "track_dirty_pages": 1},
     ["track_dirty_pages"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": 2},
     ["huge_pages"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": 1},
     ["cpu_template"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "vcpus": 2}, ["vcpus"]),
    ("PUT", "/machine-config", {"mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": 2}, ["mem_size_mib"]),
    ("PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": 33, "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": -1, "mem_size_mib": 256}, ["vcpu_count"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 0}, ["mem_size_mib"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "huge_pages": "1G"},
     ["huge_pages"]),
    ("PUT", "/machine-config", {"vcpu_count": 3, "mem_size_mib": 256, "smt": True},
     ["vCPUs", "SMT"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256, "cpu_template": "T3"},
     ["cpu_template", "T3"]),
    # Firecracker: huge pages need a whole number of 2 MiB pages.
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 255, "huge_pages": "2M"},
     ["mem_size_mib", "page size"]),
    ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 255,
                                "huge_pages": "Transparent"}, ["mem_size_mib", "page size"]),
    ("PUT", "/machine-config", [2, 256], []),
    # PATCH /machine-config
    ("PATCH", "/machine-config", {"vcpu_count": "4"}, ["vcpu_count"]),
    ("PATCH", "/machine-config", {"mem_size_mib": "lots"}, ["mem_size_mib"]),
    ("PATCH", "/machine-config", {"memory": 512}, ["memory"]),
    ("PATCH", "/machine-config", {"vcpu_count": 64}, ["vcpu_count"]),
    ("PATCH", "/machine-config", {"smt": True, "vcpu_count": 5}, ["vCPUs", "SMT"]),
    ("PATCH", "/machine-config", {"mem_size_mib": 129, "huge_pages": "2M"},
     ["mem_size_mib", "page size"]),
    ("PATCH", "/machine-config", {"cpu_template": "c3"}, ["cpu_template", "c3"]),
    ("PATCH", "/machine-config", {}, ["PATCH"]),              # as Firecracker: must set something
    # PUT /boot-source
    ("PUT", "/boot-source", {"kernel_image_path": 5}, ["kernel_image_path"]),
    ("PUT", "/boot-source", {"kernel_image_path": "@KERNEL@", "boot_args": ["a"]}, ["boot_args"]),
    ("PUT", "/boot-source", {"kernel_image_path": "@KERNEL@", "initrd_path": False},
     ["initrd_path"]),
    ("PUT", "/boot-source", {"kernel_image_path": "@KERNEL@", "rootfs": "x"}, ["rootfs"]),
    ("PUT", "/boot-source", {"kernel_path": "@KERNEL@"}, ["kernel_path"]),
    ("PUT", "/boot-source", {"boot_args": "console=ttyS0"}, ["kernel_image_path"]),
    ("PUT", "/boot-source", {"kernel_image_path": ""}, ["kernel_image_path"]),
    ("PUT", "/boot-source", "[]", []),
    # PUT /actions
    ("PUT", "/actions", {}, ["action_type"]),
    ("PUT", "/actions", {"action_type": 1}, ["action_type"]),
    ("PUT", "/actions", {"action_type": "Reboot"}, ["action_type", "Reboot"]),
    ("PUT", "/actions", {"action_type": "InstanceStart", "delay": 1}, ["delay"]),
    ("PUT", "/actions", {"type": "InstanceStart"}, ["type"]),
    # PUT /logger
    ("PUT", "/logger", {"level": "Loud"}, ["level", "Loud"]),
    ("PUT", "/logger", {"level": 3}, ["level"]),
    ("PUT", "/logger", {"show_level": "yes"}, ["show_level"]),
    ("PUT", "/logger", {"log_path": "/nonexistent-dir/ember.log"}, ["log_path"]),
    ("PUT", "/logger", {"log_path": ""}, ["log_path"]),
    ("PUT", "/logger", {"colour": True}, ["colour"]),
    # PUT /metrics
    ("PUT", "/metrics", {}, ["metrics_path"]),
    ("PUT", "/metrics", {"metrics_path": 7}, ["metrics_path"]),
    ("PUT", "/metrics", {"metrics_path": "/nonexistent-dir/m.json"}, ["metrics"]),
    ("PUT", "/metrics", {"metrics_path": "@WORKDIR@/m.json", "every": 5}, ["every"]),
    # PUT /mmds/config
    ("PUT", "/mmds/config", {}, ["network_interfaces"]),
    ("PUT", "/mmds/config", {"network_interfaces": []}, ["network interface IDs", "empty"]),
    ("PUT", "/mmds/config", {"network_interfaces": ["eth9"]}, ["eth9"]),
    ("PUT", "/mmds/config", {"network_interfaces": ["eth0"], "version": "V3"}, ["version"]),
    ("PUT", "/mmds/config", {"network_interfaces": ["eth0"], "ipv4_address": "10.0.0.1"},
     ["ipv4_address"]),
    # PUT /network-interfaces/{id}
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0"}, ["host_dev_name"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth1", "host_dev_name": "tap1"},
     ["path", "body"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap1",
                                          "guest_mac": "06:00:AC:10:00"}, ["guest_mac"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap1",
                                          "mtu": 67}, ["mtu"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap1",
                                          "mtu": "1500"}, ["mtu"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap1",
                                          "jumbo": True}, ["jumbo"]),
    # A name the kernel refuses for a TAP (a missing one is created, as with
    # Firecracker run as root).
    ("PUT", "/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "bad/name"},
     ["bad/name"]),
    ("PUT", "/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap1",
                                          "rx_rate_limiter": {"bandwidth": {"size": -1}}},
     ["rx_rate_limiter", "size"]),
    ("PUT", "/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap0"},
     ["tap0", "already"]),
    # PATCH /mmds (before any PUT)
    ("PATCH", "/mmds", {"a": 1}, ["not initialized"]),
    # PATCH /vm
    ("PATCH", "/vm", {}, ["state"]),
    ("PATCH", "/vm", {"state": 1}, ["state"]),
    ("PATCH", "/vm", {"state": "Stopped"}, ["state", "Stopped"]),
    ("PATCH", "/vm", {"state": "Paused", "force": True}, ["force"]),
]
# The same generic breakages on every endpoint that takes a body.
for _method, _path in (("PUT", "/machine-config"), ("PATCH", "/machine-config"),
                       ("PUT", "/boot-source"), ("PUT", "/actions"), ("PATCH", "/vm"),
                       ("PUT", "/logger"), ("PUT", "/metrics"), ("PUT", "/mmds/config"),
                       ("PUT", "/network-interfaces/eth1")):
    for _name, _body, _words in (
            ("empty-body", b"", [f"Empty {_method} request."]),
            ("truncated-json", b'{"vcpu_count": 2,', ["json"]),
            ("single-quoted-json", b"{'vcpu_count': 2}", ["json"]),
            ("trailing-garbage", b'{"state": "Paused"} trailing', ["json"]),
            ("duplicate-key", b'{"a": 1, "a": 2}', ["json"]),
            ("json-null", b"null", []),
            ("json-string", b'"text"', []),
            ("not-utf8", b"\xff\xfe{}", ["json"])):
        BAD_BODIES.append(pytest.param(_method, _path, _body, _words,
                                       id=f"{_method}-{_path.strip('/')}-{_name}"))


def _bad_body_id(case):
    if len(case) == 3:  # a pytest.param(values, marks, id)
        if case.id:
            return case.id
        case = case.values
    method, path, body, _ = case
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return f"{method}-{path.strip('/')}-" + text.replace('"', "'").replace("@KERNEL@", "K")


@pytest.mark.parametrize("method,path,body,words", BAD_BODIES,
                         ids=[_bad_body_id(c) for c in BAD_BODIES])
def test_bad_body_is_refused_and_changes_nothing(api_vm, workdir, method, path, body, words):
    c = api_vm.client()
    before = configure(c, workdir)
    if isinstance(body, dict):
        kernel, _ = fake_boot_files(workdir)
        body = {k: (kernel if v == "@KERNEL@" else
                    v.replace("@WORKDIR@", str(workdir)) if isinstance(v, str) else v)
                for k, v in body.items()}
    resp = c.request(method, path, body)
    check_error(resp, *words, context=f"{method} {path} {body!r}")
    assert_unchanged(c, before, f"{method} {path} {body!r}")
    assert instance_info(c)["state"] == "Not started"


UNKNOWN_ROUTES = [
    ("DELETE", "/machine-config"), ("GET", "/nope"), ("POST", "/actions"), ("PUT", "/"),
    ("GET", "/actions"), ("PATCH", "/actions"), ("PUT", "/version"), ("GET", "/boot-source"),
    ("PATCH", "/boot-source"), ("PUT", "/vm/config"), ("GET", "/vm"), ("PUT", "/vm"),
    ("POST", "/machine-config"), ("GET", "/machine-config/vcpus"), ("GET", "/vm/config/"),
    ("GET", "/versions"), ("OPTIONS", "/"), ("DELETE", "/"), ("BREW", "/coffee"),
]


def test_unknown_routes_are_refused(api_vm, workdir):
    c = api_vm.client()
    before = configure(c, workdir)
    failures = Failures(api_vm)
    for method, path in UNKNOWN_ROUTES:
        body = {} if method in ("PUT", "PATCH", "POST") else None

        def one():
            msg = check_error(c.request(method, path, body))
            # Firecracker names the path's first segment, without its slash.
            first = path.lstrip("/").split("/")[0]
            assert msg == f"Invalid request method and/or path: {method} {first}.", msg
        failures.check(f"{method} {path}", one)
        failures.check(f"GET /vm/config after {method} {path}", assert_unchanged, c, before,
                       f"{method} {path}")
    failures.assert_none()


def _not_yet_routes():
    """Every (method, path) of Firecracker's swagger that Ember does not serve yet."""
    routes = []
    for path, ops in firecracker_swagger().paths().items():
        for method in ops:
            if method.lower() not in ("get", "put", "patch", "post", "delete"):
                continue
            if (method.upper(), path) in IMPLEMENTED:
                continue
            routes.append((method.upper(), re.sub(r"\{[^}]*\}", "id0", path)))
    return routes


def test_every_route_of_embers_spec_is_served(api_vm):
    """docs/api/ember-api.yaml lists only what Ember serves: no route in it is
    refused as unknown or as not supported yet (bodies may still be bad)."""
    c = api_vm.client()
    assert len(IMPLEMENTED) >= 15, IMPLEMENTED
    failures = Failures(api_vm)
    for method, path in sorted(IMPLEMENTED):
        concrete = re.sub(r"\{[^}]*\}", "eth0", path)
        body = {} if method in ("PUT", "PATCH") else None

        def one():
            resp = c.request(method, concrete, body)
            msg = (resp.body or {}).get("fault_message", "") if resp.status == 400 else ""
            assert "Invalid request method" not in msg and NOT_YET not in msg, \
                f"{method} {concrete}: {resp.describe()}"
        failures.check(f"{method} {path}", one)
    failures.assert_none()


def test_features_not_yet_supported_are_named(api_vm, workdir):
    c = api_vm.client()
    before = configure(c, workdir)
    routes = _not_yet_routes()
    assert len(routes) >= 5, f"expected the swagger's vsock, snapshot... routes, got {routes}"
    failures = Failures(api_vm)
    for method, path in routes:
        word = FEATURE_WORDS.get(path.strip("/").split("/")[0])
        if word is None:
            failures.items.append(f"{method} {path}: a swagger route this test does not know; "
                                  "add its feature to FEATURE_WORDS or IMPLEMENTED")
            continue
        body = {} if method in ("PUT", "PATCH") else None
        failures.check(f"{method} {path}", check_error, c.request(method, path, body),
                       NOT_YET, word)
        failures.check(f"GET /vm/config after {method} {path}", assert_unchanged, c, before,
                       f"{method} {path}")
    failures.assert_none()


# --- payload size -----------------------------------------------------------------------

@pytest.mark.parametrize("limit", [None, 1000], ids=["default", "custom"])
def test_payload_size_limit(api_ember, workdir, limit):
    args = () if limit is None else ("--http-api-max-payload-size", str(limit))
    vm = api_ember.start(*args)
    limit = limit or DEFAULT_MAX_PAYLOAD
    c = vm.client()
    before = configure(c, workdir)

    # Exactly the limit is accepted...
    at_limit = padded_json({"vcpu_count": 3, "mem_size_mib": 300}, limit)
    check_ok(c.put("/machine-config", at_limit), 204, None, f"PUT of {limit} bytes (the limit)")
    before = vm_config(c)
    assert before["machine-config"]["vcpu_count"] == 3
    # ...one byte more, or much more, is not, and changes nothing.
    for size in (limit + 1, 4 * limit, 1 * MIB):
        body = padded_json({"vcpu_count": 4, "mem_size_mib": 400}, size)
        check_error(c.put("/machine-config", body), "larger than the limit", str(limit),
                    context=f"PUT of {size} bytes, limit {limit}")
        assert_unchanged(c, before, f"a {size}-byte PUT")
    # Same connection throughout: an oversized request does not cost the client it.
    assert c.connects == 1, f"the client had to reconnect {c.connects - 1} time(s)"


def test_chunked_body_is_refused(api_ember, workdir):
    """Bodies are framed by Content-Length only (as Firecracker's micro_http):
    a chunked one gets a 400 that says so, the connection is closed (what
    follows cannot be framed) and nothing changes."""
    vm = api_ember.start("--http-api-max-payload-size", "1000")
    c = vm.client()
    before = configure(c, workdir)
    body = padded_json({"vcpu_count": 4, "mem_size_mib": 400}, 3000)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700])
                      for i in range(0, len(body), 700)) + b"0\r\n\r\n"
    with vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(raw_request("PUT", "/machine-config",
                              headers={"Transfer-Encoding": "chunked",
                                       "Content-Type": "application/json"}) + chunks)
        resp = read_response(f, "PUT")
        check_error(resp, "Transfer-Encoding", "chunked", context="chunked 3000 bytes")
        assert (resp.headers.get("Connection") or "").lower() == "close", resp.headers
        assert f.read() == b"", "the connection stays open after a chunked request"
    assert_unchanged(c, before, "a chunked PUT")


MALFORMED_HTTP = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n",
                 id="40k-header"),
    pytest.param(b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", id="40k-path"),
    pytest.param(b"PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n{}",
                 id="bad-content-length"),
    pytest.param(b"GARBAGE\r\n\r\n", id="garbage-request-line"),
]


@pytest.mark.parametrize("data", MALFORMED_HTTP)
def test_malformed_http_gets_a_json_error(api_vm, data):
    with api_vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(data)
        check_error(read_response(f, "GET"), context=f"{data[:60]!r}...")
    instance_info(api_vm.client())  # and ember still serves


# --- connections ---------------------------------------------------------------------------

def test_keep_alive_100_requests_on_one_connection(api_vm, workdir):
    c = api_vm.client()
    kernel, _ = fake_boot_files(workdir)
    for i in range(100):
        step = i % 5
        if step == 0:
            assert instance_info(c)["state"] == "Not started"
        elif step == 1:
            check_ok(c.put("/machine-config", {"vcpu_count": i % 32 + 1, "mem_size_mib": 128 + i}),
                     204, None, f"request {i}")
        elif step == 2:
            got = machine_config(c)
            assert (got["vcpu_count"], got["mem_size_mib"]) == ((i - 1) % 32 + 1, 128 + i - 1), got
        elif step == 3:
            check_error(c.get(f"/nope-{i}"), f" nope-{i}.", context=f"request {i}")
        else:
            check_ok(c.put("/boot-source", {"kernel_image_path": kernel, "boot_args": f"n={i}"}),
                     204, None, f"request {i}")
            assert vm_config(c)["boot-source"]["boot_args"] == f"n={i}"
    assert c.connects == 1, f"100 requests took {c.connects} connections; expected keep-alive on one"


def test_pipelined_requests_are_answered_in_order(api_vm):
    requests = [
        ("PUT", "/machine-config", json.dumps({"vcpu_count": 3, "mem_size_mib": 300}).encode()),
        ("PUT", "/machine-config", b'{"vcpu_count": '),        # malformed, framed by its length
        ("GET", "/machine-config", None),
        ("GET", "/pipelined-nope", None),
        ("GET", "/version", None),
    ]
    with api_vm.raw_socket() as s, s.makefile("rb") as f:
        s.sendall(b"".join(raw_request(m, p, b) for m, p, b in requests))
        responses = [read_response(f, m) for m, _, _ in requests]
        check_ok(responses[0], 204, None, "pipelined PUT")
        check_error(responses[1], "json", context="pipelined malformed PUT")
        assert check_ok(responses[2], 200, "MachineConfiguration")["vcpu_count"] == 3, responses[2]
        check_error(responses[3], " pipelined-nope.", context="pipelined unknown path")
        check_ok(responses[4], 200, "FirecrackerVersion", "pipelined GET /version")
        # The connection is still usable afterwards.
        s.sendall(raw_request("GET", "/"))
        check_ok(read_response(f), 200, "InstanceInfo", "GET / after the pipelined batch")


def test_50_concurrent_clients(api_vm):
    n_clients, rounds = 50, 4
    start = threading.Barrier(n_clients, timeout=REQUEST_TIMEOUT)
    valid = {(i % 32 + 1, 128 + i) for i in range(n_clients)} | \
        {(DEFAULT_MACHINE["vcpu_count"], DEFAULT_MACHINE["mem_size_mib"])}
    results: dict[int, str] = {}

    def client_thread(i):
        try:
            c = api_vm.client()
            start.wait()
            for r in range(rounds):
                assert instance_info(c)["state"] == "Not started"
                check_ok(c.put("/machine-config", {"vcpu_count": i % 32 + 1, "mem_size_mib": 128 + i}),
                         204, None, f"client {i} PUT")
                got = machine_config(c)
                # Other clients PUT concurrently: any one client's values, never a mix.
                assert (got["vcpu_count"], got["mem_size_mib"]) in valid, got
                check_error(c.get(f"/client-{i}-{r}"), f" client-{i}-{r}.")
            assert c.connects == 1, f"client {i} reconnected"
            results[i] = "ok"
        except BaseException as e:  # noqa: B902 - reported below, per client
            results[i] = f"{type(e).__name__}: {e}"

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True) for i in range(n_clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 4 * REQUEST_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    bad = {i: r for i, r in results.items() if r != "ok"}
    assert not stuck and not bad, api_vm.proc.report(
        f"{len(stuck)} client(s) got no answer in time ({stuck}); {len(bad)} failed: "
        + "; ".join(f"client {i}: {r}" for i, r in sorted(bad.items())[:10]))
    assert len(results) == n_clients


def test_client_that_disconnects_mid_request_leaves_ember_serving(api_vm, workdir):
    c = api_vm.client()
    before = configure(c, workdir)
    body = padded_json({"vcpu_count": 5, "mem_size_mib": 500}, 200)
    full = raw_request("PUT", "/machine-config", body)
    header_end = full.index(b"\r\n\r\n") + 4
    cuts = {
        "headers and half the body": header_end + len(body) // 2,
        "half the headers": header_end // 2,
        "headers only": header_end,
        "nothing": 0,
    }
    for what, cut in cuts.items():
        for _ in range(5):
            with api_vm.raw_socket() as s:
                s.sendall(full[:cut])
    # A whole request whose client leaves before reading the answer.
    for _ in range(5):
        with api_vm.raw_socket() as s:
            s.sendall(raw_request("GET", "/vm/config"))
            s.shutdown(socket.SHUT_WR)
    assert_unchanged(c, before, "clients that hung up mid-request")
    # Ember still serves, on the old connection and on new ones.
    instance_info(c)
    with api_vm.client() as fresh:
        check_ok(fresh.patch("/machine-config", {"vcpu_count": 6}), 204, None, "PATCH after hang-ups")
        assert machine_config(fresh)["vcpu_count"] == 6
    assert api_vm.proc.proc.poll() is None


def test_stalled_client_does_not_block_others(api_vm):
    """One client sends half a body and waits; others are served meanwhile."""
    body = json.dumps({"vcpu_count": 7, "mem_size_mib": 700}).encode()
    req = raw_request("PUT", "/machine-config", body)
    split = len(req) - len(body) // 2
    with api_vm.raw_socket() as stalled, stalled.makefile("rb") as f:
        stalled.sendall(req[:split])
        c = api_vm.client()
        for _ in range(10):
            assert machine_config(c) == DEFAULT_MACHINE
        stalled.sendall(req[split:])
        check_ok(read_response(f, "PUT"), 204, None, "the stalled PUT, completed")
    assert machine_config(c)["vcpu_count"] == 7


# --- the socket file --------------------------------------------------------------------------

def test_stale_socket_file_is_replaced(api_ember, workdir):
    path = workdir / "api.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, with nobody listening
    assert path.is_socket()
    vm = api_ember.start(sock=path)
    assert instance_info(vm.client())["state"] == "Not started"


def test_socket_in_use_is_refused(api_ember, workdir):
    first = api_ember.start()
    second = api_ember.start(sock=first.sock, wait=False)
    rc = second.proc.wait_exit(ERROR_TIMEOUT)
    assert rc > 0, second.proc.report(f"second ember on {first.sock}: {describe_returncode(rc)}, "
                                      "expected a non-zero exit status")
    lines = [line for line in second.proc.log_lines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ember: error: "), \
        second.proc.report("expected exactly one 'ember: error: ...' line on stderr")
    assert str(first.sock) in lines[0], second.proc.report("the error does not name the socket")
    # The first one still owns the socket and serves it.
    assert first.sock.is_socket(), f"{first.sock} was removed by the refused second ember"
    with first.client() as c:
        assert instance_info(c)["state"] == "Not started"
    assert first.proc.proc.poll() is None


def test_sigterm_exits_0_with_open_connections(api_vm):
    c = api_vm.client()
    instance_info(c)  # an idle keep-alive connection
    body = json.dumps({"vcpu_count": 2, "mem_size_mib": 256}).encode()
    with api_vm.raw_socket() as stalled:
        stalled.sendall(raw_request("PUT", "/machine-config", body)[:-5])  # a request cut short
        api_vm.proc.proc.send_signal(signal.SIGTERM)
        expect_exit(api_vm, "SIGTERM with open API connections", ERROR_TIMEOUT)


# --- booting through the API ---------------------------------------------------------------------

@pytest.mark.boot
def test_getting_started_sequence_boots_the_guest(api_vm, kernel_vmlinux, initramfs):
    c = api_vm.client()
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=2, mem_mib=256,
                      boot_args=guest_boot_args("info", end="wait"))
    expect_guest_info(api_vm.proc, vcpus=2, mem_mib=256)
    # The guest now idles: ember runs, and says so.
    info = instance_info(c)
    assert info["state"] == "Running", api_vm.proc.report(f"GET / while the guest runs: {info}")
    config = vm_config(c)
    assert config["machine-config"]["vcpu_count"] == 2 and config["machine-config"]["mem_size_mib"] == 256
    assert config["boot-source"]["kernel_image_path"] == str(kernel_vmlinux)
    api_vm.proc.proc.send_signal(signal.SIGTERM)
    expect_exit(api_vm, "SIGTERM while the guest runs")


@pytest.mark.boot
def test_getting_started_guest_reboot_exits_0(api_vm, kernel_vmlinux, initramfs):
    c = api_vm.client()
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=1, mem_mib=128,
                      boot_args=guest_boot_args("info", end="reboot"))
    expect_guest_info(api_vm.proc, vcpus=1, mem_mib=128)
    expect_exit(api_vm, "the guest rebooted")


@pytest.mark.boot
def test_getting_started_with_curl(api_vm, kernel_vmlinux, initramfs, workdir):
    """Firecracker's getting-started guide, with its curl commands."""
    if not os.access(CURL, os.X_OK):
        pytest.fail(f"{CURL} is missing (apt-get install curl)", pytrace=False)
    out = workdir / "curl-body"

    def curl(method, path, body=None):
        argv = [CURL, "--silent", "--show-error", "--max-time", str(int(REQUEST_TIMEOUT)),
                "--unix-socket", str(api_vm.sock), "-X", method, f"http://localhost{path}",
                "-H", "Accept: application/json", "-o", str(out), "-w", "%{http_code}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=2 * REQUEST_TIMEOUT)
        assert run.returncode == 0, api_vm.proc.report(f"{' '.join(argv)}: {run.stderr.strip()}")
        text = out.read_text() if out.exists() else ""
        return int(run.stdout), (json.loads(text) if text else None)

    status, body = curl("GET", "/")
    assert status == 200, (status, body)
    swagger().validate(body, "InstanceInfo", context="curl GET /")
    vcpus, mem = 2, 128
    for method, path, req in (
            ("PUT", "/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                     "initrd_path": str(initramfs),
                                     "boot_args": guest_boot_args("info", end="reboot")}),
            ("PUT", "/machine-config", {"vcpu_count": vcpus, "mem_size_mib": mem}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})):
        status, body = curl(method, path, req)
        assert status == 204, api_vm.proc.report(f"curl -X {method} {path}: HTTP {status} {body}")
    expect_guest_info(api_vm.proc, vcpus=vcpus, mem_mib=mem)
    expect_exit(api_vm, "the guest rebooted (started with curl)")


@pytest.mark.boot
def test_configuration_is_refused_after_start(api_vm, kernel_vmlinux, initramfs, workdir):
    c = api_vm.client()
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=1, mem_mib=128,
                      boot_args=guest_boot_args(end="wait"))
    assert instance_info(c)["state"] == "Running"
    before = vm_config(c)
    kernel, _ = fake_boot_files(workdir)
    for method, path, body in (
            ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256}),
            ("PATCH", "/machine-config", {"vcpu_count": 2}),
            ("PUT", "/boot-source", {"kernel_image_path": kernel}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})):
        msg = check_error(c.request(method, path, body), context=f"{method} {path} after start")
        assert msg == ERR_AFTER_START, f"{method} {path} after start: {msg!r}"
        assert_unchanged(c, before, f"{method} {path} after start")
    for method, path, body in (
            ("PUT", "/logger", {"level": "Debug"}),
            ("PUT", "/metrics", {"metrics_path": str(workdir / "m.json")}),
            ("PUT", "/mmds/config", {"network_interfaces": ["eth0"]})):
        msg = check_error(c.request(method, path, body), context=f"{method} {path} after start")
        assert msg == ERR_AFTER_START, f"{method} {path} after start: {msg!r}"
        assert_unchanged(c, before, f"{method} {path} after start")
    for method, path, body in (
            ("PUT", "/network-interfaces/eth1", {"iface_id": "eth1", "host_dev_name": "tap1"}),
            ("PUT", "/drives/d1", {"drive_id": "d1", "path_on_host": kernel,
                                   "is_root_device": False, "is_read_only": True})):
        msg = check_error(c.request(method, path, body), context=f"{method} {path} after start")
        assert msg == ERR_NO_PCI, f"{method} {path} after start: {msg!r}"
        assert_unchanged(c, before, f"{method} {path} after start")
    check_ok(c.put("/actions", {"action_type": "FlushMetrics"}), 204, None,
             "FlushMetrics after start")
    # No /mmds/config before start: no data store after it (Firecracker's
    # is the MMDS-enabled interface's).
    for method, body in (("GET", None), ("PUT", {"a": 1}), ("PATCH", {"a": 1})):
        msg = check_error(c.request(method, "/mmds", body), context=f"{method} /mmds after start")
        assert msg == "MMDS error: The MMDS data store is not initialized.", msg
    assert instance_info(c)["state"] == "Running"
    api_vm.proc.proc.send_signal(signal.SIGTERM)
    expect_exit(api_vm, "SIGTERM after refused requests")
