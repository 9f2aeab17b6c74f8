"""Sections 4 (block) and 5 (network) of the benchmark report, from
guest_io.py's JSON, and their plot data. Used by report.py."""

from __future__ import annotations

import os

from benchlib import summary

BLOCK_ROWS = (
    ("seq-write-direct", "sequential write, 1 MiB blocks, `oflag=direct`"),
    ("seq-read", "sequential read, 1 MiB blocks, buffered, first pass (fresh guest RAM)"),
    ("seq-read-again", "the same read again (guest RAM already touched)"),
    ("seq-read-direct", "sequential read, 1 MiB blocks, `iflag=direct`"),
    ("4k-read-direct", "4 KiB reads, `iflag=direct`, one at a time"),
    ("4k-write-direct", "4 KiB writes, `oflag=direct`, one at a time"),
)
KINDS = ("ember-sync", "ember-async", "qemu", "kvmtool")
NET_ROWS = (
    ("net-tx", "guest -> host"),
    ("net-rx", "host -> guest"),
)
TCG_NOTE = ("This part ran inside the nested test host: a QEMU **TCG** VM emulating an AMD CPU "
            "with SVM+NPT, in which kvm_amd runs under emulation. Every exit of a nested guest "
            "(each virtio notification, interrupt and console byte) is handled by emulated code, "
            "and the guest's own work runs nested as well, so the absolute MiB/s below say "
            "nothing about real hardware: only the ratios (Ember/QEMU, Ember/kvmtool), taken in one "
            "run with the VMMs interleaved, mean anything, and even they weigh exits more heavily "
            "than real hardware would.")


def fmt(x):
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def cell(s):
    """'median (min-max) n=N': with a handful of rounds, quartiles say little."""
    if not s or not s.get("n"):
        return "-"
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])}) n={s['n']}"


def ratio(a, b):
    if not a or not b or not a.get("n") or not b.get("n") or not b["median"]:
        return "-"
    return f"{a['median'] / b['median']:.2f}"


def rates(io, kinds, name):
    """Summary of the MiB/s of workload `name` over every run of `kinds`."""
    return summary([r[name].get("mib_s") for k in kinds for r in io["runs"].get(k, []) if name in r])


def has_kvmtool(io):
    return "kvmtool" in io["runs"]


def peers_title(io):
    return "QEMU microvm and kvmtool" if has_kvmtool(io) else "QEMU microvm"


def skipped_line(io):
    """The line saying kvmtool was not measured, or [] (older results have
    no word on kvmtool: nothing is said then)."""
    why = io.get("kvmtool_skipped")
    return [f"kvmtool: skipped ({why}); Ember against QEMU only.", ""] if why else []


def cell_or_why(io, kinds, name, s):
    """cell(s), or, where no boot of `kinds` measured `name`, why not: the
    error of the boot that failed at that workload, else of its first
    failed boot."""
    if s and s.get("n"):
        return cell(s)
    errs = [f["error"] for f in io["failures"] if f["kind"] in kinds and f["round"] >= 0]
    errs = errs or [f["error"] for f in io["failures"] if f["kind"] in kinds]
    if not errs:
        return "no run"
    mine = [e for e in errs if name in e]
    why = (mine or errs)[0].replace("|", "/").replace("\n", " ")
    return "not measured: " + (why if len(why) <= 140 else why[:137] + "...")


