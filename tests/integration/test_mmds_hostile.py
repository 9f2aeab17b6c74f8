"""A hostile guest against Ember's MMDS network stack: truncated, malformed
and oversized frames, bad checksums, fragments, ARP garbage, floods of SYNs,
RSTs and FINs, garbage inside live connections, connections holding partial
requests, and frames that are not MMDS's at all.

One boot. The guest first fetches a value with wget, then runs `net-evil`
(tools/guest/evil/net-evil.c) one scenario at a time: it writes raw frames
on eth0 through a packet socket and prints one `EMBER-EVIL <scenario> ...`
line, then waits on the console while the test flushes Ember's metrics, so
each scenario gets its own `mmds` counter deltas. Every scenario starts and
ends with an ARP request whose answer proves MMDS has handled the frames
before it. Then wget must still work, and the guest reboots.

What each scenario must do to the counters is docs/mmds.md's "Network
stack" section: malformed frames count rx_accepted_err, odd ones
rx_accepted_unusual, a multicast source rx_bad_eth, every TCP segment
rx_count; frames too short to hold the MMDS address, tagged frames and
other ethertypes are not MMDS's and must reach the TAP; nothing addressed
to MMDS may.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from api_client import ApiLauncher, check_ok
from ember_harness import (BOOT_TIMEOUT, EXIT_TIMEOUT, STEP_TIMEOUT, EmberLauncher,
                           describe_returncode, guest_boot_args)
from test_mmds import DATA, TapSniffer

pytestmark = pytest.mark.boot

MMDS_IP = "169.254.169.254"
HOST_IP, GUEST_IP = "10.212.0.1", "10.212.0.2"
AMI = DATA["latest"]["meta-data"]["ami-id"]
URL = f"http://{MMDS_IP}/latest/meta-data/ami-id"
COUNTERS = ("rx_accepted", "rx_accepted_err", "rx_accepted_unusual", "rx_bad_eth", "rx_count",
            "tx_errors", "connections_created", "connections_destroyed")

# Not MMDS's (docs/mmds.md: too short to hold the address, 802.1Q, other
# ethertypes): MMDS counts nothing but the ARP fences, the TAP gets them.
PASS = ["runt", "ipv4-short", "arp-short", "vlan", "ethertypes"]
# Malformed: each frame is taken and counted in rx_accepted_err.
ERR = ["ip-bad-csum", "ip-version", "ip-ihl-short", "ip-ihl-long", "ip-total-long",
       "ip-total-short", "tcp-bad-csum", "tcp-doff-short", "tcp-doff-long", "tcp-short",
       "tcp-opt-overrun", "tcp-opt-zero-len", "tcp-mss-zero", "tcp-mss-len", "tcp-port",
       "tcp-sport-zero", "arp-garbage"]
# Well-formed but not served: rx_accepted_unusual (fragments, not TCP,
# ARP other than a unicast request).
UNUSUAL = ["ip-frag-mf", "ip-frag-offset", "ip-udp", "ip-icmp", "arp-reply", "arp-op-junk",
           "arp-multicast-sha"]
# (scenario, flood size)
FLOODS = [("rst-storm", 1000), ("fin-storm", 1000), ("syn-flood", 2000), ("recover", 1),
          ("garbage", 2000), ("recover", 1)]
STATEFUL = ["eth-multicast-src", "tcp-no-conn", "ip-padding", "conn-garbage", "conn-storm"]
BIG_MTU = ["conn-oversized", "oversized", "oversized-bad-csum"]   # with eth0's MTU at 65535
KERNEL = ["hold-partial", "kernel-get"]
CONN_STORM = 600
MAX_CONNECTIONS = 30        # MMDS_NET_MAX_CONNECTIONS
HOLD_CONNS = 40             # net-evil's hold-partial

LINE = re.compile(r"EMBER-EVIL (\S+) result=(\S+) sent=(\d+) arp=(\d+)(.*)")
END = re.compile(r"EMBER-EVIL-END (\S+) rc=(\d+)")


@dataclass
class Outcome:
    result: str
    sent: int
    arp: int
    fields: dict
    line: str
    delta: dict        # mmds counter -> increase during the scenario


@dataclass
class Run:
    proc: object
    sniffer: object
    hook_rc: str | None = None
    exit_rc: int | None = None
    failure: str | None = None      # why the run stopped early
    outcomes: list = field(default_factory=list)   # (scenario, Outcome)
    totals: dict = field(default_factory=dict)     # the whole run's counters, exit included

    def report(self, headline: str) -> str:
        extra = f" (the run stopped early: {self.failure})" if self.failure else ""
        return self.proc.report(headline + extra)

    def get(self, scenario: str, index: int = 0) -> Outcome:
        found = [o for name, o in self.outcomes if name == scenario]
        assert len(found) > index, self.report(f"no EMBER-EVIL line for {scenario}")
        return found[index]


def _steps() -> list[tuple[str, int]]:
    one = [(s, 1) for s in PASS + ERR + UNUSUAL]
    return one + [(s, 1) for s in STATEFUL if s != "conn-storm"] + [("conn-storm", CONN_STORM)] \
        + FLOODS


def _script() -> str:
    # The kernel command line holds at most 2 KiB: a shell function runs
    # each step ("name" or "name:count") and waits for the host's go.
    def steps(items):
        return " ".join(s if n == 1 else f"{s}:{n}" for s, n in items)
    return ("r(){ for s; do n=${s#*:}; [ \"$n\" = \"$s\" ] && n=1; net-evil -n $n ${s%:*}; "
            "echo EMBER-EVIL-END ${s%:*} rc=$?; read l; done; }; "
            f"ip route add {MMDS_IP} dev eth0; "
            f"echo EMBER-FIRST=$(wget -q -O - {URL}); "
            "echo EMBER-READY; read l; "
            f"r {steps(_steps())}; "
            "ip link set eth0 mtu 65535; echo EMBER-MTU=$(cat /sys/class/net/eth0/mtu); "
            f"r {steps((s, 1) for s in BIG_MTU)}; "
            "ip link set eth0 mtu 1500; "
            f"r {steps((s, 1) for s in KERNEL)}; "
            f"echo EMBER-AFTER=$(wget -q -O - {URL}); "
            # Let the last connection close before the reboot.
            "sleep 1")


SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID = 0x10
AUXDATA = struct.Struct("=IIIHHHH")   # struct tpacket_auxdata


class MarkSniffer(TapSniffer):
    """TapSniffer that also counts frames by source MAC, to find net-evil's
    marked frames (02:ee:ee:00:00:NN) on the TAP. The kernel strips an
    802.1Q tag before a packet socket sees the frame; the auxiliary data
    says it was there, and such a frame was not MMDS's."""

    def __init__(self, netns, addr: str):
        self.by_src: dict[str, int] = {}
        super().__init__(netns, addr)
        # After the reader started: it sees nothing before the guest boots.
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)

    def _tagged(self, ancillary) -> bool:
        for level, kind, data in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
                return bool(AUXDATA.unpack_from(data)[0] & TP_STATUS_VLAN_VALID)
        return False

    def _run(self):
        while not self._stop.is_set():
            try:
                frame, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(64))
            except OSError:
                continue
            self.frames += 1
            if len(frame) >= 12:
                src = frame[6:12].hex(":")
                self.by_src[src] = self.by_src.get(src, 0) + 1
            if len(frame) < 14 or self._tagged(ancillary):
                continue
            ethertype = int.from_bytes(frame[12:14], "big")
            if ethertype == 0x0806 and frame[38:42] == self.addr:
                self.hits.append(frame)
            if ethertype == 0x0800 and frame[30:34] == self.addr:
                self.hits.append(frame)


