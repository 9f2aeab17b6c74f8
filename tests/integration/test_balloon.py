"""virtio-balloon (Firecracker's balloon device, docs/ballooning.md there):
the API's rules and messages, and real guests that dirty and free memory
while the host inflates and deflates the balloon, polls statistics and has
free pages hinted and reported. What the host got back is measured from
Ember's own RSS (RssAnon in /proc/<pid>/status: guest memory is anonymous).

The guest dirties memory in a ramfs (no size limit, never reclaimed), so
its free memory is memory the host has backed, then frees it; the steps
are synchronised over the serial console (the guest reads a line)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, DEBIAN_BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, \
    describe_returncode, guest_boot_args, hook_done

MIB = 1 << 20
BEFORE_START = "The requested operation is not supported before starting the microVM."
AFTER_START = "The requested operation is not supported after starting the microVM."

# Guest side helpers, prepended to every script: a ramfs to dirty, and
# free memory in MiB.
GUEST_LIB = r"""
mkdir -p /r && mount -t ramfs ramfs /r || exit 3
free_mib() { awk '/^MemFree:/ { print int($2 / 1024) }' /proc/meminfo; }
dirty() { dd if=/dev/zero of=/r/big bs=1M count=$1 2>/dev/null; }
wait_host() { IFS= read -r _ || exit 4; }
"""


def script_args(script: str, extra: str = "") -> str:
    code = base64.b64encode((GUEST_LIB + script).encode()).decode()
    return guest_boot_args("script", extra=f"{extra} ember.script={code}".strip())


def rss_anon(proc) -> int:
    """Ember's anonymous resident memory, in bytes."""
    for line in open(f"/proc/{proc.proc.pid}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/<pid>/status")


def wait_until(what: str, fn, timeout: float, proc=None, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
    raise AssertionError(proc.report(msg) if proc else msg)


def start(c, kernel, initrd, boot_args, balloon: dict | None, workdir, mem_mib=256):
    check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel), "initrd_path": str(initrd),
                                    "boot_args": boot_args}), 204, None, "PUT /boot-source")
    check_ok(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": mem_mib}), 204, None,
             "PUT /machine-config")
    check_ok(c.put("/metrics", {"metrics_path": str(workdir / "metrics.json")}), 204, None,
             "PUT /metrics")
    if balloon is not None:
        check_ok(c.put("/balloon", balloon), 204, None, "PUT /balloon")
    check_ok(c.put("/actions", {"action_type": "InstanceStart"}, timeout=STEP_TIMEOUT), 204,
             None, "PUT /actions InstanceStart")


def balloon_metrics(c, workdir) -> dict:
    """The balloon group's counters summed over every line written so far
    (each line holds the deltas since the one before)."""
    check_ok(c.put("/actions", {"action_type": "FlushMetrics"}), 204, None, "FlushMetrics")
    total: dict = {}
    for line in (workdir / "metrics.json").read_text().splitlines():
        for k, v in json.loads(line).get("balloon", {}).items():
            total[k] = total.get(k, 0) + v
    return total


def stats(c) -> dict:
    return check_ok(c.get("/balloon/statistics"), 200, "BalloonStats", "GET /balloon/statistics")


def patch_target(c, mib: int):
    check_ok(c.patch("/balloon", {"amount_mib": mib}), 204, None, f"PATCH /balloon {mib} MiB")


def wait_actual(c, proc, mib: int, timeout: float):
    """Until the driver says it holds mib MiB (it writes `actual` once the
    device has taken each batch, so the host has them by then)."""
    return wait_until(f"balloon actual_mib == {mib}",
                      lambda: stats(c)["actual_mib"] == mib and stats(c), timeout, proc)