def kvmtool_notes(io):
    """How kvmtool's VMs differ from the others, for the block text."""
    if not has_kvmtool(io):
        return ""
    aio = io.get("kvmtool_libaio")
    engine = ("" if aio is None else
              " Its raw disk uses Linux AIO (libaio)" if aio else
              " Its raw disk (this build has no libaio) does one synchronous preadv/pwritev per "
              "request on the device's I/O thread")
    return (" **kvmtool** (`lkvm run --nodefaults`) differs in transport and kernel: on x86 it "
            "offers a disk over **virtio-pci** only (`--virtio-transport mmio` is for ARM and "
            "RISC-V), and the guest kernel has virtio-mmio only, so kvmtool boots the bzImage "
            "of the same kernel build **plus `CONFIG_VIRTIO_PCI=y`** "
            "(tools/peers/build-kvmtool-kernel.sh; nothing else differs) with `pci=conf1` "
            "instead of `pci=off`, and its drive and NIC are virtio-pci devices (legacy INTx "
            "interrupts through the PIC: the kernel has no PCI_MSI, and kvmtool's x86 "
            "parameters, which the bench puts back, include `noapic`). The image is attached "
            "with `-d`." + engine + (", in the host's page cache; a guest flush is fsync."
                                     if aio is not None else ""))


def block_section(io, tcg_note):
    out = [f"## 4. Block: dd in the guest on virtio-block, Ember against {peers_title(io)}", ""]
    if tcg_note:
        out += [tcg_note, ""]
    kvm = has_kvmtool(io)
    n = "/".join(str(len(io["runs"].get(k, []))) for k in KINDS if k != "kvmtool" or kvm)
    out += skipped_line(io)
    out += [f"{io['rounds_wanted']} rounds wanted, {n} boots completed "
            "(Ember with the Sync engine / Ember with the Async engine / QEMU"
            + (" / kvmtool" if kvm else "") + "), interleaved in a "
            "rotating order after one uncounted warm-up round with small sizes. Every guest: the "
            f"same minimal kernel and initramfs, {io['vcpus']} vCPU, {io['mem_mib']} MiB; the "
            f"drive is a raw scratch file of {io['block_mib']} MiB (every block written) on tmpfs "
            f"(`{io.get('image_dir', '?')}`) made once per run and attached to every VM as "
            "/dev/vda. Ember: `cache_type` Writeback; QEMU: `cache=writeback,aio=threads`: both "
            "use the host's page cache and pass a guest flush on as fdatasync. Busybox `dd` in "
            f"the guest, {io['block_mib']} MiB per sequential workload and "
            f"{io['block_4k_count']} requests per 4 KiB one, each after `sync` and "
            "`echo 3 > /proc/sys/vm/drop_caches`; timed in the guest with /proc/uptime "
            "(10 ms steps). The 4 KiB workloads are sequential: on a tmpfs-backed file a request "
            "costs the same wherever it lands, and random offsets would cost a fork per request. "
            "With O_DIRECT a `dd` has one request in flight (a 1 MiB read or write can be two "
            "requests: dd's buffer is scattered pages, and a request takes at most max_segments of "
            "them, see the limits below). The buffered read is run twice: the first pass also "
            "brings guest RAM that nothing had touched into use (see the guest RAM table), the "
            "second pass measures the block path alone." + kvmtool_notes(io), "",
            "MiB/s, median (min-max) n=boots; ratios of medians, **above 1 means Ember is "
            "faster**. For 4 KiB, MiB/s x 256 = requests per second.", ""]
    if kvm:
        out += ["| workload | Ember Sync | Ember Async | QEMU microvm | kvmtool | Sync/QEMU | "
                "Async/QEMU | Sync/kvmtool | Async/kvmtool |", "|---|---|---|---|---|---|---|---|---|"]
    else:
        out += ["| workload | Ember Sync | Ember Async | QEMU microvm | Sync/QEMU | Async/QEMU |",
                "|---|---|---|---|---|---|"]
    for name, label in BLOCK_ROWS:
        s, a, q, k = (rates(io, [x], name) for x in KINDS)
        cells = [cell_or_why(io, [x], name, v) for x, v in zip(KINDS, (s, a, q, k))]
        if kvm:
            out.append(f"| {label} | {' | '.join(cells)} | {ratio(s, q)} | {ratio(a, q)} | "
                       f"{ratio(s, k)} | {ratio(a, k)} |")
        else:
            out.append(f"| {label} | {' | '.join(cells[:3])} | {ratio(s, q)} | {ratio(a, q)} |")
    out += guest_ram_lines(io)
    limits = {k: io["queue_limits"][k] for k in KINDS if k in io.get("queue_limits", {})}
    if limits:
        out += ["", "The request queue limits each guest derived from its device "
                "(/sys/block/vda/queue, read in the warm-up boot):", "",
                "| limit | " + " | ".join(k for k in limits) + " |",
                "|---|" + "---|" * len(limits)]
        for key in next(iter(limits.values())):
            out.append(f"| {key} | " + " | ".join(v.get(key, "-") for v in limits.values()) + " |")
    return out


