"""virtio-vsock with Firecracker's hybrid Unix-socket backend: PUT /vsock and
the config file's "vsock" section, then real Linux guests talking AF_VSOCK to
host programs on Unix sockets, both ways (guest side: vsock-tool, built from
tools/guest/evil/vsock-tool.c into the test initramfs).

Host-initiated: connect to uds_path, write "CONNECT <port>\\n", read
"OK <host_port>\\n", then the stream. Guest-initiated: a guest connection to
CID 2 port P reaches the Unix socket "<uds_path>_P"."""

from __future__ import annotations

import base64
import json
import os
import socket
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pytest

from api_client import check_error, check_ok
from ember_harness import BOOT_TIMEOUT, DEBIAN_BOOT_TIMEOUT, EXIT_TIMEOUT, INIT_STARTED, \
    STEP_TIMEOUT, describe_returncode, guest_boot_args, hook_done, vm_config

MIB = 1 << 20
CID = 3


def script_args(script: str, extra: str = "") -> str:
    code = base64.b64encode(script.encode()).decode()
    return guest_boot_args("script", extra=f"{extra} ember.script={code}".strip())


@pytest.fixture
def sockdir():
    """A short directory for the Unix sockets (sun_path holds 108 bytes;
    pytest's own tmp paths can be longer)."""
    d = tempfile.mkdtemp(prefix="vs", dir="/tmp")
    yield Path(d)
    for p in Path(d).iterdir():
        p.unlink()
    os.rmdir(d)


class HostEcho:
    """A host program listening on <uds_path>_<port>: echoes every
    connection until it shuts down its side, records each one's CRC-32."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(256)
        self.crcs: list[tuple[int, int]] = []  # (bytes, crc32) per finished connection
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket):
        n, crc = 0, 0
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                n += len(data)
                crc = zlib.crc32(data, crc)
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        with self.lock:
            self.crcs.append((n, crc))

    def close(self):
        self.sock.close()


def host_connect(uds: str, port: int, timeout: float) -> tuple[socket.socket, bytes]:
    """Connects through uds_path to guest port `port`: the socket and the
    reply line (b"" if Ember closed it instead)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    line = b""
    while not line.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            break
        line += c
    return s, line


def echo_through(s: socket.socket, data: bytes) -> bytes:
    """Sends data on s while reading the echo; returns what came back."""
    out = bytearray()

    def reader():
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            out.extend(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(s.gettimeout())
    assert not t.is_alive(), f"echo stalled after {len(out)} of {len(data)} bytes"
    return bytes(out)


def metrics_total(path: Path, field: str) -> int:
    return sum(json.loads(line).get("vsock", {}).get(field, 0)
               for line in path.read_text().splitlines())


# ---- API and config ----

def test_put_vsock_before_boot_and_in_vm_config(api_vm, sockdir):
    c = api_vm.client()
    assert c.get("/vm/config").body.get("vsock") is None
    uds = str(sockdir / "v.sock")
    check_ok(c.put("/vsock", {"guest_cid": 3, "uds_path": uds}), 204, None, "PUT /vsock")
    got = check_ok(c.get("/vm/config"), 200, "FullVmConfiguration", "GET /vm/config")
    assert got["vsock"] == {"guest_cid": 3, "uds_path": uds}, got["vsock"]
    check_ok(c.put("/vsock", {"guest_cid": 7, "uds_path": uds, "vsock_id": "vsock0"}), 204, None,
             "PUT /vsock again")
    assert c.get("/vm/config").body["vsock"]["guest_cid"] == 7
    check_error(c.put("/vsock", {"guest_cid": 2, "uds_path": uds}), "guest_cid",
                context="CID 2 is the host's")
    check_error(c.put("/vsock", {"guest_cid": 3}), "uds_path", context="no uds_path")
    check_error(c.put("/vsock", {"guest_cid": 3, "uds_path": uds, "x": 1}), "x",
                context="unknown field")
    assert c.get("/vm/config").body["vsock"]["guest_cid"] == 7, "a refused PUT changed nothing"


def test_put_vsock_binds_uds_path_at_once(api_vm, sockdir):
    """As Firecracker: PUT /vsock binds uds_path then, not at InstanceStart
    (a host client can connect before the guest runs); a path that exists
    is refused with Firecracker's message and changes nothing; a later PUT
    removes the earlier one's socket file first."""
    c = api_vm.client()
    a, b = sockdir / "a.sock", sockdir / "b.sock"
    check_ok(c.put("/vsock", {"guest_cid": 3, "uds_path": str(a)}), 204, None, "PUT /vsock")
    assert a.is_socket(), "uds_path not bound by PUT /vsock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(a))
    b.write_bytes(b"")
    check_error(c.put("/vsock", {"guest_cid": 3, "uds_path": str(b)}),
                "Vsock config error: Cannot create backend for vsock device: Error binding to "
                "the host-side Unix socket: Address already in use (os error 98)",
                context="uds_path exists")
    assert c.get("/vm/config").body["vsock"]["uds_path"] == str(a), "a refused PUT changed it"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(a))  # still listening
    b.unlink()
    check_ok(c.put("/vsock", {"guest_cid": 4, "uds_path": str(b)}), 204, None, "PUT /vsock again")
    assert not a.exists(), "the earlier uds_path was not removed"
    assert b.is_socket()
    check_ok(c.put("/vsock", {"guest_cid": 5, "uds_path": str(b)}), 204, None,
             "PUT /vsock again, same path")
    assert b.is_socket()


