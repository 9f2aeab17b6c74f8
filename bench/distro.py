"""Distro part of Ember's benchmark: an unmodified Debian 12 (systemd, Debian's
kernel and initramfs-tools initrd, an ext4 root drive) booted under Ember and
under QEMU's microvm, until systemd says the boot is over (issue 17).

  distro.py OUT.json

The image comes from tools/guest/build-debian-distro.sh (EMBER_DISTRO_DIR):
its ember-ready.service prints "EMBER-READY: <systemctl is-system-running
--wait>" on the serial console when the boot is over. Each boot gets its own
fresh, private, writable copy of the pristine image on this host's own
filesystem (sparse copy into a temporary directory; in the test host that is
its RAM-backed overlay), so every boot is the same first boot and neither
VMM sees the other's writes. Rounds interleave the VMMs, and alternate which
goes first, so a slow phase of the machine hits both. Time: exec to the
marker (and the state it reports). 2 vCPUs, 512 MiB, the same command line
for both. Needs a /dev/kvm that boots standard guests (bench/run runs this in
the nested test host).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import env_int, now_ns, percentile, write_json
from guest import facts

VCPUS = 2
MEM_MIB = 512
BOOT_ARGS = "console=ttyS0 reboot=k panic=1 root=/dev/vda rw quiet"
MARKER = re.compile(rb"EMBER-READY: (\w+)")
# After the marker the guest prints systemd-analyze's account of the boot
# (build-debian-distro.sh); read, not timed.
ANALYZED_END = b"EMBER-ANALYZE-END"
ANALYZE_BOUND_S = 60
# The kernel's first timestamped console line (with `quiet`, an error such
# as "PCI: Fatal: ..." that microvm's missing PCI makes it print): its
# arrival minus its timestamp is when the guest kernel's clock started.
PRINTK = re.compile(r"^\[\s*(\d+\.\d+)\] ")
PHASES = ("kernel", "initrd", "userspace")
MS = 1e6


def span_s(text: str) -> float | None:
    """systemd's time span ("1min 2.345s", "850ms", "3.2s") in seconds."""
    units = {"min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "h": 3600.0}
    parts = re.findall(r"([\d.]+)(min|ms|us|h|s)\b", text)
    return sum(float(n) * units[u] for n, u in parts) if parts else None


def analyze(lines: list[str]) -> dict:
    """The phases of `systemd-analyze time` and the slowest units of
    `systemd-analyze blame`, from the guest's EMBER-ANALYZE/-BLAME lines."""
    out = {"phases": {}, "blame": []}
    for line in lines:
        if line.startswith("EMBER-ANALYZE: "):
            for text, phase in re.findall(r"((?:[\d.]+(?:min|ms|us|h|s)\s*)+)\((\w+)\)", line):
                if phase in PHASES:
                    out["phases"][phase] = span_s(text)
        elif line.startswith("EMBER-BLAME: "):
            out["blame"].append(line[len("EMBER-BLAME: "):].strip())
    return out


def ember_argv(ember, d, image, work):
    path = os.path.join(work, "vm.json")
    with open(path, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": f"{d}/vmlinuz",
                                   "initrd_path": f"{d}/initrd.img", "boot_args": BOOT_ARGS},
                   "drives": [{"drive_id": "rootfs", "path_on_host": image,
                               "is_root_device": True, "is_read_only": False}],
                   "machine-config": {"vcpu_count": VCPUS, "mem_size_mib": MEM_MIB}}, f)
    return [ember, "--no-api", "--config-file", path, "--level", "Warning"]


def qemu_argv(qemu, d, image, work):
    return [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm", "-cpu", "host",
            "-smp", str(VCPUS), "-m", f"{MEM_MIB}M", "-nodefaults", "-no-user-config",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", f"{d}/vmlinuz", "-initrd", f"{d}/initrd.img", "-append", BOOT_ARGS,
            "-drive", f"id=rootfs,file={image},format=raw,if=none",
            "-device", "virtio-blk-device,drive=rootfs"]


