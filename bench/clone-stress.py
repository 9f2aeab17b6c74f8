#!/usr/bin/python3
"""Restores clones of one snapshot over and over in the nested test host and
records how each fared, to find what makes restored guests triple-fault
there (issues 14 and 16, docs/reliability.md "Restored clones").

A source VM (the project's minimal vmlinux and busybox initramfs, a 4 MiB
data drive) runs the snapshot tests' counting loop (each second: drop the
page cache, hash the disk, read the VM Generation ID, count reseeds), is
paused and snapshotted once per variant (--fresh: once per round). Then,
ROUNDS times, CLONES fresh Embers load it at once and each must print
--counts more lines; a clone that exits first ("exit", with Ember's last stderr lines: the triple fault)
or prints nothing new for 20 s ("stall") is a failure.

On the host (the usual way), boots the test host and runs itself inside:

    bench/clone-stress.py --rounds 15 --variants file2,file1,uffd2 --out OUT.jsonl
    bench/clone-stress.py --report OUT.jsonl

Variants are a backend, the clones at once and the vCPUs:
file2 (File, 2 clones, 2 vCPUs: the failing test's shape), file1, uffd2,
file2-1cpu.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))
from benchlib import parse_variants  # noqa: E402
from ember_harness import guest_boot_args  # noqa: E402
from test_snapshot import COUNTER  # noqa: E402

# backend, clones at once, vCPUs, extra environment for the clones
VARIANTS = {
    "file2": ("File", 2, 2, {}),
    "file1": ("File", 1, 2, {}),
    "uffd2": ("Uffd", 2, 2, {}),
    "file2-1cpu": ("File", 2, 1, {}),
}
STALL_S = 20
TAIL = 6


def request(sock_path: str, method: str, path: str, body=None, timeout=60) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    deadline = time.monotonic() + 10
    while True:
        try:
            s.connect(sock_path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)  # the socket is not there yet; polling its creation
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    buf = b""
    while chunk := s.recv(65536):
        buf += chunk
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest.decode(errors="replace")


class Vmm:
    """An Ember with its console and stderr read into lists of lines."""

    def __init__(self, argv: list[str], env: dict):
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(p, l), daemon=True)
                        for p, l in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    def _read(self, pipe, lines):
        for raw in pipe:
            with self.changed:
                lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                self.changed.notify_all()
        with self.changed:
            lines.append("\0EOF")
            self.changed.notify_all()

    def counts(self) -> list[int]:
        return [int(l.split("EMBER-COUNT=")[1].split(":")[0]) for l in list(self.out)
                if "EMBER-COUNT=" in l]

    def wait_counts(self, n: int) -> str:
        """"ok" once n more count lines than now arrived, "exit" if the
        console closed first, "stall" after STALL_S without a new one."""
        start = len(self.counts())
        seen, since = 0, time.monotonic()
        with self.changed:
            while True:
                got = len(self.counts()) - start
                if got >= n:
                    return "ok"
                if self.out and self.out[-1] == "\0EOF":
                    return "exit"
                if got != seen:
                    seen, since = got, time.monotonic()
                left = since + STALL_S - time.monotonic()
                if left <= 0:
                    return "stall"
                self.changed.wait(left)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self.threads:
            t.join(5)


def make_snapshot(a, work: Path, vcpus: int) -> tuple[Path, Path, int]:
    disk = work / "data.img"
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    sock = str(work / "src.sock")
    code = base64.b64encode(COUNTER.encode()).decode()
    vm = Vmm([a.ember, "--api-sock", sock], dict(os.environ))
    try:
        for path, body in (("/boot-source", {"kernel_image_path": a.kernel, "initrd_path": a.initrd,
                                             "boot_args": guest_boot_args(
                                                 "script", end="wait",
                                                 extra=f"ember.script={code}")}),
                           ("/machine-config", {"vcpu_count": vcpus, "mem_size_mib": 128}),
                           ("/drives/data", {"drive_id": "data", "path_on_host": str(disk),
                                             "is_root_device": False, "is_read_only": False}),
                           ("/actions", {"action_type": "InstanceStart"})):
            st, text = request(sock, "PUT", path, body)
            assert st == 204, (path, st, text)
        if vm.wait_counts(3) != "ok":
            raise RuntimeError("the source VM did not count: " + " | ".join(vm.err[-TAIL:]))
        st, text = request(sock, "PATCH", "/vm", {"state": "Paused"})
        assert st == 204, text
        snap, mem = work / "vm.snap", work / "vm.mem"
        st, text = request(sock, "PUT", "/snapshot/create",
                           {"snapshot_path": str(snap), "mem_file_path": str(mem)})
        assert st == 204, text
        return snap, mem, vm.counts()[-1]
    finally:
        vm.stop()


def one_round(a, variant: str, work: Path, snap: Path, mem: Path, last: int, rnd: int) -> list[dict]:
    backend, nclones, _, extra = VARIANTS[variant]
    env = dict(os.environ, **extra)
    vms, handlers = [], []
    try:
        socks = []
        for i in range(nclones):
            sock = str(work / f"clone{rnd}-{i}.sock")
            socks.append(sock)
            vms.append(Vmm([a.ember, "--api-sock", sock], env))
        bodies = []
        for i in range(nclones):
            backend_path = str(mem)
            if backend == "Uffd":
                backend_path = str(work / f"uffd{rnd}-{i}.sock")
                h = subprocess.Popen([str(Path(a.ember).parent / "uffd-handler"), backend_path,
                                      str(mem)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
                handlers.append(h)
                assert h.stdout.readline().strip() == "uffd-handler: listening"
            bodies.append({"snapshot_path": str(snap), "resume_vm": True,
                           "mem_backend": {"backend_type": backend, "backend_path": backend_path}})
        answers = [None] * nclones

        def load(i):
            answers[i] = request(socks[i], "PUT", "/snapshot/load", bodies[i])
        threads = [threading.Thread(target=load, args=(i,)) for i in range(nclones)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = []
        outcomes = [None] * nclones

        def watch(i):
            outcomes[i] = vms[i].wait_counts(a.counts) if answers[i][0] == 204 else "load-failed"
        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(nclones)]
        for t in watchers:
            t.start()
        for t in watchers:
            t.join()
        for i, vm in enumerate(vms):
            got = vm.counts()
            rec = {"variant": variant, "round": rnd, "clone": i, "outcome": outcomes[i],
                   "seconds": round(time.monotonic() - t0, 1), "snapshot_last": last,
                   "counts_after": len(got), "first": got[0] if got else None,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            if outcomes[i] != "ok":
                time.sleep(0.2)  # let the exiting Ember's last stderr lines arrive; not sync
                rec.update(status=vm.proc.poll(), load=answers[i],
                           console_tail=[l for l in vm.out if l != "\0EOF"][-TAIL:],
                           stderr_tail=[l for l in vm.err if l != "\0EOF"][-TAIL:])
            recs.append(rec)
        return recs
    finally:
        for vm in vms:
            vm.stop()
        for h in handlers:
            h.kill()
            h.wait()


def inside(a) -> int:
    out = open(a.out, "a")
    current = a.out + ".current"
    for variant in a.variants:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            snap, mem, last = make_snapshot(a, work, VARIANTS[variant][2])
            for rnd in range(a.rounds):
                Path(current).write_text(variant)
                if a.fresh and rnd:
                    snap, mem, last = make_snapshot(a, work, VARIANTS[variant][2])
                for rec in one_round(a, variant, work, snap, mem, last, rnd):
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    tail = "" if rec["outcome"] == "ok" else f": {rec['stderr_tail'][-1:]}"
                    print(f"{variant} round {rnd} clone {rec['clone']}: {rec['outcome']} "
                          f"{rec['seconds']} s{tail}", flush=True)
    Path(current).unlink(missing_ok=True)
    return 0


def report(path: str) -> int:
    recs = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    by = collections.defaultdict(list)
    for r in recs:
        by[r["variant"]].append(r)
    print("| variant | clones run | went on counting | triple fault / exit | stall | test host died |")
    print("|---|---|---|---|---|---|")
    for v, rs in by.items():
        n = collections.Counter(r["outcome"] for r in rs)
        print(f"| {v} | {len(rs)} | {n['ok']} | {n['exit']} | {n['stall']} | {n['host-died']} |")
    return 0


def outside(a) -> int:
    kernel = a.kernel or os.environ.get("EMBER_KERNEL_VMLINUX")
    initrd = a.initrd or os.environ.get("EMBER_INITRAMFS")
    if not kernel or not initrd:
        sys.exit("clone-stress: set EMBER_KERNEL_VMLINUX and EMBER_INITRAMFS "
                 "(eval \"$(tools/guest/artifacts.sh)\") or give --kernel/--initrd")
    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    results = tempfile.mkdtemp(prefix="clone-stress.")
    inner = Path(results) / "clones.jsonl"
    cmd = [str(ROOT / "tools/testhost/run"), "--results", results, "--",
           "/usr/bin/python3", str(Path(__file__).resolve()), "--inside",
           "--variants", ",".join(a.variants), "--rounds", str(a.rounds),
           "--counts", str(a.counts), *(["--fresh"] if a.fresh else []), "--ember", str(Path(a.ember).resolve()),
           "--kernel", kernel, "--initrd", initrd, "--out", str(inner)]
    run = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(run.stderr)
    with open(out, "a") as f:
        if inner.exists():
            f.write(inner.read_text())
        current = Path(str(inner) + ".current")
        if run.returncode in (124, 125) and current.exists():
            f.write(json.dumps({"variant": current.read_text().strip(), "outcome": "host-died",
                                "status": run.returncode,
                                "console_tail": run.stderr.splitlines()[-TAIL:]}) + "\n")
    subprocess.run(["rm", "-rf", results])
    report(str(out))
    return run.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--counts", type=int, default=5, help="count lines each clone must print")
    p.add_argument("--variants", default="file2")
    p.add_argument("--fresh", action="store_true",
                   help="a new source VM and snapshot for every round (a snapshot's moment "
                        "may matter more than its restore)")
    p.add_argument("--ember", default=str(ROOT / "build/ember"))
    p.add_argument("--kernel")
    p.add_argument("--initrd")
    p.add_argument("--out", default="/tmp/clone-stress.jsonl")
    p.add_argument("--report", metavar="JSONL")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.report:
        return report(a.report)
    a.variants = parse_variants(p, a.variants, VARIANTS)
    return inside(a) if a.inside else outside(a)


if __name__ == "__main__":
    sys.exit(main())