# ---- The project's kernel ----

GUEST_TO_HOST = r"""
vsock-tool echo 2 5000 1048576 | sed s/EMBER-/EMBER-ONE-/
vsock-tool echo 2 5000 65536 100 | sed s/EMBER-/EMBER-MANY-/
vsock-tool connect 2 5001 | sed s/EMBER-/EMBER-MISSING-/
"""


@pytest.mark.boot
def test_guest_to_host_echo_many_and_missing_listener(ember, kernel_vmlinux, initramfs, workdir,
                                                      sockdir):
    """The guest connects to CID 2: 1 MiB echoed by a host program, 100
    connections at once, and a port nobody listens on (a reset)."""
    uds = str(sockdir / "v.sock")
    echo = HostEcho(uds + "_5000")
    metrics = workdir / "metrics.json"
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(GUEST_TO_HOST))
    config["vsock"] = {"guest_cid": CID, "uds_path": uds}
    config["metrics"] = {"metrics_path": str(metrics)}
    proc = ember.start(config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + 4 * STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    echo.close()
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    assert m.group(1) == "0", proc.report("the guest's script failed")
    assert proc.value("EMBER-ONE-ECHO-OK") == "1", proc.report("1 MiB echo")
    sizes = sorted(echo.crcs)
    one = [crc for n, crc in sizes if n == MIB]
    assert one == [int(proc.value("EMBER-ONE-ECHO-CRC"), 16)], \
        proc.report(f"the host got other bytes than the guest sent: {one}")
    assert proc.value("EMBER-MANY-ECHO-OK") == "100", proc.report("100 connections")
    assert sum(1 for n, _ in sizes if n == 65536) == 100, sizes
    assert proc.value("EMBER-MISSING-CONNECT") == "ECONNRESET", \
        proc.report("a guest connection to a port with no host listener")
    assert metrics_total(metrics, "conns_added") == 101
    assert metrics_total(metrics, "tx_bytes_count") >= MIB + 100 * 65536


@pytest.mark.boot
def test_guest_to_host_echo_100_mib(ember, kernel_vmlinux, initramfs, sockdir):
    """100 MiB from the guest, echoed by a host program, CRC-32 checked at
    both ends; the guest's uptime stamps give the rate (printed; TCG makes
    it slow, nothing asserts a speed)."""
    uds = str(sockdir / "v.sock")
    echo = HostEcho(uds + "_5000")
    script = ("read a _ </proc/uptime; vsock-tool echo 2 5000 104857600; "
              "read z _ </proc/uptime; echo EMBER-T0=$a EMBER-T1=$z")
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(script))
    config["vsock"] = {"guest_cid": CID, "uds_path": uds}
    proc = ember.start(config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + 5 * STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    echo.close()
    assert rc == 0 and m.group(1) == "0", proc.report(f"ember {describe_returncode(rc)}")
    seconds = float(proc.value("EMBER-T1")) - float(proc.value("EMBER-T0"))
    print(f"100 MiB echoed guest->host->guest in {seconds:.1f} s of guest time "
          f"({100 / seconds:.1f} MiB/s each way)")
    assert proc.value("EMBER-ECHO-OK") == "1", proc.report("100 MiB echo")
    assert echo.crcs == [(100 * MIB, int(proc.value("EMBER-ECHO-CRC"), 16))], echo.crcs


HOST_TO_GUEST = r"""
vsock-tool listen 52 &
read go
"""


@pytest.mark.boot
def test_host_to_guest_echo_close_reset_and_exit(ember, kernel_vmlinux, initramfs, workdir,
                                                 sockdir):
    """Host programs connect to the guest's echo server through uds_path:
    1 MiB and 100 connections echoed, a guest port nobody listens on, a
    client that never sends CONNECT, resets both ways, and Ember exiting
    with a connection open."""
    uds = str(sockdir / "v.sock")
    metrics = workdir / "metrics.json"
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(HOST_TO_GUEST))
    config["vsock"] = {"guest_cid": CID, "uds_path": uds}
    config["metrics"] = {"metrics_path": str(metrics)}
    proc = ember.start(config=config)
    proc.expect(r"EMBER-VSOCK-LISTENING=52", BOOT_TIMEOUT + STEP_TIMEOUT)
    t = STEP_TIMEOUT

    # 1 MiB echoed, checked byte for byte.
    s, line = host_connect(uds, 52, t)
    assert line.startswith(b"OK ") and int(line[3:]) >= 1 << 30, line
    data = os.urandom(MIB)
    start = time.monotonic()
    got = echo_through(s, data)
    print(f"1 MiB echoed host->guest->host in {time.monotonic() - start:.2f} s")
    s.close()
    assert len(got) == len(data) and zlib.crc32(got) == zlib.crc32(data)

    # 100 connections at once, each 64 KiB.
    conns = [host_connect(uds, 52, t) for _ in range(100)]
    assert all(line.startswith(b"OK ") for _, line in conns), [line for _, line in conns]
    ports = {int(line[3:]) for _, line in conns}
    assert len(ports) == 100, "each connection has its own host port"
    blobs = [os.urandom(65536) for _ in conns]
    results: list[bytes | None] = [None] * len(conns)

    def run(i):
        results[i] = echo_through(conns[i][0], blobs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(conns))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(4 * t)
    for s, _ in conns:
        s.close()
    bad = [i for i in range(len(conns)) if results[i] != blobs[i]]
    assert not bad, f"connections {bad[:10]} did not echo their bytes"

    # A guest port nobody listens on: Ember closes the client.
    s, line = host_connect(uds, 53, t)
    assert line == b"", f"CONNECT to a closed guest port got {line!r}"
    s.close()

    # A client that never sends CONNECT is closed (after 5 s).
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(t)
    s.connect(uds)
    assert s.recv(1) == b"", "a silent client is closed"
    s.close()

    # The host resets a connection mid-stream (closes with unread data);
    # the guest's end goes away and Ember still serves.
    s, line = host_connect(uds, 52, t)
    assert line.startswith(b"OK "), line
    s.sendall(os.urandom(65536))
    s.close()
    s, line = host_connect(uds, 52, t)
    assert echo_through(s, b"still here") == b"still here"
    s.close()

    # Ember exits (the guest reboots) with a connection open: the client
    # sees the end, Ember exits cleanly.
    s, line = host_connect(uds, 52, t)
    assert line.startswith(b"OK "), line
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    proc.send("go\n")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    assert s.recv(1) == b"", "the open connection ends with Ember"
    s.close()
    assert metrics_total(metrics, "conns_added") >= 104
    assert metrics_total(metrics, "rx_bytes_count") >= MIB + 100 * 65536


