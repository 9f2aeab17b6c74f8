"""What a stuck VM leaves for the record, in the nested test host or on a
host with KVM: where each of Ember's threads waits, and the test host's own
trace of KVM exits (docs/reliability.md, "The nested-boot failures").

Used by the test harness (ember_harness.py), tools/soak.py and
bench/nested-boot.py. Standard library only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

STACK_FRAMES = 6  # kernel frames shown per thread


def thread_states(pid: int) -> list[str]:
    """A line per thread of a running process: name, state, where in the
    kernel it waits. Tells a guest that stalled inside KVM_RUN (a vCPU
    thread running, or halted in kvm_vcpu_block) from an Ember thread stuck
    on a lock or an fd. Empty when the process is gone."""
    task = Path(f"/proc/{pid}/task")
    try:
        tids = sorted(task.iterdir(), key=lambda d: int(d.name))
    except OSError:
        return []
    lines = []
    for d in tids:
        try:
            comm = (d / "comm").read_text().strip()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = (d / "wchan").read_text().strip() or "-"
        except OSError:
            continue  # the thread ended meanwhile
        try:
            frames = [f.split()[-1] for f in (d / "stack").read_text().splitlines()[:STACK_FRAMES]]
        except OSError:
            frames = []  # not root, or no CONFIG_STACKTRACE
        lines.append(f"{d.name} {comm} state {state} wchan {wchan}"
                     + (f" stack {' < '.join(frames)}" if frames else ""))
    return lines


# --- the host's KVM trace ---------------------------------------------------------

TRACE = "/sys/kernel/tracing"
# The KVM events kept in a small ring while a guest runs, and the host's own
# interrupts (timer ticks, IPIs).
TRACE_EVENTS = ("kvm/kvm_exit", "kvm/kvm_entry", "kvm/kvm_page_fault",
                "kvm/kvm_inj_exception", "kvm/kvm_inj_virq", "kvm/kvm_userspace_exit",
                "irq_vectors/local_timer_entry", "irq_vectors/reschedule_entry",
                "irq_vectors/call_function_entry", "irq_vectors/call_function_single_entry")
# Every nested stall measured so far begins with an exit whose rip is the
# test host's own kvm_amd code (module space), which no guest here runs (it
# loads no module): the emulated CPU handed the test host's state back as the
# guest's. The ring stops at the first such exit, so it keeps what led to it,
# and a stopped ring marks a run that met this fault.
TRACE_STOP = ("traceoff if guest_rip >= 0xffffffffc0000000 && "
              "guest_rip < 0xffffffffff000000")


def trace_setup(ring_kib: int = 1024) -> bool:
    """TRACE_EVENTS into a ring of ring_kib per CPU (oldest overwritten),
    with the TRACE_STOP trigger; False where there is no tracefs."""
    os.system(f"mountpoint -q {TRACE} || mount -t tracefs nodev {TRACE} 2>/dev/null")
    if not Path(TRACE, "events/kvm/kvm_exit").exists():
        return False
    Path(TRACE, "buffer_size_kb").write_text(str(ring_kib))
    # Each event names its process too: a fault is told to a VMM's process
    # after it has exited (trace_fault).
    if Path(TRACE, "options/record-tgid").exists():
        Path(TRACE, "options/record-tgid").write_text("1")
    for ev in TRACE_EVENTS:
        if Path(TRACE, "events", ev).exists():
            Path(TRACE, "events", ev, "enable").write_text("1")
    Path(TRACE, "events/kvm/kvm_exit/trigger").write_text(TRACE_STOP)
    return True


def trace_restart() -> None:
    """Empty the ring and trace again (a trigger that fired turned it off)."""
    Path(TRACE, "tracing_on").write_text("0")
    Path(TRACE, "trace").write_text("")
    Path(TRACE, "tracing_on").write_text("1")


def trace_stopped() -> bool:
    """True when TRACE_STOP fired since trace_restart()."""
    return Path(TRACE, "tracing_on").read_text().strip() == "0"


def trace_tail(n: int) -> list[str]:
    """Stops the ring; its last n events, one line each."""
    Path(TRACE, "tracing_on").write_text("0")
    lines = [line for line in Path(TRACE, "trace").read_text(errors="replace").splitlines()
             if not line.startswith("#")]
    return [" ".join(line.split()) for line in lines[-n:]]


_MODULE_SPACE = (0xffffffffc0000000, 0xffffffffff000000)  # TRACE_STOP's range
# "fc_vcpu 0-250 (    239) [000] ..... 70.694271: kvm_exit: vcpu 0 reason npf rip 0x..."
# (the process id in brackets with options/record-tgid, as trace_setup sets)
_EXIT = re.compile(r"-(\d+)\s+(?:\(\s*(\d+|-+)\)\s+)?\[\d+\].*\bkvm_exit:.*\brip (0x[0-9a-f]+)")


def trace_fault() -> tuple[int, int | None] | None:
    """When TRACE_STOP fired: (thread, process) whose exit fired it, from
    the ring's last exits (the process None if not recorded); else None.
    Reads the ring, so call it before trace_tail()."""
    if not trace_stopped():
        return None
    text = Path(TRACE, "trace").read_text(errors="replace")
    for line in reversed(text.splitlines()[-200:]):
        m = _EXIT.search(line)
        if m and _MODULE_SPACE[0] <= int(m.group(3), 16) < _MODULE_SPACE[1]:
            pid = m.group(2)
            return int(m.group(1)), int(pid) if pid and pid.isdigit() else None
    return None