def guest_ram_lines(io):
    """How each VMM's guest RAM was mapped, from its boots' smaps."""
    rows = []
    for kind in KINDS:
        rams = [r["guest_ram"] for r in io["runs"].get(kind, []) if r.get("guest_ram")]
        if not rams:
            continue
        aligned = sorted({"yes" if x["aligned_2m"] else "no" for x in rams})
        huge = summary([x["anon_huge_kb"] / 1024 for x in rams if x.get("anon_huge_kb") is not None])
        rss = summary([x["rss_kb"] / 1024 for x in rams if x.get("rss_kb") is not None])
        rows.append(f"| {kind} | {'/'.join(aligned)} | {fmt(rss.get('median'))} | "
                    f"{fmt(huge.get('median'))} |")
    if not rows:
        return []
    return ["", "Guest RAM as the host held it at the end of each boot (/proc/PID/smaps of the "
            f"{io['mem_mib']} MiB mapping; medians). The first buffered read puts the guest's page "
            "cache on RAM that nothing had touched, and every first touch of a guest page is a "
            "nested page fault. KVM can map guest RAM with 2 MiB pages only where the host "
            "address is aligned like the guest-physical one, and only if the host backs it with "
            "a huge page; otherwise each 4 KiB page faults on its own, which the second pass no "
            "longer pays.", "",
            "| VMM | mapping 2 MiB-aligned | RSS, MiB | of it transparent huge pages, MiB |",
            "|---|---|---|---|"] + rows


def net_section(io, tcg_note):
    out = [f"## 5. Network: TCP through virtio-net and a TAP, Ember against {peers_title(io)}", ""]
    if io.get("net_skipped"):
        return out + [f"Not run: {io['net_skipped']}."]
    if tcg_note:
        out += [tcg_note, ""]
    kvm = has_kvmtool(io)
    out += skipped_line(io)
    out += [f"The same boots as the block part (when both run): every guest has one virtio-net "
            "device on the same TAP, in a network namespace of the bench's own; the host side "
            "(10.213.0.1 on the TAP) is the bench's Python process, the guest's address comes "
            "from `ip=` on its command line. QEMU: `-netdev tap,vhost=off` and "
            "`virtio-net-device`; Ember: a `network-interfaces` entry. Guest -> host: "
            f"`tcp-send` in the guest (a static sender, 256 KiB send() calls; tools/guest/bench), {io['net_mib']} MiB; host -> guest: "
            f"the host sends {io['net_mib']} MiB to the guest's `nc > /dev/null`. Timed on the "
            "host, from the accept to the end of the stream (for host -> guest, until the "
            "guest's nc has read everything and closed). Ember's figures pool its two boots of "
            "each round (the drive's engine makes no difference to the network)."
            + (" kvmtool: `-n mode=tap,tapif=...` on the same TAP (no vhost), a virtio-pci "
               "NIC in the kernel with CONFIG_VIRTIO_PCI, as in section 4." if kvm else ""), "",
            "MiB/s, median (min-max) n=transfers; **above 1 means Ember is faster**.", ""]
    groups = [["ember-sync", "ember-async"], ["qemu"]] + ([["kvmtool"]] if kvm else [])
    head = "| Ember | QEMU microvm |" + (" kvmtool |" if kvm else "") + " Ember/QEMU |" + \
        (" Ember/kvmtool |" if kvm else "")
    rule = "|---" * (len(groups) * 2) + "|"
    out += ["| direction " + head, rule]
    for name, label in NET_ROWS:
        st = [rates(io, g, name) for g in groups]
        cells = [cell_or_why(io, g, name, v) for g, v in zip(groups, st)]
        out.append(f"| {label} | {' | '.join(cells)} | "
                   + " | ".join(ratio(st[0], o) for o in st[1:]) + " |")
    rows = []
    for key, label in (("guest_irqs", "virtio interrupts per MiB"),
                       ("guest_tx_packets", "eth0 frames sent per MiB (TSO frames count once)")):
        st = [summary([r["net-tx"][key] / io["net_mib"] for k in g
                       for r in io["runs"].get(k, []) if key in r.get("net-tx", {})])
              for g in groups]
        if any(x.get("n") for x in st):
            rows.append(f"| {label} | {' | '.join(cell(x) for x in st)} | "
                        + " | ".join(ratio(st[0], o) for o in st[1:]) + " |")
    if rows:
        out += ["", "Seen from inside the guest during guest -> host (its /proc/interrupts and "
                "eth0 statistics before and after; fewer is less guest work per byte):", "",
                "| per MiB " + head, rule] + rows
    return out


