"""Native part of Ember's benchmark (no guest boot needed).

  native.py OUT.json

1. startup: exec -> the API socket accepts a connection, and -> the first
   API response; wall time and the child's CPU time at that moment.
2. api: PUT /machine-config round trips on one keep-alive connection, and
   the same client against a canned responder (the floor: client + kernel).
3. create: exec -> PUT /actions InstanceStart answered 204, one process
   after the other (needs a real kernel: EMBER_KERNEL_VMLINUX), with the
   phases Ember logs at Info once the VM is built (build_phases).

How CPU time is taken: right after connect() (or the awaited response)
returns, the bench stops the child (SIGSTOP, then waitpid(WUNTRACED)) and
reads its CPU-time clock, clock_getcpuclockid(3): user+sys of every thread,
exited ones included, in ns. Reading the clock of a process that is still
running would miss the time its running threads have used since their last
scheduler tick or context switch (for a process that started a few ms ago,
possibly all of it). Once it is stopped and off the CPU, the clock is exact:
the bench reads it until two reads agree (cpu_when_stopped). What the child
runs between the event and the stop (a few microseconds, plus taking the
signal) is counted against it. The child then continues (SIGCONT) and the
stopped interval is left out of its wall time. The child's rusage at its
clean exit (SIGTERM, wait4) is recorded too, as an upper bound that includes
shutdown; its user/sys split is sampled by the scheduler tick, so only the
sum is meaningful.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import sys
import tempfile
import time

from benchlib import (INSTANCE_START, HttpConn, boot_source, connect_spin, env_int,
                      machine_config, now_ns, process_cpu_clock, process_cpu_ns,
                      summary, write_json)

MS = 1e6  # ns per ms
US = 1e3  # ns per us


def spawn(argv, log_path):
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
    ]
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)


def cpu_when_stopped(pid, clock) -> int:
    """Stop the child, read its CPU clock (ns), leave it stopped.

    waitpid() reports the stop as soon as the last thread has notified us,
    which it does just before it calls schedule(): the time it ran since its
    last accounting point is added only when it leaves the CPU. A child that
    never left its CPU since exec can still read ~0 at that instant. So the
    clock is read until two reads 200 us apart agree: a stopped process's
    clock cannot move once it is off the CPU."""
    os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        raise RuntimeError(f"process {pid} ended (status {status:#x}) instead of stopping")
    last = process_cpu_ns(clock)
    for _ in range(100):
        time.sleep(0.0002)
        now = process_cpu_ns(clock)
        if now == last:
            return now
        last = now
    raise RuntimeError(f"process {pid}: its CPU clock still moves while it is stopped")


def rusage_ms(ru) -> float:
    return (ru.ru_utime + ru.ru_stime) * 1e3


def stop(pid, sig=signal.SIGTERM):
    """Signal and reap; returns (exit status, rusage)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    _, status, ru = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), ru


def bench_startup(ember, work, runs, warmup=2):
    samples = []
    for i in range(warmup + runs):
        path = f"{work}/start-{i}.sock"
        t0 = now_ns()
        pid = spawn([ember, "--api-sock", path], f"{work}/start.log")
        clock = process_cpu_clock(pid)
        sock, attempts = connect_spin(path, pid)
        t1 = now_ns()
        cpu1 = cpu_when_stopped(pid, clock)
        t_cont = now_ns()
        os.kill(pid, signal.SIGCONT)
        conn = HttpConn(sock)
        conn.expect("GET", "/", status=200)
        t2 = now_ns() - (t_cont - t1)  # without the time it was stopped
        cpu2 = cpu_when_stopped(pid, clock)
        os.kill(pid, signal.SIGCONT)
        sock.close()
        code, ru = stop(pid)
        if code != 0:
            raise RuntimeError(f"ember --api-sock exited with {code} on SIGTERM (see {work}/start.log)")
        if i < warmup:
            continue
        samples.append({
            "wall_accept_ms": (t1 - t0) / MS, "cpu_accept_ms": cpu1 / MS,
            "wall_response_ms": (t2 - t0) / MS, "cpu_response_ms": cpu2 / MS,
            "cpu_exit_ms": rusage_ms(ru), "connect_attempts": attempts,
        })
    keys = [k for k in samples[0] if k != "connect_attempts"]
    return {"runs": runs, "warmup": warmup, "samples": samples,
            "stats": {k: summary([s[k] for s in samples]) for k in keys}}