# ---- Debian's stock kernel ----

@pytest.mark.boot
def test_debian_kernel_vsock_both_ways(ember, debian_vmlinuz, debian_initramfs, sockdir):
    """Debian's kernel with vsock, vmw_vsock_virtio_transport_common and
    vmw_vsock_virtio_transport loaded from its initramfs."""
    uds = str(sockdir / "v.sock")
    echo = HostEcho(uds + "_5000")
    script = ("echo EMBER-MODULES=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ,)\n"
              "vsock-tool echo 2 5000 1048576\n"
              "vsock-tool listen 52 &\n"
              "read go\n")
    args = script_args(script, extra="i8042.noaux")
    config = vm_config(debian_vmlinuz, debian_initramfs, boot_args=args, mem_mib=256)
    config["vsock"] = {"guest_cid": CID, "uds_path": uds}
    proc = ember.start(config=config)
    proc.expect(INIT_STARTED, DEBIAN_BOOT_TIMEOUT)
    proc.expect(r"EMBER-VSOCK-LISTENING=52", 2 * STEP_TIMEOUT)
    s, line = host_connect(uds, 52, STEP_TIMEOUT)
    assert line.startswith(b"OK "), proc.report(f"CONNECT 52 got {line!r}")
    data = os.urandom(MIB)
    got = echo_through(s, data)
    s.close()
    proc.send("go\n")
    rc = proc.wait_exit(EXIT_TIMEOUT)
    echo.close()
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    modules = {m for line in proc.console_lines() if "EMBER-MODULES=" in line
               for m in line.split("EMBER-MODULES=", 1)[1].strip().split(",")}
    assert {"vmw_vsock_virtio_transport", "vsock"} <= modules, proc.report("vsock modules")
    assert proc.value("EMBER-ECHO-OK") == "1", proc.report("guest to host echo")
    assert got == data, "host to guest echo"


