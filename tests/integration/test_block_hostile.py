"""A hostile guest driving virtio-block: descriptor loops, chains longer
than the queue, buffers outside guest memory, lengths that wrap, wrong
direction flags, unknown request types, sectors past the end, garbage ring
indices and rings outside memory.

One boot runs every scenario on two drives (Sync and Async engines) with
`virtio-evil` (tools/guest/evil/virtio-evil.c): it unbinds virtio_blk from
the device, drives the registers itself through /dev/mem with its rings in
its own locked pages, and prints one `EMBER-EVIL <scenario> result=...` line
per request. Then virtio_blk gets the device back and reads it, and the
guest reboots. The expected answers are docs/block.md's and docs/virtio.md's:
a broken chain comes back with used length 0 and no status, a request that
parses but is wrong gets IOERR or UNSUPP, a broken ring or a refused queue
sets DEVICE_NEEDS_RESET. Ember must keep running, serve good requests
afterwards, leave the disk files alone (nothing here is a valid write) and
exit 0 when the guest reboots.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import time
import zlib
from dataclasses import dataclass, field

import pytest

from ember_harness import (BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, EmberLauncher,
                           describe_returncode, guest_boot_args, hook_done, vm_config)

pytestmark = pytest.mark.boot

SECTOR = 512
READ_SECTOR = 1       # virtio-evil's valid reads start here
CHAIN_MAX_SECTORS = 126  # queue size 128, minus header and status
OK, IOERR, UNSUPP = 0, 1, 2
NO_STATUS = 255       # the fill byte: the device wrote no status

# What each scenario must get: ("completed", status, used length, data),
# ("needs-reset",) or ("reset",) (see reset-in-flight). data: None (no data
# buffer), "untouched" (the device must not have written it), or "sectors"
# (the disk's sectors, checked by CRC).
CHAIN = ("completed", NO_STATUS, 0, None)          # broken chain: len 0, no status
CHAIN_DATA = ("completed", NO_STATUS, 0, "untouched")
RESET = ("needs-reset",)
EXPECT = {
    "read": ("completed", OK, SECTOR + 1, "sectors"),
    "chain-max": ("completed", OK, CHAIN_MAX_SECTORS * SECTOR + 1, "sectors"),
    "chain-long": CHAIN_DATA,
    "loop": CHAIN_DATA,
    "loop-self": CHAIN,
    "loop-indirect": CHAIN_DATA,
    "next-range": CHAIN_DATA,
    "addr-4g": CHAIN,
    "addr-far": CHAIN,
    "addr-edge": CHAIN,
    "addr-mmio": CHAIN,
    "len-wrap": CHAIN,
    "len-huge": CHAIN,
    "len-sum": CHAIN,
    "hdr-write": ("completed", IOERR, 1, "untouched"),
    "data-ro": ("completed", IOERR, 1, "untouched"),
    "write-data-w": ("completed", IOERR, 1, "untouched"),
    "order": CHAIN,
    "no-status": CHAIN,
    "status-in-data": ("completed", IOERR, 1, None),
    "bad-type": ("completed", UNSUPP, 1, "untouched"),
    "past-end": ("completed", IOERR, 1, "untouched"),
    "past-end-partial": ("completed", IOERR, 1, "untouched"),
    "sector-wrap": ("completed", IOERR, 1, "untouched"),
    "write-past-end": ("completed", IOERR, 1, "untouched"),
    "nested-indirect": CHAIN_DATA,
    "indirect-next": CHAIN_DATA,
    "indirect-len": CHAIN_DATA,
    "indirect-far": CHAIN_DATA,
    "indirect-next-range": CHAIN_DATA,
    "odd-len": ("completed", IOERR, 1, "untouched"),
    "get-id-short": ("completed", IOERR, 1, "untouched"),
    "too-many-segs": ("completed", IOERR, 1, "untouched"),
    # Reset right after the notify: afterwards nothing may write the buffers
    # or the used ring (the read itself may or may not have happened).
    "reset-in-flight": ("reset",),
    "avail-jump": RESET,
    "bad-head": RESET,
    "ring-outside": RESET,
    "ring-edge": RESET,
    "ring-size": RESET,
    "ring-misaligned": RESET,
    "queue-not-ready": RESET,
}
# Known Ember bugs: scenario -> reason (each becomes a strict xfail).
KNOWN_BUGS: dict[str, str] = {}

# "read" runs first and again last: the control before and after.
SEQUENCE = list(EXPECT) + ["read"]
ENGINES = {"Sync": 0xC0001000, "Async": 0xC0002000}   # drive i: 0xc0001000 + i * 4 KiB
DISK_BYTES = {"Sync": 1024 * 1024, "Async": 1536 * 1024}
CHECK_BYTES = 64 * 1024   # what virtio_blk reads back after getting the device again

# Repeated by a guest that wants to fill the host's log: Ember logs the
# first of each kind of guest mistake and only counts the rest.
FLOOD_SCENARIOS = ["ring-size", "queue-not-ready", "bad-type", "loop", "avail-jump"]
FLOOD_ROUNDS = 6
# Ember's log line: "<time> [<instance>:<thread>] message".
LOG_MESSAGE = re.compile(r"^\S+ \[[^\]]*\] (.*)$")

LINE = re.compile(r"EMBER-EVIL (\S+) result=(\S+)(.*) base=(0x[0-9a-f]+)")


@dataclass
class Outcome:
    result: str
    fields: dict
    line: str


@dataclass
class Run:
    proc: object
    disks: dict
    images: dict        # engine -> bytes before the boot
    hook_rc: str | None
    exit_rc: int | None
    outcomes: dict = field(default_factory=dict)   # engine -> [(scenario, Outcome)]

    def report(self, headline: str) -> str:
        return self.proc.report(headline)

    def first(self, engine: str, scenario: str) -> Outcome | None:
        for name, o in self.outcomes.get(engine, []):
            if name == scenario:
                return o
        return None


def _script() -> str:
    names = " ".join(SEQUENCE)
    bases = " ".join(f"0x{b:x}" for b in ENGINES.values())
    flood = " ".join(FLOOD_SCENARIOS)
    rounds = " ".join(str(i) for i in range(FLOOD_ROUNDS))
    # The flood first, quietly, on the first drive; then every scenario on
    # each drive; -r gives the device back to virtio_blk, which then reads it.
    return (f"for i in {rounds}; do virtio-evil 0x{ENGINES['Sync']:x} {flood} >/dev/null "
            "|| exit 1; done; "
            f"s='{names}'; for b in {bases}; do virtio-evil -r $b $s || exit 1; done; "
            f"for d in vda vdb; do echo EMBER-SHA-$d=$(dd if=/dev/$d bs=4096 "
            f"count={CHECK_BYTES // 4096} 2>/dev/null | sha256sum | cut -d' ' -f1); done")


def _parse(lines: list[str]) -> dict:
    by_base = {base: engine for engine, base in ENGINES.items()}
    out: dict = {engine: [] for engine in ENGINES}
    for line in lines:
        m = LINE.search(line)
        if not m or int(m.group(4), 16) not in by_base:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(3).split() if "=" in kv)
        out[by_base[int(m.group(4), 16)]].append((m.group(1), Outcome(m.group(2), fields, line)))
    return out


@pytest.fixture(scope="module")
def hostile(ember_bin, kernel_vmlinux, initramfs, tmp_path_factory):
    """Boots once, runs every scenario on both drives, lets the guest reboot;
    never fails itself, so that each test reports its own part."""
    workdir = tmp_path_factory.mktemp("vm")
    disks, images = {}, {}
    for engine, size in DISK_BYTES.items():
        disks[engine] = workdir / f"disk{len(disks)}.img"
        images[engine] = os.urandom(size)
        disks[engine].write_bytes(images[engine])
    code = base64.b64encode(_script().encode()).decode()
    config = vm_config(kernel_vmlinux, initramfs,
                       boot_args=guest_boot_args("script", extra=f"ember.script={code}"))
    config["drives"] = [{"drive_id": f"evil{i}", "path_on_host": str(disks[engine]),
                         "is_root_device": False, "is_read_only": False, "io_engine": engine}
                        for i, engine in enumerate(ENGINES)]
    launcher = EmberLauncher(ember_bin, workdir)
    proc = launcher.start(config=config)
    try:
        m, _ = proc.console.wait_for(re.compile(hook_done("script")),
                                     time.monotonic() + BOOT_TIMEOUT + 2 * STEP_TIMEOUT)
        exit_rc = None
        try:
            exit_rc = proc.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass  # still running: test_ember_survives_and_exits_0 says so
        run = Run(proc, disks, images, m.group(1) if m else None, exit_rc)
        run.outcomes = _parse(proc.console_lines())
        yield run
    finally:
        launcher.close()


def _crc_of_sectors(image: bytes, count: int) -> str:
    start = READ_SECTOR * SECTOR
    return f"{zlib.crc32(image[start:start + count * SECTOR]):08x}"


def _check(run: Run, engine: str, scenario: str, o: Outcome | None):
    want = EXPECT[scenario]
    assert o is not None, run.report(f"{engine}: no EMBER-EVIL line for {scenario}")
    what = f"{engine} {scenario}: {o.line.strip()}"
    assert o.result == want[0], run.report(f"{what}: expected result={want[0]}")
    if want[0] == "reset":
        assert o.fields.get("data") == "untouched" and o.fields.get("used") == "untouched", \
            run.report(f"{what}: the device wrote guest memory after its reset")
    if want[0] != "completed":
        return
    _, status, length, data = want
    f = o.fields
    assert f.get("status") == str(status), run.report(f"{what}: expected status={status}")
    assert f.get("len") == str(length), run.report(f"{what}: expected len={length}")
    assert f.get("id") == "ok", run.report(f"{what}: used ring names the wrong descriptor")
    assert "used-idx" not in f, run.report(f"{what}: more than one used element")
    if data == "untouched":
        assert f.get("data") == "untouched", \
            run.report(f"{what}: the device wrote into a buffer it had no business writing")
    elif data == "sectors":
        count = CHAIN_MAX_SECTORS if scenario == "chain-max" else 1
        crc = _crc_of_sectors(run.images[engine], count)
        assert f.get("data") == crc, run.report(f"{what}: expected data={crc} (CRC-32)")


def _params():
    for engine in ENGINES:
        for scenario in EXPECT:
            marks = ()
            if scenario in KNOWN_BUGS:
                marks = pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[scenario])
            yield pytest.param(engine, scenario, marks=marks, id=f"{engine}-{scenario}")


@pytest.mark.parametrize("engine,scenario", _params())
def test_hostile_request(hostile, engine, scenario):
    _check(hostile, engine, scenario, hostile.first(engine, scenario))


@pytest.mark.parametrize("engine", ENGINES)
def test_good_read_after_the_hostile_ones(hostile, engine):
    runs = [o for name, o in hostile.outcomes.get(engine, []) if name == "read"]
    assert len(runs) == 2, hostile.report(f"{engine}: expected the control read twice")
    _check(hostile, engine, "read", runs[-1])
    seen = [name for name, _ in hostile.outcomes[engine]]
    assert seen == SEQUENCE, hostile.report(f"{engine}: scenarios ran as {seen}")


def test_ember_survives_and_exits_0(hostile):
    assert hostile.hook_rc == "0", hostile.report(
        f"the guest's script did not finish cleanly (hook rc {hostile.hook_rc})")
    assert hostile.exit_rc == 0, hostile.report(
        f"ember {describe_returncode(hostile.exit_rc)} after the guest rebooted")


@pytest.mark.parametrize("engine", ENGINES)
def test_disk_files_unchanged_and_still_served(hostile, engine):
    assert hostile.disks[engine].read_bytes() == hostile.images[engine], \
        f"{engine}: the disk file changed, though the guest made no valid write"
    name = "vda" if list(ENGINES).index(engine) == 0 else "vdb"
    want = hashlib.sha256(hostile.images[engine][:CHECK_BYTES]).hexdigest()
    got = hostile.proc.value(f"EMBER-SHA-{name}")
    assert got == want, hostile.report(
        f"{engine}: virtio_blk, given the device back, read {got}; the file starts with {want}")


def test_guest_mistakes_do_not_flood_the_log(hostile):
    """Each message at most once per device (the two drives' transport
    messages read the same), although the guest repeated every mistake."""
    counts: dict = {}
    for line in hostile.proc.log_lines():
        m = LOG_MESSAGE.match(line)
        message = m.group(1) if m else line
        counts[message] = counts.get(message, 0) + 1
    repeated = {msg: n for msg, n in counts.items() if n > len(ENGINES)}
    assert not repeated, hostile.report(f"messages logged again and again: {repeated}")