class Metrics:
    """Sums the mmds group over the metrics file's new lines (FlushMetrics
    and the periodic flushes: both report increases)."""

    def __init__(self, path):
        self.path = path
        self.seen = 0

    def take(self) -> dict:
        lines = [l for l in self.path.read_text().splitlines() if l.strip()]
        new, self.seen = lines[self.seen:], len(lines)
        out = dict.fromkeys(COUNTERS, 0)
        for line in new:
            mmds = json.loads(line).get("mmds", {})
            for k in COUNTERS:
                out[k] += mmds.get(k, 0)
        return out


def _parse(line: str) -> tuple[str, Outcome] | None:
    m = LINE.search(line)
    if not m:
        return None
    fields = dict(kv.split("=", 1) for kv in m.group(5).split() if "=" in kv)
    return m.group(1), Outcome(m.group(2), int(m.group(3)), int(m.group(4)), fields, line, {})


def _drive(run: Run, client, metrics: Metrics, nsteps: int):
    """Answers the guest: flushes the metrics at every pause and lets it go on."""
    proc = run.proc
    console = proc.console

    def wait(regex, timeout):
        m, why = console.wait_for(regex, time.monotonic() + timeout)
        if not m:
            raise RuntimeError(f"no console line /{regex.pattern}/ ({why})")
        return m

    def flush():
        check_ok(client.put("/actions", {"action_type": "FlushMetrics"}), 204, None,
                 "FlushMetrics")
        return metrics.take()

    wait(re.compile(r"EMBER-READY"), BOOT_TIMEOUT + STEP_TIMEOUT)
    flush()   # the baseline
    proc.send("go\n")
    seen = 0
    for _ in range(nsteps):
        # The n-th END line: scenarios repeat ("recover"), so count them.
        index, deadline = seen, time.monotonic() + STEP_TIMEOUT
        while True:
            ends = [l for l in console.lines() if END.search(l)]
            if len(ends) > index:
                break
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no EMBER-EVIL-END line for step {index + 1}")
            time.sleep(0.05)
        seen += 1
        delta = flush()
        name = END.search(ends[index]).group(1)
        lines = [l for l in console.lines() if LINE.search(l)]
        parsed = [p for p in map(_parse, lines) if p and p[0] == name]
        done = sum(1 for n, _ in run.outcomes if n == name)
        if len(parsed) > done:
            parsed[done][1].delta = delta
            run.outcomes.append(parsed[done])
        proc.send("go\n")


