"""Shared pieces of Ember's benchmark: statistics, a minimal HTTP/1.1 client
for the API socket, process CPU clocks and smaps parsing.

Standard library only (Debian's /usr/bin/python3). Nothing here asserts a
speed: the benchmark measures and reports.
"""

from __future__ import annotations

import json
import os
import socket
import time


# --- statistics ------------------------------------------------------------------

def percentile(values, q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between ranks."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values) -> dict:
    """n, min, q1, median, q3, p90, p99, max of a list of numbers."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs), "min": min(xs), "q1": percentile(xs, 25), "median": percentile(xs, 50),
        "q3": percentile(xs, 75), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
        "max": max(xs),
    }


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number")
    if value < minimum:
        raise SystemExit(f"{name}={raw!r}: expected at least {minimum}")
    return value


def write_json(path, data):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# --- clocks ----------------------------------------------------------------------

def now_ns() -> int:
    return time.perf_counter_ns()


def process_cpu_clock(pid: int) -> int:
    """The clockid of another process's CPU-time clock (user+sys of all its
    threads, live and exited, in ns): what clock_getcpuclockid(3) returns.
    Linux encodes it as ((~pid) << 3) | CPUCLOCK_SCHED (2)."""
    return ((~pid) << 3) | 2


def process_cpu_ns(clock: int) -> int | None:
    try:
        return time.clock_gettime_ns(clock)
    except OSError:
        return None  # the process is gone


# --- API socket ------------------------------------------------------------------

def connect_spin(path: str, pid: int, timeout_s: float = 10.0):
    """Connect to a Unix socket in a tight loop until it accepts.

    Returns (socket, attempts). The socket file appears at bind(); connect()
    succeeds from listen() on. Fails if the process exits or the bound runs
    out."""
    deadline = now_ns() + int(timeout_s * 1e9)
    attempts = 0
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s, attempts
        except OSError:
            s.close()
        attempts += 1
        if attempts % 256 == 0:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                raise RuntimeError(f"process {pid} exited before {path} accepted connections")
            if now_ns() > deadline:
                raise RuntimeError(f"{path} did not accept connections within {timeout_s} s")


class HttpConn:
    """HTTP/1.1 over one connected Unix socket, kept alive between requests.

    Deliberately small (no http.client): the round-trip benchmark should
    time the server, not the client's header machinery."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    @staticmethod
    def encode(method: str, path: str, body: bytes | str | None = None) -> bytes:
        if isinstance(body, str):
            body = body.encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + (body or b"")

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def read_response(self) -> tuple[int, bytes]:
        """(status, body) of the next response."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-body")
            rest += chunk
        self.buf = rest[length:]
        return status, rest[:length]

    def request(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        self.send_raw(self.encode(method, path, body))
        return self.read_response()

    def expect(self, method: str, path: str, body=None, status: int = 204) -> bytes:
        got, data = self.request(method, path, body)
        if got != status:
            raise RuntimeError(f"{method} {path}: HTTP {got} {data[:300]!r}, expected {status}")
        return data


def boot_source(kernel: str, initrd: str | None, boot_args: str) -> str:
    d = {"kernel_image_path": kernel, "boot_args": boot_args}
    if initrd:
        d["initrd_path"] = initrd
    return json.dumps(d)


def machine_config(vcpus: int, mem_mib: int) -> str:
    return json.dumps({"vcpu_count": vcpus, "mem_size_mib": mem_mib})


INSTANCE_START = json.dumps({"action_type": "InstanceStart"})


# --- memory ----------------------------------------------------------------------

def smaps_rollup(pid: int, guest_bytes: int) -> dict:
    """RSS of a VMM process split into guest RAM and the rest (kB).

    The guest RAM mapping is found by size: the largest-RSS mapping whose
    size is guest_bytes or a little more (a VMM may round or add a guard).
    Overhead = all Rss - the guest mapping's Rss; private overhead counts only
    Private_Clean + Private_Dirty outside guest RAM (shared library pages that
    other processes also map are left out); dirty overhead counts only
    Private_Dirty outside guest RAM: what the process wrote itself (heap,
    stacks, relocated library data), which a second VMM process cannot share.
    A library that only this process maps is Private_Clean, not dirty: its
    pages come from the page cache and are shared by every process that maps
    it."""
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a mapping's header: "lo-hi perms ..."
                lo, hi = (int(x, 16) for x in first.split("-"))
                cur = {"range": first, "size_kb": (hi - lo) // 1024}
                maps.append(cur)
                continue
            key = first[:-1]
            if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Private_Hugetlb",
                       "Shared_Hugetlb") and cur is not None:
                cur[key] = int(line.split()[1])
    want_kb = guest_bytes // 1024
    candidates = [m for m in maps if want_kb <= m["size_kb"] <= want_kb + 8 * 1024]
    if not candidates:
        raise RuntimeError(f"no mapping of {want_kb} kB (guest RAM) in /proc/{pid}/smaps")
    # hugetlbfs pages (huge_pages "2M") are not in Rss but in *_Hugetlb.
    for m in maps:
        m["Rss"] = m.get("Rss", 0) + m.get("Private_Hugetlb", 0) + m.get("Shared_Hugetlb", 0)
    guest = max(candidates, key=lambda m: m.get("Rss", 0))
    rss = sum(m.get("Rss", 0) for m in maps)
    private = sum(m.get("Private_Clean", 0) + m.get("Private_Dirty", 0) for m in maps)
    guest_private = guest.get("Private_Clean", 0) + guest.get("Private_Dirty", 0)
    dirty = sum(m.get("Private_Dirty", 0) for m in maps) - guest.get("Private_Dirty", 0)
    return {
        "rss_kb": rss, "guest_rss_kb": guest.get("Rss", 0), "guest_map_kb": guest["size_kb"],
        "overhead_rss_kb": rss - guest.get("Rss", 0),
        "overhead_private_kb": private - guest_private,
        "overhead_dirty_kb": dirty,
        "mappings": len(maps),
    }


def parse_variants(parser, text: str, known) -> list[str]:
    """The comma-separated variant names in text, each one of known (else
    the parser's usage error)."""
    names = [v for v in text.split(",") if v]
    bad = [v for v in names if v not in known]
    if bad:
        parser.error(f"unknown variant(s) {bad}: choose from {list(known)}")
    return names