# KVM's per-VM counters (debugfs, /sys/kernel/debug/kvm/<pid>-<fd>/), read
# when the marker arrives: where each VMM makes the guest exit, and how often.
KVM_DEBUGFS = "/sys/kernel/debug/kvm"
KVM_STATS = ("exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
             "irq_injections", "nmi_injections", "request_irq_exits", "signal_exits",
             "halt_successful_poll", "halt_attempted_poll", "halt_wakeup", "pf_taken",
             "pf_fixed", "insn_emulation", "hypercalls", "tlb_flush", "host_state_reload")


def mount_debugfs():
    if not os.path.isdir(KVM_DEBUGFS):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"],
                       stderr=subprocess.DEVNULL)


def kvm_dirs():
    try:
        return set(os.listdir(KVM_DEBUGFS))
    except OSError:
        return set()


def kvm_stats(before):
    """The counters (summed over its vCPUs by KVM) of the VM made since
    `before` was listed: the one VMM running. Its directory is named after
    the thread that created the VM, not the process, so the pid would not do."""
    dirs = kvm_dirs() - before
    stats = {}
    for d in dirs:
        for name in KVM_STATS:
            try:
                with open(os.path.join(KVM_DEBUGFS, d, name)) as f:
                    stats[name] = stats.get(name, 0) + int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return stats


def one_boot(kind, argv, bound_s):
    """Runs one VMM until the marker (or EOF, or the bound); returns the
    record. The console is drained to the end so the VMM never waits on it."""
    before = kvm_dirs()
    t0 = now_ns()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, bufsize=0)
    seen, analyzed = threading.Event(), threading.Event()
    state = {"tail": [], "ms": None, "result": None, "analyze": [], "clock0_ms": None}

    def read():
        buf = b""
        for raw in proc.stdout:
            buf = (buf + raw)[-4096:]
            line = raw.decode(errors="replace").rstrip()
            state["tail"] = (state["tail"] + [line])[-8:]
            k = PRINTK.match(line)
            if k and state["clock0_ms"] is None:
                state["clock0_ms"] = (now_ns() - t0) / MS - float(k.group(1)) * 1e3
            m = MARKER.search(buf)
            if m and state["ms"] is None:
                state["ms"] = (now_ns() - t0) / MS
                state["result"] = m.group(1).decode()
                seen.set()
            if state["ms"] is not None and line.startswith(("EMBER-ANALYZE", "EMBER-BLAME")):
                state["analyze"].append(line)
            if ANALYZED_END in raw:
                analyzed.set()
        seen.set()
        analyzed.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen.wait(bound_s)
    stats = kvm_stats(before) if state["ms"] is not None else {}
    if state["ms"] is not None:
        analyzed.wait(ANALYZE_BOUND_S)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(5)
    rec = {"kind": kind, "ms": state["ms"], "state": state["result"], "kvm": stats,
           "clock0_ms": state["clock0_ms"],
           "systemd": analyze(state["analyze"])}
    if state["ms"] is None:
        rec["tail"] = state["tail"]
        rec["status"] = proc.returncode
    return rec


def resume(out, result) -> set[int]:
    """With EMBER_BENCH_RESUME=1 (bench/run's second test host, after the
    first one crashed), takes over the rounds an earlier attempt finished in
    OUT, if it measured the same set-up, and returns their numbers. A round
    with only one VMM's boot is run again whole, so rounds stay interleaved."""
    if os.environ.get("EMBER_BENCH_RESUME") != "1":
        return set()
    try:
        with open(out) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        return set()
    same = ("vcpus", "mem_mib", "boot_args", "image", "versions", "rounds_wanted")
    if any(prev.get(k) != result[k] for k in same):
        return set()
    kinds = {}
    for b in prev.get("boots", []):
        kinds.setdefault(b["round"], set()).add(b["kind"])
    done = {r for r, k in kinds.items() if k == {"ember", "qemu"}}
    result["boots"] = [b for b in prev["boots"] if b["round"] in done]
    result["elapsed_s"] = prev.get("elapsed_s", 0)
    result["resumed_after_rounds"] = prev.get("resumed_after_rounds", []) + [len(done)]
    return done