def finish(proc, timeout=EXIT_TIMEOUT):
    proc.send("end\n")
    m = proc.expect(hook_done("script"), STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's script failed: {m.group(0)}")
    rc = proc.wait_exit(timeout)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")


# --- the API -------------------------------------------------------------------------

def test_balloon_api_before_boot(api_vm, workdir):
    c = api_vm.client()
    check_error(c.get("/balloon"), "Balloon config error: No balloon device found.")
    assert c.get("/vm/config").body["balloon"] is None
    check_error(c.put("/balloon", {"amount_mib": 1}), "deflate_on_oom", context="missing field")
    check_error(c.put("/balloon", {"amount_mib": 1, "deflate_on_oom": True, "x": 1}), "x",
                context="unknown field")
    check_error(c.put("/balloon", {"amount_mib": -1, "deflate_on_oom": True}), "amount_mib")
    check_error(c.put("/balloon", {"amount_mib": 1, "deflate_on_oom": True,
                                   "stats_polling_interval_s": 70000}), "stats_polling_interval_s")
    # 128 MiB of RAM (the default machine): no bigger balloon.
    check_error(c.put("/balloon", {"amount_mib": 129, "deflate_on_oom": False}),
                "Balloon config error: Amount of pages requested is too large.")
    body = {"amount_mib": 64, "deflate_on_oom": True, "stats_polling_interval_s": 2,
            "free_page_hinting": True, "free_page_reporting": False}
    check_ok(c.put("/balloon", body), 204, None, "PUT /balloon")
    assert check_ok(c.get("/balloon"), 200, "Balloon", "GET /balloon") == body
    assert c.get("/vm/config").body["balloon"] == body
    # The machine cannot shrink below the balloon, as Firecracker.
    check_error(c.patch("/machine-config", {"mem_size_mib": 32}),
                "The memory size (MiB) is smaller than the previously set balloon device "
                "target size.")
    check_error(c.put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 32}),
                "smaller than the previously set balloon")
    assert c.get("/machine-config").body["mem_size_mib"] == 128
    # Only after boot.
    for method, path, b in (("PATCH", "/balloon", {"amount_mib": 1}),
                            ("GET", "/balloon/statistics", None),
                            ("PATCH", "/balloon/statistics", {"stats_polling_interval_s": 1}),
                            ("PATCH", "/balloon/hinting/start", {}),
                            ("PATCH", "/balloon/hinting/stop", None),
                            ("GET", "/balloon/hinting/status", None)):
        check_error(c.request(method, path, b), BEFORE_START, context=f"{method} {path}")
    check_error(c.get("/balloon/nope"), "Invalid request method and/or path")
    # A second PUT replaces the device's config.
    check_ok(c.put("/balloon", {"amount_mib": 0, "deflate_on_oom": False}), 204, None, "PUT again")
    assert c.get("/balloon").body == {"amount_mib": 0, "deflate_on_oom": False,
                                      "stats_polling_interval_s": 0, "free_page_hinting": False,
                                      "free_page_reporting": False}


