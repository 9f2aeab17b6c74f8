"""The API's runtime side: logger and metrics files, FlushMetrics, MMDS data
store, SendCtrlAltDel, and pause/resume while the guest prints.

Tests marked `boot` start a real guest; the others need only the ember
binary. Every response body is checked against the swagger (api_client).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done
from test_api import api_boot_sequence, vm_config

# Groups every metrics line has: Firecracker's names.
METRIC_GROUPS = ("utc_timestamp_ms", "api_server", "get_api_requests", "put_api_requests",
                 "patch_api_requests", "i8042", "latencies_us", "logger", "mmds", "uart",
                 "vcpu", "vmm", "signals", "seccomp")
# How long output must stay absent to count as stopped. A bound on a
# failure, not synchronisation: a paused guest writes nothing at all.
QUIET_WINDOW = 2.0


def metric_lines(path) -> list[dict]:
    lines = path.read_text().splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            pytest.fail(f"{path} line {n} is not JSON ({e}): {line[:200]!r}")
    return out


def flush(c) -> None:
    check_ok(c.put("/actions", {"action_type": "FlushMetrics"}), 204, None, "FlushMetrics")


# --- metrics ------------------------------------------------------------------------

def test_metrics_file_gets_firecracker_groups_and_api_counts(api_vm, workdir):
    c = api_vm.client()
    path = workdir / "metrics.json"
    check_ok(c.put("/metrics", {"metrics_path": str(path)}), 204, None, "PUT /metrics")
    check_error(c.put("/metrics", {"metrics_path": str(path)}), "Reinitialization",
                context="a second PUT /metrics")
    check_ok(c.get("/machine-config"), 200, "MachineConfiguration")
    check_error(c.put("/machine-config", {"vcpu_count": 0, "mem_size_mib": 1}), "vcpu_count")
    flush(c)
    lines = metric_lines(path)
    assert len(lines) == 1, f"one FlushMetrics, {len(lines)} lines in {path}"
    m = lines[0]
    missing = [g for g in METRIC_GROUPS if g not in m]
    assert not missing, f"metrics line lacks Firecracker's groups {missing}: {list(m)}"
    assert m["get_api_requests"]["machine_cfg_count"] == 1, m["get_api_requests"]
    assert m["put_api_requests"]["machine_cfg_count"] == 1, m["put_api_requests"]
    assert m["put_api_requests"]["machine_cfg_fails"] == 1, m["put_api_requests"]
    assert m["put_api_requests"]["metrics_count"] == 2, m["put_api_requests"]
    assert m["put_api_requests"]["metrics_fails"] == 1, m["put_api_requests"]
    startup = m["api_server"]["process_startup_time_us"]
    assert 0 < startup < 10_000_000, f"process_startup_time_us={startup}"
    # Increments are deltas since the previous flush.
    flush(c)
    lines = metric_lines(path)
    assert len(lines) == 2
    assert lines[1]["get_api_requests"]["machine_cfg_count"] == 0, lines[1]["get_api_requests"]
    assert lines[1]["put_api_requests"]["actions_count"] == 1, lines[1]["put_api_requests"]
    assert lines[1]["utc_timestamp_ms"] >= lines[0]["utc_timestamp_ms"]
    assert vm_config(c)["metrics"] == {"metrics_path": str(path)}


def test_metrics_fifo_without_reader_never_blocks(api_vm, workdir):
    """A full FIFO loses metrics lines and counts them; the API keeps answering."""
    fifo = workdir / "metrics.fifo"
    os.mkfifo(fifo)
    c = api_vm.client()
    check_ok(c.put("/metrics", {"metrics_path": str(fifo)}), 204, None, "PUT /metrics (FIFO)")
    refused = 0
    for i in range(40):  # a 64 KiB pipe holds about ten 5 KiB lines
        resp = c.put("/actions", {"action_type": "FlushMetrics"})
        if resp.status == 400:  # the line was dropped, and Ember says so at once
            check_error(resp, "full", context=f"FlushMetrics {i} into a full FIFO")
            refused += 1
        else:
            check_ok(resp, 204, None, f"FlushMetrics {i}")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = b""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        flush(c)  # this one reports the losses of the ones before
        deadline = time.monotonic() + STEP_TIMEOUT
        last = b""
        while not last.endswith(b"\n") and time.monotonic() < deadline:
            try:
                last += os.read(fd, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        os.close(fd)
    read = [json.loads(line) for line in data.splitlines() if line.strip()]
    assert 0 < len(read) < 40, f"{len(read)} whole lines in the FIFO after 40 flushes"
    final = json.loads(last)
    lost = sum(line["logger"]["missed_metrics_count"] for line in read + [final])
    assert lost == 40 - len(read) == refused, \
        f"{40 - len(read)} lines lost, {refused} refused, missed_metrics_count sums to {lost}"


# --- logger -------------------------------------------------------------------------

def test_logger_file_level_and_module(api_vm, workdir):
    c = api_vm.client()
    log = workdir / "ember.log"
    check_ok(c.put("/logger", {"log_path": str(log), "level": "Debug", "show_level": True,
                               "show_log_origin": True}), 204, None, "PUT /logger")
    check_ok(c.get("/machine-config"), 200, "MachineConfiguration")
    text = log.read_text()
    line = next((l for l in text.splitlines() if "GET /machine-config" in l), None)
    assert line, f"no log line for GET /machine-config in {log}:\n{text}"
    assert "[DEBUG]" in line and re.search(r"\[server\.c:\d+\]", line), \
        f"show_level/show_log_origin not applied: {line!r}"
    # A module filter lets only that part of Ember log.
    check_ok(c.put("/logger", {"module": "vmm"}), 204, None, "PUT /logger module")
    before = log.read_text()
    check_ok(c.get("/version"), 200)
    after = log.read_text()
    assert "GET /version" not in after[len(before):], \
        f"module \"vmm\" still logs the API server:\n{after[len(before):]}"
    cfg = vm_config(c)["logger"]
    assert cfg == {"log_path": str(log), "level": "Debug", "show_level": True,
                   "show_log_origin": True, "module": "vmm"}, cfg


def test_logger_fifo_without_reader_never_blocks(api_vm, workdir):
    fifo = workdir / "log.fifo"
    os.mkfifo(fifo)
    c = api_vm.client()
    check_ok(c.put("/logger", {"log_path": str(fifo), "level": "Debug"}), 204, None,
             "PUT /logger (FIFO)")
    # Each request logs a debug line; far more than a pipe holds.
    for _ in range(3000):
        check_ok(c.get("/version"), 200, None, "GET /version with a full log FIFO")


# --- MMDS data store ----------------------------------------------------------------

def test_mmds_put_patch_get(api_vm):
    c = api_vm.client()
    check_ok(c.get("/mmds"), 200, None, "GET /mmds before any PUT")
    check_error(c.patch("/mmds", {"a": 1}), "not initialized", context="PATCH before PUT")
    data = {"latest": {"meta-data": {"ami-id": "ami-12345678", "reservation-id": "r-1"}}}
    check_ok(c.put("/mmds", data), 204, None, "PUT /mmds")
    assert c.get("/mmds").body == data
    check_ok(c.patch("/mmds", {"latest": {"meta-data": {"reservation-id": None,
                                                        "hostname": "vm1"}}}), 204, None,
             "PATCH /mmds")
    assert c.get("/mmds").body == {"latest": {"meta-data": {"ami-id": "ami-12345678",
                                                            "hostname": "vm1"}}}


def test_mmds_size_limit(api_ember):
    vm = api_ember.start("--mmds-size-limit", "100")
    c = vm.client()
    check_ok(c.put("/mmds", {"k": "v" * 50}), 204, None, "PUT /mmds under the limit")
    resp = c.put("/mmds", {"k": "v" * 200})
    assert resp.status == 413, f"PUT /mmds over the limit: {resp.describe()}"
    resp = c.patch("/mmds", {"k2": "v" * 80})
    assert resp.status == 413, f"PATCH /mmds over the limit: {resp.describe()}"
    assert c.get("/mmds").body == {"k": "v" * 50}, "a refused write changed the store"


def test_mmds_config_needs_its_interfaces(api_vm):
    c = api_vm.client()
    check_error(c.put("/mmds/config", {"network_interfaces": ["eth0"]}), "eth0")
    check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
             204, None, "PUT /network-interfaces/eth0")
    check_ok(c.put("/mmds/config", {"network_interfaces": ["eth0"], "version": "V2",
                                    "ipv4_address": "169.254.170.2"}), 204, None,
             "PUT /mmds/config")
    cfg = vm_config(c)
    assert cfg["mmds-config"]["version"] == "V2"
    assert cfg["mmds-config"]["ipv4_address"] == "169.254.170.2"
    assert cfg["network-interfaces"] == [{"iface_id": "eth0", "host_dev_name": "tap0",
                                          "guest_mac": None, "mtu": None,
                                          "rx_rate_limiter": None, "tx_rate_limiter": None}]


# Firecracker's GET /vm/config: every section, null where not configured.
FIRECRACKER_VM_CONFIG_KEYS = {"balloon", "drives", "boot-source", "cpu-config", "logger",
                              "machine-config", "metrics", "mmds-config", "network-interfaces",
                              "vsock", "entropy", "pmem", "memory-hotplug"}


def test_vm_config_has_firecracker_shape_and_loads_back(api_ember, workdir, kernel_vmlinux,
                                                       initramfs):
    """GET /vm/config has Firecracker's keys and nulls, and fed back as a config
    file it gives the same VM (its own GET /vm/config is the same)."""
    first = api_ember.start()
    c = first.client()
    disk = workdir / "data.img"
    disk.write_bytes(b"\0" * (1 << 20))
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                    "initrd_path": str(initramfs),
                                    "boot_args": guest_boot_args(end="wait")}), 204, None,
             "PUT /boot-source")
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 128}), 204, None,
             "PUT /machine-config")
    check_ok(c.put("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                    "is_root_device": False, "is_read_only": True}),
             204, None, "PUT /drives/data")
    check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap7",
                                                "guest_mac": "06:00:ac:10:00:02"}),
             204, None, "PUT /network-interfaces/eth0")
    cfg = vm_config(c)
    assert set(cfg) == FIRECRACKER_VM_CONFIG_KEYS, sorted(cfg)
    for key in ("balloon", "cpu-config", "logger", "metrics", "mmds-config", "vsock",
                "entropy", "memory-hotplug"):
        assert cfg[key] is None, (key, cfg[key])
    assert cfg["pmem"] == []
    drive = cfg["drives"][0]
    for key in ("partuuid", "rate_limiter", "socket"):
        assert key in drive and drive[key] is None, drive
    assert cfg["network-interfaces"][0]["rx_rate_limiter"] is None
    # The same VM from the file: it starts, and describes itself the same.
    (workdir / "vm.json").write_text(json.dumps(cfg))
    second = api_ember.start("--config-file", str(workdir / "vm.json"),
                             sock=workdir / "api2.sock")
    again = vm_config(second.client())
    assert again == cfg, (cfg, again)
    for vm in (first, second):
        vm.proc.proc.terminate()
        rc = vm.proc.wait_exit(EXIT_TIMEOUT)
        assert rc == 0, vm.proc.report(f"SIGTERM: {describe_returncode(rc)}")


def test_config_file_sections(api_ember, workdir, kernel_vmlinux, initramfs):
    """logger, metrics, mmds-config and network-interfaces in --config-file."""
    log, metrics = workdir / "cf.log", workdir / "cf-metrics.json"
    config = {
        "boot-source": {"kernel_image_path": str(kernel_vmlinux), "initrd_path": str(initramfs),
                        "boot_args": guest_boot_args(end="wait")},
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
        "logger": {"log_path": str(log), "level": "Info"},
        "metrics": {"metrics_path": str(metrics)},
        "network-interfaces": [{"iface_id": "net1", "host_dev_name": "tap9"}],
        "mmds-config": {"network_interfaces": ["net1"]},
    }
    (workdir / "vm.json").write_text(json.dumps(config))
    vm = api_ember.start("--config-file", str(workdir / "vm.json"))
    c = vm.client()
    cfg = vm_config(c)
    assert cfg["logger"]["log_path"] == str(log) and cfg["metrics"]["metrics_path"] == str(metrics)
    assert cfg["mmds-config"]["network_interfaces"] == ["net1"]
    # InstanceStart from the file wrote the first metrics line.
    assert len(metric_lines(metrics)) >= 1
    vm.proc.proc.terminate()
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, vm.proc.report(f"SIGTERM: {describe_returncode(rc)}")
    assert "exiting: received" in log.read_text(), log.read_text()


# --- with a guest -------------------------------------------------------------------

@pytest.mark.boot
def test_send_ctrl_alt_del_reboots_the_guest(api_ember, kernel_vmlinux, initramfs):
    vm = api_ember.start("--level", "Info")
    c = vm.client()
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=1, mem_mib=128,
                      boot_args=guest_boot_args("info", end="wait"))
    vm.proc.expect(hook_done("info"), BOOT_TIMEOUT)
    # The guest now waits forever; only the key press can end it.
    check_ok(c.put("/actions", {"action_type": "SendCtrlAltDel"}), 204, None, "SendCtrlAltDel")
    rc = vm.proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, vm.proc.report(f"after SendCtrlAltDel: ember {describe_returncode(rc)}")
    assert any("guest reset" in l for l in vm.proc.log_lines()), \
        vm.proc.report("ember exited, but not because the guest reset")


@pytest.mark.boot
def test_pause_and_resume_while_the_guest_prints(api_vm, kernel_vmlinux, initramfs, workdir):
    c = api_vm.client()
    metrics = workdir / "metrics.json"
    check_ok(c.put("/metrics", {"metrics_path": str(metrics)}), 204, None, "PUT /metrics")
    api_boot_sequence(c, kernel_vmlinux, initramfs, vcpus=2, mem_mib=128,
                      boot_args=guest_boot_args("ticker", end="wait"))
    proc = api_vm.proc
    proc.expect(r"EMBER-TICK 5\b", BOOT_TIMEOUT)
    check_ok(c.patch("/vm", {"state": "Paused"}), 204, None, "PATCH /vm Paused")
    assert c.get("/").body["state"] == "Paused"

    def ticks() -> list[int]:
        return [int(m.group(1)) for l in proc.console_lines()
                if (m := re.fullmatch(r"EMBER-TICK (\d+)", l))]
    # Whatever was written before the pause drains out of the pipe; after
    # that, nothing more may come while paused.
    time.sleep(QUIET_WINDOW)
    settled = ticks()
    time.sleep(QUIET_WINDOW)
    assert ticks() == settled, proc.report("the guest kept printing while paused")
    check_ok(c.patch("/vm", {"state": "Resumed"}), 204, None, "PATCH /vm Resumed")
    assert c.get("/").body["state"] == "Running"
    proc.expect(rf"EMBER-TICK {settled[-1] + 3}\b", STEP_TIMEOUT)
    got = ticks()
    assert got == list(range(got[0], got[0] + len(got))), "ticks lost or repeated across pause"
    flush(c)
    m = metric_lines(metrics)[-1]
    assert m["uart"]["write_count"] > 0 and m["vcpu"]["exit_io_out"] > 0, \
        f"guest console output not counted: uart={m['uart']} vcpu={m['vcpu']}"
    assert m["latencies_us"]["vmm_pause_vm"] > 0 and m["latencies_us"]["vmm_resume_vm"] > 0, \
        f"pause/resume latencies not recorded: {m['latencies_us']}"