def main():
    out = sys.argv[1]
    quick = os.environ.get("EMBER_BENCH_QUICK") == "1"
    rounds = env_int("EMBER_BENCH_DISTRO_RUNS", 2 if quick else 5)
    bound_s = env_int("EMBER_BENCH_DISTRO_BOOT_S", 300)
    d = os.environ["EMBER_DISTRO_DIR"]
    ember = os.environ["EMBER_BIN"]
    qemu = os.environ.get("EMBER_BENCH_QEMU", "qemu-system-x86_64")
    with open(f"{d}/versions.txt") as f:
        versions = f.read().split("\n")
    result = {"host": facts(qemu), "vcpus": VCPUS, "mem_mib": MEM_MIB, "boot_args": BOOT_ARGS,
              "image": d, "versions": [v for v in versions if v], "rounds_wanted": rounds,
              "boots": [], "complete": False,
              "commands": {"ember": f"{ember} --no-api --config-file WORK/vm.json --level Warning "
                                    f"(boot-source DIR/vmlinuz, DIR/initrd.img, {BOOT_ARGS!r}; "
                                    f"drive rootfs: COPY, root; {VCPUS} vCPUs, {MEM_MIB} MiB)",
                           "qemu": " ".join(qemu_argv(qemu, "DIR", "COPY", "."))}}
    done = resume(out, result)
    mount_debugfs()
    kinds = (("ember", ember_argv, ember), ("qemu", qemu_argv, qemu))
    start = time.monotonic() - result.get("elapsed_s", 0)
    for r in range(rounds):
        if r in done:
            continue
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind, fn, binary in order:
            with tempfile.TemporaryDirectory(prefix="ember-bench-distro-") as work:
                image = os.path.join(work, "rootfs.ext4")
                # A private copy per boot; cp keeps it sparse.
                subprocess.run(["cp", "--sparse=always", f"{d}/rootfs.ext4", image], check=True)
                rec = one_boot(kind, fn(binary, d, image, work), bound_s)
            rec["round"] = r
            result["boots"].append(rec)
            got = f"{rec['ms'] / 1000:.1f} s ({rec['state']})" if rec["ms"] else \
                f"no marker: {rec['tail'][-2:]}"
            print(f"bench: distro {kind} round {r + 1}/{rounds}: {got}", file=sys.stderr, flush=True)
            result["elapsed_s"] = time.monotonic() - start
            write_json(out, result)
    result["complete"] = True
    write_json(out, result)