@pytest.mark.boot
def test_config_file_balloon_section(ember, kernel_vmlinux, initramfs, workdir):
    """The config file's "balloon" section makes the device; the guest's
    driver binds to it and takes the configured target at boot."""
    script = ("echo EMBER-DRIVERS=$(ls /sys/bus/virtio/drivers | tr '\\n' ,); "
              "n=0; while [ $n -lt 600 ]; do "
              "  t=$(cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features 2>/dev/null); "
              "  [ -n \"$t\" ] && break; sleep 0.1; n=$((n+1)); done; "
              "echo EMBER-FEATURES=$t")
    config = {"boot-source": {"kernel_image_path": str(kernel_vmlinux),
                              "initrd_path": str(initramfs),
                              "boot_args": script_args(script)},
              "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
              "balloon": {"amount_mib": 8, "deflate_on_oom": True,
                          "stats_polling_interval_s": 1}}
    proc = ember.start(config=config)
    proc.expect(hook_done("script"), BOOT_TIMEOUT + STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    assert "virtio_balloon" in proc.value("EMBER-DRIVERS").split(","), proc.report("no driver")
    # Feature bits as the guest sees them: 1 STATS_VQ, 2 DEFLATE_ON_OOM.
    features = proc.value("EMBER-FEATURES")
    assert features[1:3] == "11" and features[3] == "0", proc.report(f"features {features}")


# --- real guests ---------------------------------------------------------------------

INFLATE_MIB = 128


@pytest.mark.boot
def test_inflate_returns_memory_and_deflate_gives_it_back(api_vm, kernel_vmlinux, initramfs,
                                                          workdir):
    """The guest dirties all but 16 MiB of its free memory and frees it;
    inflating the balloon by 128 MiB must lower Ember's RSS by at least 80 %
    of that; deflating lets the guest dirty as much again."""
    script = """
n=$(( $(free_mib) - 16 ))
dirty $n || exit 5
echo EMBER-DIRTIED=$n
rm /r/big
echo EMBER-FREED
wait_host
dirty $n && echo EMBER-AGAIN=ok || echo EMBER-AGAIN=failed
rm /r/big
wait_host
"""
    c = api_vm.client()
    proc = api_vm.proc
    start(c, kernel_vmlinux, initramfs, script_args(script),
          {"amount_mib": 0, "deflate_on_oom": False, "stats_polling_interval_s": 1}, workdir)
    proc.expect(r"EMBER-FREED", BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
    dirtied = int(proc.value("EMBER-DIRTIED"))
    assert dirtied > INFLATE_MIB, proc.report(f"the guest dirtied only {dirtied} MiB")
    before = rss_anon(proc)
    patch_target(c, INFLATE_MIB)
    s = wait_actual(c, proc, INFLATE_MIB, 2 * STEP_TIMEOUT)
    assert s["target_mib"] == INFLATE_MIB and s["target_pages"] == INFLATE_MIB * 256, s
    after = rss_anon(proc)
    returned = before - after
    print(f"RSS before inflating {before / MIB:.1f} MiB, after {after / MIB:.1f} MiB: "
          f"{returned / MIB:.1f} MiB of {INFLATE_MIB} MiB returned")
    assert returned >= 0.8 * INFLATE_MIB * MIB, proc.report(
        f"inflating {INFLATE_MIB} MiB returned {returned / MIB:.1f} MiB to the host "
        f"(RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB)")
    m = balloon_metrics(c, workdir)
    assert m["inflated_pages"] >= INFLATE_MIB * 256 and m["inflate_count"] > 0, m
    assert m["bad_pfn_count"] == 0 and m["duplicate_pfn_count"] == 0, m
    assert c.get("/vm/config").body["balloon"]["amount_mib"] == INFLATE_MIB
    # Too much: the guest's RAM is 256 MiB.
    check_error(c.patch("/balloon", {"amount_mib": 257}),
                "Balloon update error: Balloon: Requested memory should be less than")
    check_error(c.put("/balloon", {"amount_mib": 1, "deflate_on_oom": False}), AFTER_START)
    # Deflate: the guest gets it all back.
    patch_target(c, 0)
    wait_actual(c, proc, 0, 2 * STEP_TIMEOUT)
    proc.send("go\n")
    assert proc.expect(r"EMBER-AGAIN=(\w+)", 2 * STEP_TIMEOUT).group(1) == "ok", \
        proc.report("the guest could not dirty its memory again after the deflate")
    m = balloon_metrics(c, workdir)
    assert m["deflated_pages"] >= INFLATE_MIB * 256 and m["deflate_count"] > 0, m
    finish(proc)


@pytest.mark.boot
def test_statistics_follow_the_guest(api_vm, kernel_vmlinux, initramfs, workdir):
    """With a 1 s interval, free_memory follows the guest dirtying 64 MiB;
    the interval can change, statistics cannot be switched off."""
    script = """
echo EMBER-READY
wait_host
dirty 64 || exit 5
echo EMBER-DIRTIED
wait_host
"""
    c = api_vm.client()
    proc = api_vm.proc
    start(c, kernel_vmlinux, initramfs, script_args(script),
          {"amount_mib": 0, "deflate_on_oom": False, "stats_polling_interval_s": 1}, workdir)
    proc.expect(r"EMBER-READY", BOOT_TIMEOUT + STEP_TIMEOUT)
    first = wait_until("statistics from the guest",
                       lambda: "free_memory" in stats(c) and stats(c), STEP_TIMEOUT, proc)
    # Linux always sends these; fault and swap counts need VM_EVENT_COUNTERS.
    for key in ("total_memory", "available_memory", "disk_caches"):
        assert key in first, first
    assert 200 * MIB < first["total_memory"] <= 256 * MIB, first
    proc.send("go\n")
    proc.expect(r"EMBER-DIRTIED", STEP_TIMEOUT)
    now = wait_until("free_memory 48 MiB lower",
                     lambda: (s := stats(c))["free_memory"] <= first["free_memory"] - 48 * MIB
                     and s, 2 * STEP_TIMEOUT, proc)
    print(f"free_memory {first['free_memory'] / MIB:.1f} -> {now['free_memory'] / MIB:.1f} MiB")
    check_ok(c.patch("/balloon/statistics", {"stats_polling_interval_s": 2}), 204, None,
             "PATCH /balloon/statistics")
    assert c.get("/balloon").body["stats_polling_interval_s"] == 2
    check_error(c.patch("/balloon/statistics", {"stats_polling_interval_s": 0}),
                "Balloon update error: Balloon: Statistics cannot be enabled/disabled after "
                "activation.")
    m = balloon_metrics(c, workdir)
    assert m["stats_updates_count"] >= 2 and m["stats_update_fails"] == 0, m
    check_error(c.get("/balloon/hinting/status"), "hinting when not enabled")
    finish(proc)


@pytest.mark.boot
def test_deflate_on_oom_gives_memory_back_under_pressure(api_vm, kernel_vmlinux, initramfs,
                                                        workdir):
    """A balloon holding most of the guest's memory, deflate_on_oom: a guest
    that needs more memory than is left deflates it and gets it."""
    script = """
echo EMBER-READY
wait_host
n=$(( $(free_mib) + 48 ))
dirty $n && echo EMBER-OOM=ok || echo EMBER-OOM=failed
rm /r/big
wait_host
"""
    c = api_vm.client()
    proc = api_vm.proc
    start(c, kernel_vmlinux, initramfs, script_args(script),
          {"amount_mib": 0, "deflate_on_oom": True, "stats_polling_interval_s": 1}, workdir)
    proc.expect(r"EMBER-READY", BOOT_TIMEOUT + STEP_TIMEOUT)
    patch_target(c, 160)
    wait_actual(c, proc, 160, 2 * STEP_TIMEOUT)
    proc.send("go\n")
    assert proc.expect(r"EMBER-OOM=(\w+)", 4 * STEP_TIMEOUT).group(1) == "ok", \
        proc.report("the guest could not take memory back from the balloon")
    s = stats(c)
    assert s["actual_mib"] < 160, s
    assert s["target_mib"] == 160, s
    m = balloon_metrics(c, workdir)
    assert m["deflated_pages"] > 0, m
    finish(proc)


def dirty_free_script() -> str:
    return """
n=$(( $(free_mib) - 24 ))
dirty $n || exit 5
echo EMBER-DIRTIED=$n
rm /r/big
echo EMBER-FREED
wait_host
"""


@pytest.mark.boot
def test_free_page_hinting_returns_free_memory(api_vm, kernel_vmlinux, initramfs, workdir):
    c = api_vm.client()
    proc = api_vm.proc
    start(c, kernel_vmlinux, initramfs, script_args(dirty_free_script()),
          {"amount_mib": 0, "deflate_on_oom": False, "free_page_hinting": True}, workdir)
    proc.expect(r"EMBER-FREED", BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
    freed = int(proc.value("EMBER-DIRTIED")) * MIB
    status = check_ok(c.get("/balloon/hinting/status"), 200, "BalloonHintingStatus", "status")
    assert status["host_cmd"] == 0, status
    before = rss_anon(proc)
    check_ok(c.patch("/balloon/hinting/start", {}), 204, None, "PATCH /balloon/hinting/start")
    # The guest hints its free pages, then says STOP; Ember acknowledges
    # with DONE (acknowledge_on_stop defaults to true).
    done = wait_until("the hinting run to end",
                      lambda: (s := c.get("/balloon/hinting/status").body)["host_cmd"] == 1
                      and s, 2 * STEP_TIMEOUT, proc)
    assert done["guest_cmd"] == 0, done
    after = rss_anon(proc)
    m = balloon_metrics(c, workdir)
    print(f"hinting: {m['free_page_hint_freed'] / MIB:.1f} MiB hinted, RSS "
          f"{before / MIB:.1f} -> {after / MIB:.1f} MiB")
    assert m["free_page_hint_freed"] >= freed // 2, m
    assert before - after >= freed // 2, proc.report(
        f"hinting returned {(before - after) / MIB:.1f} MiB of {freed / MIB:.0f} MiB freed")
    check_ok(c.patch("/balloon/hinting/stop"), 204, None, "PATCH /balloon/hinting/stop")
    finish(proc)


@pytest.mark.boot
def test_free_page_reporting_returns_free_memory(api_vm, kernel_vmlinux, initramfs, workdir):
    c = api_vm.client()
    proc = api_vm.proc
    start(c, kernel_vmlinux, initramfs, script_args(dirty_free_script()),
          {"amount_mib": 0, "deflate_on_oom": False, "free_page_reporting": True}, workdir)
    proc.expect(r"EMBER-DIRTIED", BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
    freed = int(proc.value("EMBER-DIRTIED")) * MIB
    # The guest reports free 2 MiB blocks a couple of seconds after they
    # are freed, on its own.
    wait_until("reported pages", lambda: balloon_metrics(c, workdir)["free_page_report_freed"]
               >= freed // 2, 3 * STEP_TIMEOUT, proc, interval=1)
    m = balloon_metrics(c, workdir)
    assert m["free_page_report_fails"] == 0, m
    print(f"reporting: {m['free_page_report_freed'] / MIB:.1f} MiB reported, RSS now "
          f"{rss_anon(proc) / MIB:.1f} MiB")
    assert rss_anon(proc) < 256 * MIB - freed // 2, proc.report("RSS did not drop")
    finish(proc)


@pytest.mark.boot
def test_debian_kernel_virtio_balloon_module(api_vm, debian_vmlinuz, debian_initramfs, workdir):
    """Debian's stock kernel, its virtio_balloon module loaded by the
    initramfs: the driver binds and an inflation returns memory."""
    script = """
echo EMBER-MODULES=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ,)
""" + dirty_free_script() + "wait_host\n"
    c = api_vm.client()
    proc = api_vm.proc
    start(c, debian_vmlinuz, debian_initramfs, script_args(script, "i8042.noaux"),
          {"amount_mib": 0, "deflate_on_oom": False, "stats_polling_interval_s": 1}, workdir)
    proc.expect(r"EMBER-FREED", DEBIAN_BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
    modules = next((line.split("=", 1)[1] for line in proc.console_lines()
                    if line.startswith("EMBER-MODULES=")), "")
    assert "virtio_balloon" in modules.split(","), proc.report("no virtio_balloon module")
    before = rss_anon(proc)
    patch_target(c, 64)
    wait_actual(c, proc, 64, 2 * STEP_TIMEOUT)
    returned = before - rss_anon(proc)
    assert returned >= 0.8 * 64 * MIB, proc.report(f"returned {returned / MIB:.1f} of 64 MiB")
    patch_target(c, 0)
    wait_actual(c, proc, 0, 2 * STEP_TIMEOUT)
    proc.send("go\n")
    finish(proc)


# --- a hostile guest -----------------------------------------------------------------

BALLOON_BASE = 0xC0001000  # the VM's only virtio device: the first window
EVIL_EXPECT = {  # scenario -> what the victim page must read
    "pfn-outside": "kept", "deflate-never-inflated": "kept", "pfn-duplicate": "discarded",
    "inflate-again": "discarded", "deflate-victim": "discarded", "deflate-twice": "discarded",
    "len-odd": "discarded", "len-huge": "discarded", "writable": "discarded",
    "addr-outside": "discarded", "flood": "discarded",
}


@pytest.mark.boot
def test_hostile_driver_page_lists(ember, kernel_vmlinux, initramfs, workdir):
    """balloon-evil (tools/guest/evil/balloon-evil.c) takes the device from
    virtio_balloon and sends page numbers past RAM, in the MMIO gap, twice
    over, deflated without inflating, and buffers of the wrong shape: every
    one is answered, refused and counted, its own page given back to the host
    really reads zeros, and the device works for virtio_balloon afterwards."""
    script = (f"balloon-evil 0x{BALLOON_BASE:x} || exit 9; "
              "n=0; while [ ! -e /sys/bus/virtio/drivers/virtio_balloon/virtio0 ] "
              "&& [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; "
              "echo EMBER-REBOUND=$(ls /sys/bus/virtio/drivers/virtio_balloon | grep -c virtio)")
    metrics = workdir / "metrics.json"
    config = {"boot-source": {"kernel_image_path": str(kernel_vmlinux),
                              "initrd_path": str(initramfs),
                              "boot_args": guest_boot_args(
                                  "script", extra="ember.script="
                                  + base64.b64encode(script.encode()).decode())},
              "machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
              "balloon": {"amount_mib": 0, "deflate_on_oom": False},
              "metrics": {"metrics_path": str(metrics)}}
    proc = ember.start(config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
    assert m.group(1) == "0", proc.report(f"the guest's script failed: {m.group(0)}")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    seen = {}
    for line in proc.console_lines():
        if line.startswith("EMBER-EVIL ") and " result=" in line:
            name = line.split()[1]
            seen[name] = dict(kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)
    problems = [f"{name}: {seen.get(name)}" for name, victim in EVIL_EXPECT.items()
                if seen.get(name, {}).get("result") != "completed"
                or seen[name].get("len") != "0" or seen[name].get("victim") != victim]
    assert not problems, proc.report("scenarios answered wrongly:\n" + "\n".join(problems))
    assert proc.value("EMBER-REBOUND") == "1", proc.report("virtio_balloon did not rebind")
    total: dict = {}
    for line in metrics.read_text().splitlines():
        for k, v in json.loads(line).get("balloon", {}).items():
            total[k] = total.get(k, 0) + v
    # 4 bad page numbers, then a ring of 16 lists of 256; 4 duplicates; 4
    # buffers of a bad shape (one refused by the queue itself).
    assert total["bad_pfn_count"] == 4 + 16 * 256, total
    assert total["duplicate_pfn_count"] == 4, total
    assert total["event_fails"] == 4, total
    assert total["inflated_pages"] == 1 and total["deflated_pages"] == 1, total