@pytest.fixture(scope="module")
def hostile(ember_bin, kernel_vmlinux, initramfs, test_netns, tmp_path_factory):
    """Boots once and runs every scenario; never fails itself, so that each
    test reports its own part."""
    workdir = tmp_path_factory.mktemp("vm")
    launcher = EmberLauncher(ember_bin, workdir, netns=test_netns.name)
    vm = ApiLauncher(launcher, workdir).start()
    sniffer = MarkSniffer(test_netns, MMDS_IP)
    run = Run(vm.proc, sniffer)
    try:
        c = vm.client()
        metrics = Metrics(workdir / "metrics.json")
        code = base64.b64encode(_script().encode()).decode()
        args = guest_boot_args("script", extra=f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off "
                                                f"ember.script={code}")
        check_ok(c.put("/metrics", {"metrics_path": str(metrics.path)}), 204, None, "PUT /metrics")
        check_ok(c.put("/boot-source", {"kernel_image_path": str(kernel_vmlinux),
                                        "initrd_path": str(initramfs), "boot_args": args}), 204)
        check_ok(c.put("/network-interfaces/eth0", {"iface_id": "eth0", "host_dev_name": "tap0"}),
                 204)
        check_ok(c.put("/mmds/config", {"network_interfaces": ["eth0"]}), 204)
        check_ok(c.put("/mmds", DATA), 204)
        check_ok(c.put("/actions", {"action_type": "InstanceStart"}), 204)
        nsteps = len(_steps()) + len(BIG_MTU) + len(KERNEL)
        try:
            _drive(run, c, metrics, nsteps)
        except RuntimeError as e:
            run.failure = str(e)
        m, _ = run.proc.console.wait_for(re.compile(r"EMBER-HOOK: script rc=(-?\d+)"),
                                         time.monotonic() + STEP_TIMEOUT)
        run.hook_rc = m.group(1) if m else None
        try:
            run.exit_rc = run.proc.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass  # still running: test_ember_survives_and_exits_0 says so
        c.close()
        time.sleep(0.5)
        run.totals = metrics.take()    # what is left: the flush at exit
        for _, o in run.outcomes:
            for k, v in o.delta.items():
                run.totals[k] += v
        yield run
    finally:
        sniffer.close()
        launcher.close()


def _check_counts(run: Run, o: Outcome, what: str, want: dict):
    got = {k: o.delta.get(k) for k in want}
    assert got == want, run.report(f"{what}: mmds counters {got}, expected {want} ({o.line})")


