"""Writes the benchmark's results: Markdown, JSON and a gnuplot PNG.

  report.py WORKDIR OUTDIR ELAPSED_S

WORKDIR holds native.json, guest.json and/or io.json (from native.py,
guest.py and guest_io.py; report_io.py writes the last one's sections);
OUTDIR gets <date>-<host>.md, .json and .png (<date>-<host>-<parts>.* for a
run of only some parts). Reports numbers only.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys

import density
import distro
import guest_balloon
import report_io
from benchlib import summary, write_json

TCG_NOTE = ("The guest part ran inside the nested test host: a QEMU **TCG** VM emulating an AMD "
            "CPU with SVM+NPT, in which kvm_amd runs under emulation. TCG inflates guest times "
            "20-40x (every exit of a nested guest is handled by emulated code), so the absolute "
            "boot times below say nothing about real hardware: only the Ember/QEMU ratios, taken "
            "in one run with the two interleaved, mean anything.")


def load(work, name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def f(x, digits=2):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def spread(s, digits=2):
    """'median (q1-q3; min-max) n=N' of a summary."""
    if not s or not s.get("n"):
        return "-"
    return (f"{f(s['median'], digits)} ({f(s['q1'], digits)}-{f(s['q3'], digits)}; "
            f"{f(s['min'], digits)}-{f(s['max'], digits)}) n={s['n']}")


def machine_lines(h, what):
    load_end = h.get("loadavg_end")
    virtual = {True: " (itself a virtual machine: the CPU flags say hypervisor)", False: ""}.get(
        h.get("virtual"), "")
    return [f"- {what}: {h['cpu']}, {h['nproc']} CPUs{virtual}, Linux {h['kernel']}, /dev/kvm: {h['kvm']}; "
            f"load average {h['loadavg'][0]:.2f} at start"
            + (f", {load_end[0]:.2f} at end" if load_end else "")
            + (f"; {h['other_qemus']} other QEMU process(es) were running at the start"
               if h.get("other_qemus") else "")]


def native_section(n):
    out = []
    st = n["startup"]["stats"]
    out += ["## 1. Start-up: exec -> API socket (native)", "",
            f"{n['startup']['runs']} runs after {n['startup']['warmup']} warm-ups; `ember --api-sock SOCK`, "
            "the bench connecting in a tight loop. CPU = user+sys of all of Ember's threads, "
            "read from its CPU-time clock while it is stopped (SIGSTOP) right after the event.", "",
            "| metric | median | p90 | min | max | target |", "|---|---|---|---|---|---|"]
    rows = [("exec -> socket accepts, CPU ms", "cpu_accept_ms", "<= 4"),
            ("exec -> socket accepts, wall ms", "wall_accept_ms", ""),
            ("exec -> first response (GET /), CPU ms", "cpu_response_ms", ""),
            ("exec -> first response (GET /), wall ms", "wall_response_ms", ""),
            ("CPU to clean exit after SIGTERM (wait4 rusage), ms", "cpu_exit_ms", "")]
    for label, key, target in rows:
        s = st[key]
        out.append(f"| {label} | {f(s['median'])} | {f(s['p90'])} | {f(s['min'])} | {f(s['max'])} | {target} |")
    a = n["api"]["stats"]
    out += ["", "## 2. API round trip: PUT /machine-config (native)", "",
            f"{n['api']['requests']} requests after {n['api']['warmup']} warm-ups, one keep-alive "
            "connection, request and response timed in the Python client. The floor is the same "
            "client against a forked Python process that answers every request with a canned 204: "
            "what the client and the kernel's Unix sockets cost on their own.", "",
            "| server | p50 us | p90 us | p99 us | min us | max us | target |", "|---|---|---|---|---|---|---|"]
    for label, key, target in (("Ember", "ember_us", "p50 <= 100"), ("floor (canned 204)", "floor_us", "")):
        s = a[key]
        out.append(f"| {label} | {f(s['median'])} | {f(s['p90'])} | {f(s['p99'])} | {f(s['min'])} | "
                   f"{f(s['max'])} | {target} |")
    c = n.get("create")
    out += ["", "## 2b. Creation: exec -> InstanceStart accepted (native)", ""]
    if c is None:
        out.append("Not run (no guest kernel).")
    elif "error" in c:
        out.append(f"InstanceStart failed on this host: {c['error']}")
    else:
        cs = c["stats"]
        out += [f"{c['runs']} Ember processes, one after the other: exec, PUT /boot-source (the minimal "
                f"kernel and the initramfs), PUT /machine-config ({c['vcpus']} vCPU, {c['mem_mib']} MiB), "
                "PUT /actions InstanceStart until its 204; then SIGKILL and reap, untimed. "
                f"Host KVM: {n['host']['kvm']}"
                + (" -- InstanceStart succeeds here (the VM is built: memory, kernel and initrd "
                   "loaded, vCPU created and started), but PVM cannot run this standard guest, so "
                   "the guest never boots; the figure covers building and starting the VM only."
                   if n["host"]["kvm"] == "kvm_pvm" else "."), "",
                "| metric | median | p90 | min | max |", "|---|---|---|---|---|"]
        for label, key in (("exec -> InstanceStart 204, ms", "exec_to_start_ms"),
                           ("InstanceStart request alone, ms", "start_req_ms"),
                           ("Ember CPU at the 204, ms", "cpu_ms")):
            s = cs[key]
            out.append(f"| {label} | {f(s['median'])} | {f(s['p90'])} | {f(s['min'])} | {f(s['max'])} |")
        out += create_phases(cs)
        out += ["", f"Creation rate, one at a time: **{c['per_s']:.1f} per second** "
                f"(runs / sum of exec -> 204 times); {c['per_s_with_teardown']:.1f} per second "
                "counting the kill and reap of each process."]
    return out


# Phases of exec -> InstanceStart 204: the bench's own timestamps, then what
# Ember logs at Info once the VM is built (src/vmm/builder.c).
CREATE_PHASES = (
    ("exec -> API socket accepts (static start, seccomp set-up, main, listen)", "exec_to_accept_ms"),
    ("PUT /boot-source + PUT /machine-config", "config_reqs_ms"),
    ("InstanceStart: whole request", "start_req_ms"),
    ("- build: total", "build_total_ms"),
    ("- build: map guest RAM", "build_memory_ms"),
    ("- build: KVM side (VM, memslot, irqchip, PIT, CPUID) [overlaps load]", "build_kvm_ms"),
    ("- build: load kernel + initrd (pread, 2 threads) [overlaps KVM side]", "build_load_ms"),
    ("- build: wait for the KVM side after the load", "build_join_wait_ms"),
    ("- build: devices", "build_devices_ms"),
    ("- build: cmdline, boot_params, MP and ACPI tables", "build_boot_data_ms"),
    ("- build: vCPUs (create, CPUID, MSRs, registers)", "build_vcpus_ms"),
    ("- rest: request handling, vCPU threads start, 204 sent", "start_req_rest_ms"),
    ("KVM VM made ahead, before InstanceStart (wall)", "build_prep_ahead_ms"),
    ("CPU: build total (all threads)", "build_cpu_total_ms"),
    ("CPU: load kernel + initrd", "build_cpu_load_ms"),
    ("CPU: KVM side in InstanceStart", "build_cpu_kvm_ms"),
    ("CPU: KVM VM made ahead", "build_cpu_prep_ahead_ms"),
)


def create_phases(cs):
    rows = [(label, cs[key]) for label, key in CREATE_PHASES if cs.get(key, {}).get("n")]
    if not rows:
        return []
    out = ["", "Where the time goes (per-run medians, so they need not add up; wall ms unless "
           "marked CPU). The build phases are what Ember logs at Info "
           "(`VM build phases (ms): ...`):", "", "| phase | median | p90 | min |", "|---|---|---|---|"]
    for label, s in rows:
        out.append(f"| {label} | {f(s['median'])} | {f(s['p90'])} | {f(s['min'])} |")
    return out


def ratio(a, b):
    if not a or not b or not a.get("n") or not b.get("n") or not b["median"]:
        return "-"
    return f"{a['median'] / b['median']:.2f}"


def mib_summary(runs, key):
    return summary([r[key] / 1024 for r in runs])


def guest_section(g):
    h = g["host"]
    runs = g["runs"]
    e, q, api = runs["ember-file"], runs["qemu"], runs["ember-api"]
    out = ["## 3. Guest boots: Ember against QEMU microvm", ""]
    if h.get("testhost"):
        out += [TCG_NOTE, ""]
    out += [f"{g['rounds_wanted']} rounds wanted, {len(e)}/{len(q)}/{len(api)} completed "
            "(Ember from a config file / QEMU / Ember over the API), interleaved in a rotating order "
            "after one uncounted warm-up round. Every guest: the same minimal kernel (ELF vmlinux) "
            f"and initramfs, {g['vcpus']} vCPU, {g['mem_mib']} MiB, the same command line "
            f"`{g['boot_args']}` (the guest stays up after the marker; nothing reboots). "
            f"Memory is read from /proc/PID/smaps {g['settle_s']} s after the marker: RSS minus "
            "the RSS of the guest-RAM mapping (found by its size).",
            "", "Cells: median (q1-q3; min-max) n=runs.", ""]
    skipped = g.get("skipped", {})
    k = runs.get("kvmtool", [])
    ks = g["stats"].get("kvmtool", {})
    if "kvmtool" in skipped:
        out += [f"kvmtool: skipped ({skipped['kvmtool']}).", ""]
    elif "kvmtool" in runs:
        out += ["kvmtool boots the bzImage of the same kernel build (it has no ELF loader on "
                "x86), which decompresses itself first: its boot time includes that.", ""]
    out += ["| metric | Ember | QEMU microvm | kvmtool | ratio Ember/QEMU | ratio Ember/kvmtool |",
            "|---|---|---|---|---|---|"]
    es = g["stats"]["ember-file"]
    qs = g["stats"]["qemu"]
    rows = [("process exec -> `EMBER-INIT: started`, ms", es.get("exec_to_marker_ms"),
             qs.get("exec_to_marker_ms"), ks.get("exec_to_marker_ms"))]
    if e and q:
        for label, key in (("VMM overhead: RSS - guest RAM RSS, MiB", "overhead_rss_kb"),
                           ("VMM overhead, private pages only, MiB", "overhead_private_kb"),
                           ("VMM overhead, dirty private pages only (each further VM), MiB",
                            "overhead_dirty_kb"),
                           ("guest RAM touched (its mapping's RSS), MiB", "guest_rss_kb")):
            rows.append((label, mib_summary(e, key), mib_summary(q, key),
                         mib_summary(k, key) if k else None))
    for label, a, b, c in rows:
        out.append(f"| {label} | {spread(a)} | {spread(b)} | {spread(c) if c else '-'} | "
                   f"{ratio(a, b)} | {ratio(a, c) if c else '-'} |")
    out += pvh_hugepages_rows(g)
    as_ = g["stats"]["ember-api"]
    out += ["", "Ember only:", "", "| metric | median (q1-q3; min-max) n |", "|---|---|"]
    for label, s in (("InstanceStart sent -> boot-timer log line, ms (API)", as_.get("start_to_boot_timer_line_ms")),
                     ("boot-timer value (VM start -> guest's write), ms (API)", as_.get("boot_timer_ms")),
                     ("boot-timer value, ms (config file)", es.get("boot_timer_ms")),
                     ("InstanceStart request -> its 204, ms (API)", as_.get("start_req_ms")),
                     ("exec -> InstanceStart 204, ms (API)", as_.get("exec_to_start_204_ms")),
                     ("exec -> `EMBER-INIT: started`, ms (API)", as_.get("exec_to_marker_ms"))):
        out.append(f"| {label} | {spread(s)} |")
    if g.get("stopped_early"):
        out += ["", f"Stopped early: {g['stopped_early']}."]
    if g["failures"]:
        out += ["", f"**{len(g['failures'])} failed boot(s)** (round -1 is the warm-up):", ""]
        for fl in g["failures"]:
            out.append(f"- {fl['kind']} round {fl['round']}: {fl['error']}")
            out += [f"    {line}" for line in fl["tail"][-8:]]
    return out


def pvh_hugepages_rows(g):
    """Ember's own variants, each against ember-file in the same rounds."""
    runs, st, skipped = g["runs"], g["stats"], g.get("skipped", {})
    es = st["ember-file"]
    out = ["", "Ember's boot paths and memory backings (ember-file: the vmlinux through its PVH "
           "entry point, 4 KiB pages):", "",
           "| variant | exec -> marker, ms | ratio to ember-file | boot-timer, ms | "
           "guest RAM touched, MiB | VMM overhead, MiB |", "|---|---|---|---|---|---|"]
    for kind, label in (("ember-file", "PVH entry (default for an ELF with the note)"),
                        ("ember-nopvh", "Linux 64-bit boot (the same vmlinux, PVH note taken out)"),
                        ("ember-2m", "PVH, huge_pages \"2M\" (hugetlbfs)")):
        if kind in skipped:
            out.append(f"| {label} | skipped: {skipped[kind]} | | | | |")
            continue
        r, s = runs.get(kind, []), st.get(kind, {})
        if not r:
            out.append(f"| {label} | no runs | | | | |")
            continue
        out.append(f"| {label} | {spread(s.get('exec_to_marker_ms'))} | "
                   f"{ratio(s.get('exec_to_marker_ms'), es.get('exec_to_marker_ms'))} | "
                   f"{spread(s.get('boot_timer_ms'))} | {spread(mib_summary(r, 'guest_rss_kb'))} | "
                   f"{spread(mib_summary(r, 'overhead_rss_kb'))} |")
    return out