def io_sections(io):
    out = []
    tcg = TCG_NOTE if io["host"].get("testhost") else None
    if "block" in io["parts"]:
        out += block_section(io, tcg) + [""]
        tcg = tcg and "In the nested test host, as section 4: compare the ratios only."
    if "net" in io["parts"] or io.get("net_skipped"):
        out += net_section(io, tcg) + [""]
    mmio = io.get("mmio_devices", {})
    if mmio:
        out += ["How each guest found its virtio devices (read in the warm-up boot): "
                "`virtio_mmio.device=` entries on its /proc/cmdline (added by the VMM; they "
                "register platform devices `virtio-mmio.N`), platform devices `LNRO0005:NN` "
                "(from the ACPI DSDT), PCI functions bound to virtio-pci (kvmtool), and "
                "`chip=`: the interrupt controller of their interrupts in /proc/interrupts. "
                "QEMU 7.2's microvm adds the command-line entries only when ACPI is off "
                "(`auto-kernel-cmdline` notwithstanding); with ACPI on, its default, the guest "
                "finds the devices through the DSDT.", ""]
        for kind, devs in sorted(mmio.items()):
            out.append(f"- {kind}: " + ", ".join(f"`{d}`" for d in devs))
        out.append("")
    if io.get("stopped_early"):
        out += [f"Stopped early: {io['stopped_early']}.", ""]
    if io["failures"]:
        out += [f"**{len(io['failures'])} boot(s) with a failure** (round -1 is the warm-up); "
                "the workloads that finished in them are counted:", ""]
        for fl in io["failures"]:
            out.append(f"- {fl['kind']} round {fl['round']}: {fl['error']}")
            out += [f"    {line}" for line in fl["tail"][-8:]]
        out.append("")
    return out


def write_plot_data(work, io) -> dict:
    """Medians per workload for plot.gp's two I/O panels."""
    vars_ = {}
    if "block" in io["parts"]:
        path = os.path.join(work, "io-block.dat")
        with open(path, "w") as fh:
            for name, _ in BLOCK_ROWS:
                meds = [rates(io, [k], name).get("median", 0) for k in KINDS]
                fh.write(f"{name} " + " ".join(f"{m:.3f}" for m in meds) + "\n")
        vars_["io_block"] = path
    if "net" in io["parts"]:
        path = os.path.join(work, "io-net.dat")
        with open(path, "w") as fh:
            for name, label in NET_ROWS:
                e = rates(io, ["ember-sync", "ember-async"], name).get("median", 0)
                q = rates(io, ["qemu"], name).get("median", 0)
                k = rates(io, ["kvmtool"], name).get("median", 0)
                fh.write(f"\"{label}\" {e:.3f} {q:.3f} {k:.3f}\n")
        vars_["io_net"] = path
    if has_kvmtool(io):
        vars_["io_kvmtool"] = "1"
    return vars_