@pytest.mark.parametrize("scenario", PASS)
def test_frames_not_for_mmds_reach_the_tap(hostile, scenario):
    o = hostile.get(scenario)
    what = f"{scenario}: {o.line}"
    assert o.result == "done" and o.sent >= 1, hostile.report(what)
    _check_counts(hostile, o, what, {"rx_accepted": o.arp, "rx_accepted_err": 0,
                                     "rx_accepted_unusual": 0, "rx_count": 0, "rx_bad_eth": 0})
    mark = o.fields.get("mark")
    assert mark, hostile.report(f"{what}: no mark")
    seen = hostile.sniffer.by_src.get(mark, 0)
    assert seen == o.sent, hostile.report(f"{what}: {seen} of {o.sent} frames reached the TAP")


@pytest.mark.parametrize("scenario", ERR)
def test_malformed_frames_are_dropped_and_counted(hostile, scenario):
    o = hostile.get(scenario)
    what = f"{scenario}: {o.line}"
    assert o.result == "done" and o.sent >= 1, hostile.report(what)
    _check_counts(hostile, o, what, {"rx_accepted": o.sent + o.arp, "rx_accepted_err": o.sent,
                                     "rx_accepted_unusual": 0, "rx_count": 0, "rx_bad_eth": 0,
                                     "connections_created": 0})


@pytest.mark.parametrize("scenario", UNUSUAL)
def test_unusual_frames_are_dropped_and_counted(hostile, scenario):
    o = hostile.get(scenario)
    what = f"{scenario}: {o.line}"
    assert o.result == "done" and o.sent >= 1, hostile.report(what)
    _check_counts(hostile, o, what, {"rx_accepted": o.sent + o.arp, "rx_accepted_err": 0,
                                     "rx_accepted_unusual": o.sent, "rx_count": 0,
                                     "rx_bad_eth": 0, "connections_created": 0})


def test_multicast_source_is_bad_eth(hostile):
    o = hostile.get("eth-multicast-src")
    assert o.result == "done" and o.sent == 1, hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": 1 + o.arp, "rx_bad_eth": 1,
                                       "rx_accepted_err": 0, "rx_accepted_unusual": 0,
                                       "rx_count": 0})


def test_segment_for_no_connection_gets_a_rst(hostile):
    o = hostile.get("tcp-no-conn")
    assert o.result == "done" and o.fields.get("rst") == "yes", hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": 1 + o.arp, "rx_count": 1,
                                       "rx_accepted_unusual": 1, "rx_accepted_err": 0,
                                       "connections_created": 0})


def test_ethernet_padding_is_ignored(hostile):
    """SYN, ACK, RST: the SYN with 1000 bytes after its IP packet opens a
    connection like any other."""
    o = hostile.get("ip-padding")
    assert o.result == "done" and o.fields.get("synack") == "yes", hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": o.sent + o.arp, "rx_count": o.sent,
                                       "rx_accepted_err": 0, "rx_accepted_unusual": 0,
                                       "connections_created": 1})


@pytest.mark.parametrize("scenario", ["rst-storm", "fin-storm"])
def test_storms_without_a_connection(hostile, scenario):
    o = hostile.get(scenario)
    n = dict(FLOODS)[scenario]
    assert o.result == "done" and o.sent == n, hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": n + o.arp, "rx_count": n,
                                       "rx_accepted_unusual": n, "rx_accepted_err": 0,
                                       "connections_created": 0})


def test_syn_flood_is_bounded_and_recovers(hostile):
    o = hostile.get("syn-flood")
    n = dict(FLOODS)["syn-flood"]
    assert o.result == "done" and o.sent == n, hostile.report(o.line)
    d = o.delta
    assert d["rx_accepted"] == n + o.arp and d["rx_count"] == n and d["rx_accepted_err"] == 0, \
        hostile.report(f"syn-flood: {d}")
    created = d["connections_created"]
    assert 1 <= created <= MAX_CONNECTIONS, hostile.report(f"syn-flood: {created} connections")
    assert created + d["rx_accepted_unusual"] == n, \
        hostile.report(f"syn-flood: every SYN opens a connection or is refused (unusual): {d}")
    r = hostile.get("recover", 0)
    assert r.fields.get("status") == "200", hostile.report(f"after the SYN flood: {r.line}")


def test_garbage_is_all_taken(hostile):
    o = hostile.get("garbage")
    n = dict(FLOODS)["garbage"]
    assert o.result == "done" and o.sent == n, hostile.report(o.line)
    assert o.delta["rx_accepted"] == n + o.arp and o.delta["rx_accepted_err"] > 0, \
        hostile.report(f"garbage: {o.delta}")
    r = hostile.get("recover", 1)
    assert r.fields.get("status") == "200", hostile.report(f"after the garbage: {r.line}")


