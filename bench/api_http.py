"""The API server's own costs, for comparing two ember binaries (e.g. before
and after a change to src/api/). No guest.

  api_http.py EMBER [EMBER...]

For each binary: `size` of its text/data/bss, the idle process's memory with
the API socket open (/proc/PID/smaps_rollup: Rss, Private_*), exec -> the
API socket accepts (bench/native.py's bench_startup: 6 rounds of 20 starts,
the binaries interleaved round by round, the median of the round medians:
a loaded machine skews a round, not a binary), and the round trip of GET /
on one keep-alive connection (median of 2000 after 200 warm-up requests).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import HttpConn, connect_spin, now_ns, summary
from native import bench_startup, spawn, stop


def rollup(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def idle_and_latency(ember: str, work: str, count=2000, warmup=200) -> dict:
    path = f"{work}/lat.sock"
    pid = spawn([ember, "--api-sock", path], f"{work}/lat.log")
    sock, _ = connect_spin(path, pid)
    conn = HttpConn(sock)
    req = HttpConn.encode("GET", "/")
    times = []
    for i in range(warmup + count):
        t0 = now_ns()
        conn.send_raw(req)
        status, _ = conn.read_response()
        if status != 200:
            raise RuntimeError(f"GET / -> {status}")
        if i >= warmup:
            times.append((now_ns() - t0) / 1e3)
    time.sleep(0.5)  # settle before reading memory; not synchronisation
    mem = rollup(pid)
    sock.close()
    stop(pid)
    return {"get_us": summary(times)["median"],
            "rss_kb": mem["Rss"], "private_kb": mem["Private_Clean"] + mem["Private_Dirty"],
            "private_dirty_kb": mem["Private_Dirty"]}


def main():
    embers = sys.argv[1:]
    if not embers:
        sys.exit(__doc__)
    for e in embers:
        print(subprocess.run(["size", e], capture_output=True, text=True, check=True).stdout
              .splitlines()[-1])
    # A binary written moments ago is dirty page cache, which smaps counts
    # as Private_Dirty of the process mapping it.
    os.sync()
    with tempfile.TemporaryDirectory() as work:
        rounds = {e: [] for e in embers}
        for _ in range(6):
            for e in embers:
                st = bench_startup(e, work, runs=20)["stats"]
                rounds[e].append(st["wall_accept_ms"]["median"])
        for e in embers:
            start = statistics.median(rounds[e])
            lat = idle_and_latency(e, work)
            print(f"{e}: exec->socket {start:.2f} ms, " +
                  ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in lat.items()))


if __name__ == "__main__":
    main()