def read_status(work, name) -> int:
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        return int(fh.read().strip() or 0)


def describe_status(rc) -> str:
    what = {124: "the nested test host hung and was killed at its time bound",
            125: "the nested test host crashed or failed to set up"}.get(rc, "it failed")
    return f"exit status {rc}: {what}"


def progress_tail(work, name) -> list:
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return ["", "It left no progress log."]
    with open(path) as fh:
        tail = fh.read().splitlines()[-6:]
    return (["", "The end of its progress log (seconds since the guest part started; a heartbeat "
             "every 10 s, so a log that stops means the whole test host froze):", ""]
            + [f"    {line}" for line in tail])


def write_plot_data(work, native, guest):
    """Data files for plot.gp; returns the gnuplot variables that name them."""
    vars_ = {}
    if native:
        path = os.path.join(work, "startup.dat")
        with open(path, "w") as fh:
            for i, s in enumerate(native["startup"]["samples"]):
                fh.write(f"{i} {s['cpu_accept_ms']} {s['wall_accept_ms']}\n")
        vars_["startup"] = path
        for key in ("ember", "floor"):
            xs = sorted(native["api"][f"{key}_raw_us"])
            path = os.path.join(work, f"api-{key}.dat")
            with open(path, "w") as fh:
                for i, x in enumerate(xs):
                    fh.write(f"{x} {(i + 1) / len(xs)}\n")
            vars_[f"api_{key}"] = path
    if guest:
        for kind, runs in guest["runs"].items():
            path = os.path.join(work, f"guest-{kind}.dat")
            with open(path, "w") as fh:
                for r in runs:
                    fh.write(f"{r['round']} {r['exec_to_marker_ms']} "
                             f"{r.get('overhead_rss_kb', 0) / 1024} {r.get('overhead_private_kb', 0) / 1024}\n")
            vars_[f"guest_{kind.replace('-', '_')}"] = path
    return vars_