# ---- A hostile guest ----

# What each vsock-evil scenario gets back on the rx queue (and the ring it
# breaks last needs a reset).
EVIL_EXPECTED = {
    "short-header": "none", "oversized-len": "none", "len-past-buffer": "none",
    "wrong-src-cid": "none", "wrong-dst-cid": "none", "bad-type": "rst",
    "unknown-connection": "rst", "unknown-op": "rst", "writable-tx": "none",
    "split-header-request": "response", "credit-lie": "rst", "avail-jump": "none needs-reset",
}

EVIL_SCRIPT = r"""
vsock-evil 0xc0001000 3
vsock-tool echo 2 5000 65536 | sed s/EMBER-/EMBER-AFTER-/
"""


@pytest.mark.boot
def test_hostile_guest_is_answered_counted_and_ember_still_serves(ember, kernel_vmlinux, initramfs,
                                                                 workdir, sockdir):
    """vsock-evil (tools/guest/evil/vsock-evil.c) takes the device from the
    guest's driver and sends malformed headers, wrong CIDs, oversized
    lengths, an unknown type and op, packets of no connection, a writable
    tx buffer, a split header, a credit lie and a broken ring; then gives
    the device back, and the guest's own driver echoes through it."""
    uds = str(sockdir / "v.sock")
    echo = HostEcho(uds + "_5000")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts, never reads
    deaf.bind(uds + "_5001")
    deaf.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(deaf.accept()), daemon=True).start()
    metrics = workdir / "metrics.json"
    config = vm_config(kernel_vmlinux, initramfs, boot_args=script_args(EVIL_SCRIPT))
    config["vsock"] = {"guest_cid": CID, "uds_path": uds}
    config["metrics"] = {"metrics_path": str(metrics)}
    proc = ember.start(config=config)
    m = proc.expect(hook_done("script"), BOOT_TIMEOUT + 3 * STEP_TIMEOUT)
    rc = proc.wait_exit(EXIT_TIMEOUT)
    echo.close()
    deaf.close()
    assert rc == 0, proc.report(f"ember {describe_returncode(rc)}")
    got = {}
    for line in proc.console_lines():
        if line.startswith("EMBER-VSOCK-EVIL "):
            name, _, rest = line[len("EMBER-VSOCK-EVIL "):].partition(" rx=")
            got[name] = rest.strip()
    assert got == EVIL_EXPECTED, proc.report(f"scenarios: {got}")
    assert m.group(1) == "0", proc.report("the guest's script failed")
    assert proc.value("EMBER-AFTER-ECHO-OK") == "1", proc.report("the guest's driver after it")
    total = {k: metrics_total(metrics, k) for k in
             ("tx_queue_event_fails", "muxer_event_fails", "conn_event_fails", "conns_killed")}
    print("vsock metrics after the hostile guest:", total)
    # short header, oversized len, len past the buffer, writable tx, broken ring
    assert total["tx_queue_event_fails"] == 5, total
    assert total["muxer_event_fails"] == 3, total  # two wrong CIDs, one bad type
    assert total["conn_event_fails"] >= 1 and total["conns_killed"] >= 1, total  # credit lie