def time_requests(conn, request: bytes, count: int, warmup: int):
    """Round-trip times (us) of `count` identical requests, after `warmup`."""
    times = []
    for i in range(warmup + count):
        t0 = now_ns()
        conn.send_raw(request)
        status, body = conn.read_response()
        t1 = now_ns()
        if status != 204:
            raise RuntimeError(f"HTTP {status} {body[:200]!r}, expected 204")
        if i >= warmup:
            times.append((t1 - t0) / US)
    return times


def canned_server(path):
    """Fork a process that answers every request with a fixed 204: the floor
    of what this client and the kernel's Unix sockets cost per round trip."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    try:
        conn, _ = listener.accept()
        http = HttpConn(conn)
        reply = b"HTTP/1.1 204 No Content\r\nServer: floor\r\n\r\n"
        while True:
            while b"\r\n\r\n" not in http.buf:
                chunk = conn.recv(65536)
                if not chunk:
                    os._exit(0)
                http.buf += chunk
            head, _, rest = http.buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                rest += conn.recv(65536)
            http.buf = rest[length:]
            conn.sendall(reply)
    finally:
        os._exit(0)


def bench_api(ember, work, count, warmup=200):
    request = HttpConn.encode("PUT", "/machine-config", machine_config(2, 256))
    path = f"{work}/api.sock"
    pid = spawn([ember, "--api-sock", path], f"{work}/api.log")
    sock, _ = connect_spin(path, pid)
    times = time_requests(HttpConn(sock), request, count, warmup)
    sock.close()
    stop(pid)

    floor_path = f"{work}/floor.sock"
    fpid = canned_server(floor_path)
    fsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fsock.connect(floor_path)
    floor = time_requests(HttpConn(fsock), request, count, warmup)
    fsock.close()
    os.waitpid(fpid, 0)
    return {"requests": count, "warmup": warmup, "request_bytes": len(request),
            "stats": {"ember_us": summary(times), "floor_us": summary(floor)},
            "ember_raw_us": times, "floor_raw_us": floor}


def build_phases(log_path) -> dict:
    """The per-phase times Ember logs at Info once the VM is built (ms):
    'VM build phases (ms): total=... memory=... kvm=... load=...'. Empty
    if the line is missing (an older Ember)."""
    with open(log_path, errors="replace") as f:
        for line in f:
            if "VM build phases (ms):" in line:
                fields = line.split("VM build phases (ms):", 1)[1].split()
                return {k: float(v) for k, v in (x.split("=", 1) for x in fields if "=" in x)}
    return {}


def bench_create(ember, work, runs, kernel, initrd, warmup=1):
    """exec -> InstanceStart 204, back to back, one process at a time."""
    boot_args = "console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 ember.end=wait"
    requests = [
        ("/boot-source", boot_source(kernel, initrd, boot_args)),
        ("/machine-config", machine_config(1, 128)),
    ]
    samples = []
    loop_t0 = None
    for i in range(warmup + runs):
        if i == warmup:
            loop_t0 = now_ns()
        path = f"{work}/create-{i}.sock"
        log = f"{work}/create-{i}.log"
        t0 = now_ns()
        pid = spawn([ember, "--api-sock", path, "--level", "Info"], log)
        clock = process_cpu_clock(pid)
        try:
            sock, _ = connect_spin(path, pid)
            t_acc = now_ns()
            conn = HttpConn(sock)
            for url, body in requests:
                conn.expect("PUT", url, body)
            t_is = now_ns()
            status, body = conn.request("PUT", "/actions", INSTANCE_START)
            t1 = now_ns()
            cpu1 = cpu_when_stopped(pid, clock)
            sock.close()
        finally:
            stop(pid, signal.SIGKILL)
        if status != 204:
            return {"error": f"InstanceStart: HTTP {status} {body[:300].decode(errors='replace')}"}
        if i >= warmup:
            sample = {"exec_to_start_ms": (t1 - t0) / MS, "start_req_ms": (t1 - t_is) / MS,
                      "cpu_ms": cpu1 / MS, "exec_to_accept_ms": (t_acc - t0) / MS,
                      "config_reqs_ms": (t_is - t_acc) / MS}
            phases = build_phases(log)
            if phases:
                sample.update({f"build_{k}_ms": v for k, v in phases.items()})
                sample["start_req_rest_ms"] = sample["start_req_ms"] - phases["total"]
            samples.append(sample)
        os.unlink(log)
    loop_ms = (now_ns() - loop_t0) / MS
    total_ms = sum(s["exec_to_start_ms"] for s in samples)
    return {"runs": runs, "kernel": kernel, "initrd": initrd, "vcpus": 1, "mem_mib": 128,
            "samples": samples,
            "stats": {k: summary([s.get(k) for s in samples]) for k in samples[0]},
            "per_s": runs / (total_ms / 1e3),
            "per_s_with_teardown": runs / (loop_ms / 1e3)}


def host_facts() -> dict:
    model, virtual = "", False
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                virtual = "hypervisor" in line.split()
                break
    kvm = "none"
    if os.path.exists("/dev/kvm"):
        kvm = next((m for m in ("kvm_pvm", "kvm_intel", "kvm_amd")
                    if os.path.exists(f"/sys/module/{m}")), "kvm")
    return {"cpu": model, "nproc": os.cpu_count(), "kernel": platform.release(),
            "hostname": platform.node(), "kvm": kvm, "loadavg": os.getloadavg(),
            "virtual": virtual,
            "other_qemus": count_qemus()}


def count_qemus() -> int:
    """QEMU processes running besides ours (other users' VMs add noise)."""
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    n += f.read().startswith("qemu-system")
            except OSError:
                pass
    return n


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    ember = os.environ["EMBER_BIN"]
    startup_runs = env_int("EMBER_BENCH_STARTUP_RUNS", 10 if quick else 50)
    requests = env_int("EMBER_BENCH_REQUESTS", 500 if quick else 5000)
    create_runs = env_int("EMBER_BENCH_CREATE_RUNS", 10 if quick else 30)
    result = {"host": host_facts(), "ember": ember, "quick": quick}
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as work:
        print(f"bench: startup, {startup_runs} runs", file=sys.stderr)
        result["startup"] = bench_startup(ember, work, startup_runs)
        print(f"bench: API round trips, {requests} requests", file=sys.stderr)
        result["api"] = bench_api(ember, work, requests)
        kernel = os.environ.get("EMBER_KERNEL_VMLINUX")
        if kernel:
            print(f"bench: exec -> InstanceStart, {create_runs} runs", file=sys.stderr)
            result["create"] = bench_create(ember, work, create_runs, kernel,
                                            os.environ.get("EMBER_INITRAMFS"))
    result["host"]["loadavg_end"] = os.getloadavg()
    result["commands"] = {
        "startup": f"{ember} --api-sock SOCK   (then connect in a tight loop; GET /)",
        "api": f"{ember} --api-sock SOCK   (PUT /machine-config {machine_config(2, 256)}, keep-alive)",
        "create": f"{ember} --api-sock SOCK   (PUT /boot-source, PUT /machine-config, PUT /actions InstanceStart)",
    }
    write_json(out, result)


if __name__ == "__main__":
    main()