@pytest.mark.parametrize("scenario,unusual", [("conn-garbage", 6), ("conn-storm", CONN_STORM),
                                              ("conn-oversized", 1)])
def test_connection_survives_hostile_segments(hostile, scenario, unusual):
    """Out-of-window data, RSTs and FINs, ACKs of data never sent, a
    segment far beyond the window: dropped (or cut) and counted, and the
    same connection still answers a GET."""
    o = hostile.get(scenario)
    assert o.result == "done" and o.fields.get("status") == "200", hostile.report(o.line)
    d = o.delta
    assert d["rx_accepted_err"] == 0 and d["connections_created"] == 1 and \
        d["rx_accepted_unusual"] >= unusual and d["rx_count"] == o.sent, \
        hostile.report(f"{scenario}: {d}")


def test_mtu_sized_frames(hostile):
    assert hostile.proc.value("EMBER-MTU") == "65535", hostile.report("eth0's MTU")
    o = hostile.get("oversized")
    assert o.result == "done" and o.sent == 1, hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": 1 + o.arp, "rx_count": 1,
                                       "rx_accepted_unusual": 1, "rx_accepted_err": 0})
    o = hostile.get("oversized-bad-csum")
    assert o.result == "done" and o.sent == 1, hostile.report(o.line)
    _check_counts(hostile, o, o.line, {"rx_accepted": 1 + o.arp, "rx_count": 0,
                                       "rx_accepted_unusual": 0, "rx_accepted_err": 1})


def test_partial_requests_hold_at_most_30_connections(hostile):
    o = hostile.get("hold-partial")
    f = o.fields
    what = f"hold-partial: {o.line}"
    held, refused = int(f.get("held", -1)), int(f.get("refused", -1))
    assert o.result == "done" and held == MAX_CONNECTIONS and refused == HOLD_CONNS - held, \
        hostile.report(f"{what}: expected {MAX_CONNECTIONS} held, the rest refused")
    assert f.get("extra") == "-111", hostile.report(f"{what}: a GET with the table full "
                                                    "must be refused (ECONNREFUSED)")
    assert f.get("overflow") == "reset", hostile.report(
        f"{what}: a request past the 2500-byte buffer must reset its connection")
    assert f.get("after") == "200", hostile.report(f"{what}: GET after closing them all")


def test_mmds_still_answers_and_nothing_leaked(hostile):
    assert hostile.failure is None, hostile.report("the scenarios did not all run")
    assert hostile.proc.value("EMBER-FIRST") == AMI, hostile.report("wget before")
    assert hostile.get("kernel-get").fields.get("status") == "200", hostile.report("kernel GET")
    assert hostile.proc.value("EMBER-AFTER") == AMI, hostile.report("wget after the barrage")
    bad = [(n, o.line) for n, o in hostile.outcomes if o.result != "done"]
    assert not bad, hostile.report(f"scenarios that did not complete: {bad}")
    assert not hostile.sniffer.hits, hostile.report(
        f"{len(hostile.sniffer.hits)} frames for the MMDS address reached the TAP; first: "
        f"{hostile.sniffer.hits[0][:64].hex()}")
    t = hostile.totals
    assert t["tx_errors"] == 0, hostile.report(f"tx_errors {t['tx_errors']}")
    assert t["connections_created"] == t["connections_destroyed"], hostile.report(
        f"connections created {t['connections_created']}, destroyed "
        f"{t['connections_destroyed']}: some never went away")


def test_ember_survives_and_exits_0(hostile):
    assert hostile.hook_rc == "0", hostile.report(
        f"the guest's script did not finish cleanly (hook rc {hostile.hook_rc})")
    assert hostile.exit_rc == 0, hostile.report(
        f"ember {describe_returncode(hostile.exit_rc)} after the guest rebooted")


def test_hostile_frames_do_not_flood_the_log(hostile):
    """Thousands of bad frames: the MMDS stack only counts them (it has no
    logger), and the net device logs each kind of guest mistake once."""
    lines = hostile.proc.log_lines()
    assert len(lines) < 10, hostile.report(f"ember logged {len(lines)} lines")