def section(d):
    """Report lines (bench/report.py)."""
    out = ["## 10. A real distro: Debian 12 with systemd, Ember against QEMU microvm", "",
           f"Unmodified Debian 12 ({', '.join(d['versions'])}), {d['vcpus']} vCPUs, "
           f"{d['mem_mib']} MiB, an ext4 root drive (a fresh private copy per boot), Debian's "
           "initramfs-tools initrd; time from exec to `systemctl is-system-running --wait` "
           "answering on the console (tools/guest/build-debian-distro.sh). Rounds interleave "
           "the two VMMs. Goal (issue 17): Ember <= 0.65x QEMU, as a median.", "",
           "| VMM | boots | reached the end | median s | min s | max s | states |",
           "|---|---|---|---|---|---|---|"]
    med = {}
    for kind in ("ember", "qemu"):
        rs = [b for b in d["boots"] if b["kind"] == kind]
        ms = sorted(b["ms"] for b in rs if b["ms"])
        states = sorted({b["state"] for b in rs if b["state"]})
        if ms:
            med[kind] = percentile(ms, 50)
            out.append(f"| {kind} | {len(rs)} | {len(ms)} | {med[kind] / 1000:.1f} | "
                       f"{ms[0] / 1000:.1f} | {ms[-1] / 1000:.1f} | {', '.join(states)} |")
        else:
            out.append(f"| {kind} | {len(rs)} | 0 | - | - | - | - |")
    if len(med) == 2:
        out += ["", f"Ember / QEMU (medians): **{med['ember'] / med['qemu']:.2f}**"]
    # In the order they ran: in the test host a boot's time also depends
    # on what ran before it (bench/README.md, part 10).
    out += ["", "Boots in the order they ran (s): " + ", ".join(
        f"{b['kind']} {b['ms'] / 1000:.1f}" if b["ms"] else f"{b['kind']} -" for b in d["boots"])]
    rows = []
    for name in KVM_STATS:
        meds = {}
        for kind in ("ember", "qemu"):
            v = sorted(b["kvm"][name] for b in d["boots"]
                       if b["kind"] == kind and b.get("kvm") and name in b["kvm"])
            if v:
                meds[kind] = v[len(v) // 2]
        if len(meds) == 2 and (meds["ember"] or meds["qemu"]):
            r = f"{meds['ember'] / meds['qemu']:.2f}" if meds["qemu"] else "-"
            rows.append(f"| {name} | {meds['ember']} | {meds['qemu']} | {r} |")
    if rows:
        out += ["", "KVM's counters for the VM at the marker (debugfs; medians over the boots): "
                "where each VMM makes the guest exit.", "",
                "| counter | Ember | QEMU | ratio |", "|---|---|---|---|"] + rows
    out += split_lines(d)
    out += systemd_lines(d)
    failed = [b for b in d["boots"] if not b["ms"]]
    for b in failed:
        out += ["", f"- {b['kind']} round {b['round'] + 1}: no end marker (status "
                f"{b.get('status')}); last lines: `{' | '.join(b.get('tail', [])[-3:])}`"]
    for n in d.get("resumed_after_rounds", []):
        out += ["", f"The test host crashed after {n} complete round(s); the rest ran in a "
                "fresh one (bench/run's second try)."]
    if not d.get("complete"):
        out += ["", "Incomplete: the part stopped before every round ran."]
    return out


def split_lines(d) -> list[str]:
    """Each boot split where the guest kernel's clock starts: before it, the
    VMM's start, its firmware (QEMU's) and loading, and the kernel's own
    decompression; after it, the guest's boot to the marker."""
    rows = []
    for name, f in (("exec -> guest kernel's clock starts", lambda b: b["clock0_ms"]),
                    ("guest kernel's clock starts -> marker", lambda b: b["ms"] - b["clock0_ms"])):
        got = {k: [f(b) for b in d["boots"] if b["kind"] == k and b["ms"] and b.get("clock0_ms")]
               for k in ("ember", "qemu")}
        if not got["ember"] or not got["qemu"]:
            return []
        m = {k: percentile(v, 50) for k, v in got.items()}
        rows.append(f"| {name} | {m['ember'] / 1000:.1f} | {m['qemu'] / 1000:.1f} | "
                    f"{m['ember'] / m['qemu']:.2f} |")
    return (["", "Each boot split where the guest kernel's clock starts (the arrival of its first "
             "timestamped console line minus that timestamp; medians in s). Before it: the VMM's "
             "start, its firmware (QEMU's) and loading, and the kernel decompressing itself.", "",
             "| span | Ember | QEMU | ratio |", "|---|---|---|---|"] + rows)


def systemd_lines(d) -> list[str]:
    """Where the guest says its boot's time went, per VMM: medians of
    `systemd-analyze time`'s phases, and the slowest units of the boot
    nearest the median."""
    rows, blame = [], []
    meds = {}
    for kind in ("ember", "qemu"):
        rs = [b for b in d["boots"] if b["kind"] == kind and b.get("systemd", {}).get("phases")]
        for phase in PHASES:
            v = sorted(b["systemd"]["phases"][phase] for b in rs if phase in b["systemd"]["phases"])
            if v:
                meds[(kind, phase)] = v[len(v) // 2]
        if rs:
            mid = sorted(rs, key=lambda b: b["ms"])[len(rs) // 2]
            blame.append(f"- {kind} (boot of {mid['ms'] / 1000:.1f} s): "
                         + "; ".join(f"`{u}`" for u in mid["systemd"]["blame"][:6]))
    for phase in PHASES:
        e, q = meds.get(("ember", phase)), meds.get(("qemu", phase))
        if e is None and q is None:
            continue
        ratio = f"{e / q:.2f}" if e is not None and q else "-"
        fmt = lambda x: f"{x:.1f}" if x is not None else "-"  # noqa: E731
        rows.append(f"| {phase} | {fmt(e)} | {fmt(q)} | {ratio} |")
    if not rows:
        return []
    return (["", "Where the guest says the time went (`systemd-analyze time`, guest clock, "
             "medians in s), and the slowest units (`systemd-analyze blame`):", "",
             "| phase | Ember | QEMU | ratio |", "|---|---|---|---|"] + rows + [""] + blame)


if __name__ == "__main__":
    main()