def plot(work, png, native, guest, io, title):
    vars_ = write_plot_data(work, native, guest)
    if io:
        vars_.update(report_io.write_plot_data(work, io))
    args = ["gnuplot", "-e", f"out='{png}'; title='{title}'"]
    for k, v in vars_.items():
        args[2] += f"; {k}='{v}'"
    args += [os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.gp")]
    # A part that measured nothing (every boot failed) leaves gnuplot with
    # no points; the Markdown and the JSON are still worth writing.
    if subprocess.run(args).returncode != 0:
        print(f"bench: gnuplot failed; {png} is missing or incomplete", file=sys.stderr)


def failure_lines(work, name, what, data) -> list | None:
    """What to say about a guest part (`name`: guest or io) that did not
    finish, or whose first try in the test host failed; None if neither."""
    lines = None
    rc = read_status(work, f"{name}-status")
    if rc:
        lines = [f"**The {what} did not finish** ({describe_status(rc)})."]
        if data:
            lines[0] += " The tables have the boots completed before that."
        lines += progress_tail(work, f"{name}.json.log")
    rc1 = read_status(work, f"{name}-attempt1-status")
    if rc1:
        note = [f"The first try of the {what} failed ({describe_status(rc1)}) and was "
                "run again from the start; its data are not used."]
        lines = note + progress_tail(work, f"{name}-attempt1.log") + [""] + (lines or [])
    return lines


ALL_PARTS = ("native", "guest", "block", "net", "density", "vsock", "balloon", "snapshot", "distro")


def vsock_section(v) -> list:
    """Part 7: Ember's virtio-vsock against QEMU's vhost-vsock-device."""
    lines = ["## 7. vsock: Ember against QEMU microvm with vhost-vsock", "",
             f"{v['mib']} MiB guest->host (timed by the host from accept to EOF), the same "
             f"echoed host->guest->host (payload MiB/s one way), and {v['conns']} connection "
             "set-ups one after another (socket() until usable: Ember's `CONNECT 52` until "
             "`OK`, QEMU's AF_VSOCK connect()); median of "
             f"{len(v['runs'].get('ember', []))} round(s). Goals (issue 12): throughput >= 0.8x "
             "vhost, set-up <= QEMU's.", ""]
    if v.get("qemu_skipped"):
        lines += [f"QEMU not measured: {v['qemu_skipped']}.", ""]
    st = v.get("stats", {})
    lines += ["| | guest->host MiB/s | echo MiB/s | set-up p50 ms | set-up p90 ms |",
              "|---|---|---|---|---|"]

    def med(kind, key):
        s = st.get(kind, {}).get(key, {})
        return s.get("median") if s.get("n") else None
    for kind in ("ember", "qemu"):
        if kind in st:
            lines.append(f"| {kind} | {f(med(kind, 'g2h_mib_s'), 1)} | {f(med(kind, 'echo_mib_s'), 1)} "
                         f"| {f(med(kind, 'setup_p50_ms'))} | {f(med(kind, 'setup_p90_ms'))} |")
    if "ember" in st and "qemu" in st:
        cells = [ratio(st["ember"].get(k), st["qemu"].get(k))
                 for k in ("g2h_mib_s", "echo_mib_s", "setup_p50_ms", "setup_p90_ms")]
        lines.append("| Ember / QEMU | " + " | ".join(cells) + " |")
    for fail in v.get("failures", []):
        lines.append(f"- {fail['kind']} round {fail['round']} failed: {fail['error']}")
    runs = [r for r in v["runs"].get("ember", [])
            if "vsock.tx_packets_count" in r.get("counters", {})]
    if runs:
        # Per MiB moved: guest->host once, the echo both ways.
        moved = 3 * v["mib"]
        c = runs[-1]["counters"]
        names = (("vsock.tx_queue_event_count", "tx kicks"),
                 ("vsock.rx_queue_event_count", "rx kicks"),
                 ("vsock.tx_packets_count", "tx packets"),
                 ("vsock.rx_packets_count", "rx packets"),
                 ("interrupts.triggers", "interrupts"),
                 ("vcpu.exit_mmio_read", "MMIO read exits"),
                 ("vcpu.exit_mmio_write", "MMIO write exits"))
        lines += ["", f"Ember's counters over its last boot, per MiB moved ({moved} MiB: "
                  "guest->host, and the echo both ways; the set-ups included): "
                  + ", ".join(f"{label} {c.get(k, 0) / moved:.1f}" for k, label in names) + "."]
    return lines + [""]


def stem_suffix(work) -> str:
    """'' for a run of every part; '-block-net' (say) for a run of some, so
    that it does not overwrite the day's full run."""
    path = os.path.join(work, "parts")
    if not os.path.exists(path):
        return ""
    with open(path) as fh:
        wanted = fh.read().split()
    if all(p in wanted for p in ALL_PARTS):
        return ""
    return "".join(f"-{p}" for p in ALL_PARTS if p in wanted)


def took_line(elapsed, phases, native, guest, io) -> str:
    took = f"{elapsed} s of wall time"
    if not phases:
        return took
    bits = []
    if native:
        bits.append(f"native parts {phases['native_s']} s")
    for data, key, what in ((guest, "guest_s", "guest boots"), (io, "io_s", "block and network")):
        if data and key in phases:
            in_testhost = data["host"].get("testhost")
            bits.append(f"{what} {phases[key]} s, of which {data['elapsed_s']:.0f} s measuring and "
                        "the rest " + ("waiting for another test host, booting the test host and "
                                       "Python start-up" if in_testhost else "Python start-up"))
    return took + (": " + "; ".join(bits) if bits else "")


def snapshot_section(snap) -> list:
    """Section 6: snapshot create and restore, Ember (File, Uffd) and QEMU."""
    lines = ["## 9. Snapshots: Ember against QEMU's migration to a file", "",
             "Medians (ms) of the rounds; guest times in the nested test host are TCG-inflated, "
             "so compare ratios. Ember's load is timed from PUT /snapshot/load (its process "
             "already started) and from exec; QEMU's restore from exec with `-incoming "
             "\"exec:cat FILE\"`, and, as Ember's load, from QMP `migrate-incoming` to a QEMU "
             "started with `-incoming defer` (QEMU defer): to the migration completed and to "
             "the first tick.", "",
             "| guest | create: Ember / QEMU | memory file: Ember / QEMU (allocated) | "
             "load -> 204: File / Uffd | load, VMM thread CPU: File / Uffd | "
             "load -> first tick: File / Uffd | "
             "QEMU defer: migrate-incoming -> completed / -> first tick | "
             "exec -> first tick: Ember File / Uffd / QEMU / QEMU defer |",
             "|---|---|---|---|---|---|---|---|"]

    def med(r, kind, field):
        s = r.get("restore", {}).get(kind, {}).get(field, {})
        return f(s.get("median")) if s.get("n") else "-"

    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        ec, qc = r.get("ember_create", {}), r.get("qemu_create", {})
        size = (f"{ec.get('mem_allocated_bytes', 0) / 2**20:.0f} / "
                f"{qc.get('mem_allocated_bytes', 0) / 2**20:.0f} MiB") if ec and qc else "-"
        lines.append(
            f"| {mib} MiB | {f(ec.get('create_ms'))} / {f(qc.get('create_ms'))} | {size} | "
            f"{med(r, 'ember_file', 'load_204_ms')} / {med(r, 'ember_uffd', 'load_204_ms')} | "
            f"{med(r, 'ember_file', 'load_vmm_cpu_ms')} / {med(r, 'ember_uffd', 'load_vmm_cpu_ms')} | "
            f"{med(r, 'ember_file', 'load_to_tick_ms')} / {med(r, 'ember_uffd', 'load_to_tick_ms')} | "
            f"{med(r, 'qemu_defer', 'migrate_done_ms')} / "
            f"{med(r, 'qemu_defer', 'migrate_to_tick_ms')} | "
            f"{med(r, 'ember_file', 'exec_to_tick_ms')} / {med(r, 'ember_uffd', 'exec_to_tick_ms')} / "
            f"{med(r, 'qemu', 'exec_to_tick_ms')} / {med(r, 'qemu_defer', 'exec_to_tick_ms')} |")
    # The goal's ratios: QEMU's restore (exec -> first tick, the stream
    # read whole) against Ember's File load (to its 204, and exec -> tick).
    ratios = []
    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        def m(kind, field):
            s_ = r.get("restore", {}).get(kind, {}).get(field, {})
            return s_.get("median") if s_.get("n") else None
        q = m("qemu", "exec_to_tick_ms")
        e204, etick = m("ember_file", "load_204_ms"), m("ember_file", "exec_to_tick_ms")
        if q and e204 and etick:
            ratios.append(f"- {mib} MiB: QEMU's exec -> first tick / Ember File's load -> 204: "
                          f"{q / e204:.1f}x; / Ember File's exec -> first tick: {q / etick:.1f}x")
    if ratios:
        lines += ["", "Restore, QEMU against Ember (goal: at least 10x):"] + ratios
    # The same request-to-result spans on both sides: QEMU's
    # migrate-incoming (-incoming defer, process up) against Ember's PUT
    # /snapshot/load, to the stream in / the 204, and to the first tick.
    fair = []
    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        def m(kind, field):
            s_ = r.get("restore", {}).get(kind, {}).get(field, {})
            return s_.get("median") if s_.get("n") else None
        bits = []
        for what, qf, ef in (("-> completed / -> 204", "migrate_done_ms", "load_204_ms"),
                             ("-> first tick", "migrate_to_tick_ms", "load_to_tick_ms")):
            q = m("qemu_defer", qf)
            got = [f"{name} {q / m(kind, ef):.1f}x" for name, kind in
                   (("File", "ember_file"), ("Uffd", "ember_uffd")) if q and m(kind, ef)]
            if got:
                bits.append(f"{what}: " + ", ".join(got))
        if bits:
            fair.append(f"- {mib} MiB: " + "; ".join(bits))
    if fair:
        lines += ["", "From the restore request, both processes already up (QEMU `-incoming "
                  "defer` + `migrate-incoming` / Ember's PUT /snapshot/load), QEMU / Ember:"] + fair
    # Where Ember's File load went (its log): none of it should grow with
    # the memory size.
    phases = []
    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        got = {k: med(r, "ember_file", f"phase_{k}_ms") for k in
               ("restore", "memory", "kvm_vm", "devices", "vcpus", "state", "early_vm")}
        if got["restore"] != "-":
            phases.append(f"- {mib} MiB: {got['restore']} = memory {got['memory']}, KVM VM "
                          f"{got['kvm_vm']}, devices {got['devices']}, vCPUs {got['vcpus']}, "
                          f"state {got['state']}; the empty KVM VM, made while the state "
                          f"file was read: {got['early_vm']}")
    if phases:
        lines += ["", "Ember's File load, the VM's rebuild (vmm_restore, medians in ms, from "
                  "its log):"] + phases
    spans = []
    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        got = {k: med(r, "ember_file", f"span_{k}_ms") for k in ("state_file", "vm", "start")}
        if got["vm"] != "-":
            spans.append(f"- {mib} MiB: state file {got['state_file']}, VM {got['vm']}, "
                         f"start {got['start']}")
    if spans:
        lines += ["", "Ember's File load, the whole request in Ember (medians in ms, from its "
                  "log; the rest of load -> 204 is the HTTP exchange and the client):"] + spans
    # What the first tick after a restore reads against: the guest's loop
    # period when nothing disturbs it (the second before the snapshot).
    periods = []
    for mib, r in sorted(snap.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        e_, q_ = (r.get(k, {}).get("tick_period_ms") for k in ("ember_create", "qemu_create"))
        if e_ or q_:
            periods.append(f"- {mib} MiB: Ember {f(e_)}, QEMU {f(q_)}")
    if periods:
        lines += ["", "The guest's tick period before the snapshot, undisturbed (median ms "
                  "between ticks; the first tick after a restore comes later than this by what "
                  "the restored guest pays to run again):"] + periods
    errors = [f"- {mib} MiB: failed: {err}" for mib, r in snap.get("sizes", {}).items()
              for err in r.get("errors", [])]
    if errors:
        lines += [""] + errors
    if snap.get("sizes"):
        first = next(iter(snap["sizes"].values()))
        lines += ["", f"State file: {first.get('ember_create', {}).get('state_bytes', '-')} bytes. "
                  f"Rounds: {snap.get('rounds')}."]
    return lines


def main():
    work, out_dir, elapsed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out_dir, exist_ok=True)
    native, guest, io = load(work, "native.json"), load(work, "guest.json"), load(work, "io.json")
    dens = load(work, "density.json")
    dens_failed = failure_lines(work, "density", "density part", dens)
    vsock = load(work, "vsock.json")
    vsock_failed = failure_lines(work, "vsock", "vsock part", vsock)
    balloon = load(work, "balloon.json")
    balloon_failed = failure_lines(work, "balloon", "balloon part", balloon)
    snap = load(work, "snapshot.json")
    snap_failed = failure_lines(work, "snapshot", "snapshot part", snap)
    dist = load(work, "distro.json")
    dist_failed = failure_lines(work, "distro", "distro part", dist)
    guest_failed = failure_lines(work, "guest", "guest part", guest)
    io_failed = failure_lines(work, "io", "block and network part", io)
    if not native and not guest and not io and not dens and not vsock and not balloon \
            and not snap and not dist:
        raise SystemExit("report: no results in " + work)
    host = platform.node().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    stem = os.path.join(out_dir, f"{date}-{host}{stem_suffix(work)}")
    phases = {}
    phases_path = os.path.join(work, "phases")
    if os.path.exists(phases_path):
        with open(phases_path) as fh:
            phases = dict(kv.split("=", 1) for kv in fh.read().split())
    lines = [f"# Ember benchmark, {date}, {host}", "",
             f"Made by `make bench` (bench/run) in {took_line(elapsed, phases, native, guest, io)}"
             + (" (quick mode: fewer repetitions)" if os.environ.get("EMBER_BENCH_QUICK") == "1" else "")
             + ". Numbers only: nothing here is asserted. See bench/README.md for how each is taken.",
             "", "## Machine", ""]
    if native:
        lines += machine_lines(native["host"], "This host (native parts)")
    for data, what in ((guest, "Guest boots"), (io, "Block and network"), (vsock, "vsock"),
                       (balloon, "Balloon"), (dist, "Distro boots")):
        if data:
            gh = data["host"]
            where = ("the nested test host (QEMU TCG, emulated AMD SVM+NPT)" if gh.get("testhost")
                     else "this host's KVM")
            lines += machine_lines(gh, f"{what}, in {where}")
            lines.append(f"- QEMU: {gh.get('qemu')}")
            if gh.get("kvmtool"):
                lines.append(f"- kvmtool: {gh['kvmtool']}")
    lines.append("")
    if native:
        lines += native_section(native) + [""]
    if guest:
        lines += guest_section(guest) + [""]
    if guest_failed:
        if not guest:
            lines += ["## 3. Guest boots: Ember against QEMU microvm", ""]
        lines += guest_failed + [""]
    if io:
        lines += report_io.io_sections(io)
    if io_failed:
        if not io:
            lines += ["## 4-5. Block and network: Ember against QEMU microvm", ""]
        lines += io_failed + [""]
    if dens:
        lines += density.section(dens) + [""]
    if dens_failed:
        if not dens:
            lines += ["## 6. Density: many microVMs at once, Ember against QEMU microvm", ""]
        lines += dens_failed + [""]
    if vsock:
        lines += vsock_section(vsock)
    if vsock_failed:
        if not vsock:
            lines += ["## 7. vsock: Ember against QEMU microvm with vhost-vsock", ""]
        lines += vsock_failed + [""]
    if balloon:
        lines += guest_balloon.section(balloon) + [""]
    if balloon_failed:
        if not balloon:
            lines += ["## 8. Soft allocation: the balloon, Ember against QEMU", ""]
        lines += balloon_failed + [""]
    if snap:
        lines += snapshot_section(snap) + [""]
    if snap_failed:
        lines += snap_failed + [""]
    if dist:
        lines += distro.section(dist) + [""]
    if dist_failed:
        if not dist:
            lines += ["## 10. A real distro: Debian 12 with systemd, Ember against QEMU microvm", ""]
        lines += dist_failed + [""]
    lines += ["## Commands", "", "```"]
    lines.append("make bench        # = bench/run; EMBER_BENCH_QUICK=1 for a quick look")
    for name in ("guest", "io", "density", "vsock", "balloon", "snapshot", "distro"):
        testhost_cmd = os.path.join(work, f"{name}-testhost-command")
        if os.path.exists(testhost_cmd):
            with open(testhost_cmd) as fh:
                lines.append(fh.read().strip())
    for part in (native, guest, io, dens, vsock, balloon, snap, dist):
        if part:
            for kind, cmd in part.get("commands", {}).items():
                lines.append(f"[{kind}] {cmd}")
    for part in (guest, io):
        if part:
            lines.append(f"kernel:    {part['kernel']}")
            lines.append(f"initramfs: {part['initrd']}")
            break
    plotted = bool(native or guest or io)  # the plot has parts 1-5 only
    lines += ["```", ""] + ([f"![plot]({os.path.basename(stem)}.png)", ""] if plotted else [])
    with open(stem + ".md", "w") as fh:
        fh.write("\n".join(lines))
    if plotted:
        plot(work, stem + ".png", native, guest, io, f"Ember benchmark, {date}, {host}")
    if native:  # the raw round-trip times are in the plot; keep the JSON small
        native["api"].pop("ember_raw_us", None)
        native["api"].pop("floor_raw_us", None)
    write_json(stem + ".json", {"native": native, "guest": guest, "io": io, "density": dens,
                               "vsock": vsock, "balloon": balloon, "snapshot": snap,
                               "distro": dist})
    print(f"bench: wrote {stem}.md{', ' + stem + '.png' if plotted else ''}, {stem}.json")


if __name__ == "__main__":
    main()
