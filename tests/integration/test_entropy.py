"""virtio-rng (Firecracker's entropy device): PUT /entropy and the config
file's "entropy" section, the guest's /dev/hwrng, the rate limiter."""

from __future__ import annotations

import base64
import json

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, describe_returncode, \
    guest_boot_args, hook_done, vm_config


def script_args(script: str, end="reboot") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", end=end, extra=f"ember.script={code}")


def test_put_entropy_before_boot_only_and_in_vm_config(api_vm):
    c = api_vm.client()
    assert c.get("/vm/config").body["entropy"] is None
    limiter = {"bandwidth": {"size": 1000, "one_time_burst": 0, "refill_time": 100}}
    check_ok(c.put("/entropy", {"rate_limiter": limiter}), 204, None, "PUT /entropy")
    got = check_ok(c.get("/vm/config"), 200, "FullVmConfiguration", "GET /vm/config")
    assert got["entropy"]["rate_limiter"]["bandwidth"]["size"] == 1000, got["entropy"]
    # A second PUT replaces it.
    check_ok(c.put("/entropy", {}), 204, None, "PUT /entropy again")
    assert c.get("/vm/config").body["entropy"] == {"rate_limiter": None}
    check_error(c.put("/entropy", {"rate": 1}), "rate", context="unknown field")
    check_error(c.put("/entropy", {"rate_limiter": {"ops": {"size": -1, "refill_time": 1}}}),
                "size", context="bad limiter")
    assert c.get("/vm/config").body["entropy"] == {"rate_limiter": None}
    check_error(c.get("/entropy"), "Invalid request", context="GET /entropy")


@pytest.mark.boot
def test_guest_reads_hwrng(ember, kernel_vmlinux, initramfs, workdir):
    script = ("echo EMBER-RNG=$(cat /sys/class/misc/hw_random/rng_current); "
              "echo EMBER-A=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -tx1 "
              "| tr -d ' \\n'); "
              "echo EMBER-B=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | od -An -tx1 "
              "| tr -d ' \\n')")
    metrics = workdir / "metrics.json"
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["entropy"] = {}
    config["metrics"] = {"metrics_path": str(metrics)}
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    assert proc.value("EMBER-RNG").startswith("virtio_rng"), proc.report("no virtio-rng")
    a, b = proc.value("EMBER-A"), proc.value("EMBER-B")
    assert len(a) == len(b) == 128 and a != b and a != "0" * 128, proc.report("hwrng bytes")
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    given = sum(line["entropy"]["entropy_bytes"] for line in lines)
    assert given >= 128, f"entropy_bytes {given}: {[line['entropy'] for line in lines]}"
    assert all("entropy_rng" not in line for line in lines), "one device: one group"


@pytest.mark.boot
def test_rate_limiter_bounds_bytes_per_second(ember, kernel_vmlinux, initramfs):
    """20000 bytes/s (2000 every 100 ms): reading 100000 bytes takes about
    4.9 s after the first full bucket. The guest times it from /proc/uptime;
    the kernel's own hwrng reader may take some of the budget too, so only
    the upper bound is tight (10 %), the lower one a sanity check."""
    size, rate = 100_000, 20_000
    script = ("t0=$(cut -d' ' -f1 /proc/uptime); "
              f"n=$(dd if=/dev/hwrng bs=1000 count={size // 1000} iflag=fullblock 2>/dev/null "
              "| wc -c); t1=$(cut -d' ' -f1 /proc/uptime); "
              "echo EMBER-N=$n; echo EMBER-T0=$t0; echo EMBER-T1=$t1")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["entropy"] = {"rate_limiter": {"bandwidth": {"size": 2000, "refill_time": 100}}}
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + 3 * STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    n = int(proc.value("EMBER-N"))
    seconds = float(proc.value("EMBER-T1")) - float(proc.value("EMBER-T0"))
    assert n == size, proc.report(f"read {n} bytes")
    per_second = (n - 2000) / seconds  # the first bucket is there at once
    assert per_second <= rate * 1.1, proc.report(f"{per_second:.0f} B/s over the {rate} limit")
    assert per_second >= rate * 0.5, proc.report(f"{per_second:.0f} B/s, limit {rate}")
