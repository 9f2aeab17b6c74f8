#!/usr/bin/python3
"""Where a frozen test host's CPUs are: asks its QEMU (the HMP monitor on
CTL/hmp.sock) for each CPU's registers and the top of its stack, and names
the kernel functions they point into, with the kernel's text symbols
(CORE_SYMS, /proc/kallsyms of an earlier boot of the same kernel: Debian's
System.map is a placeholder) moved by the KASLR offset, and the kvm
modules' symbols that this boot's stage 2 saved in CTL/kallsyms
(tools/testhost/run calls this before it kills a test host that froze or
locked up; README.md, "Known problem: the test host's own kernel locks up").

    freeze-report.py CTL CORE_SYMS

Prints a line per CPU. Never blocks for long: a CPU that QEMU cannot stop
(a TCG thread wedged for good) ends the report with a line saying so.
"""

from __future__ import annotations

import bisect
import re
import socket
import sys
import time
from pathlib import Path

PROMPT = b"(qemu) "
TIMEOUT = 10  # seconds for the whole conversation
STACK_WORDS = 64  # words read from the top of each CPU's stack
FRAMES = 10  # kernel text addresses shown from it


class Monitor:
    def __init__(self, path: str):
        self.deadline = time.monotonic() + TIMEOUT
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(TIMEOUT)
        self.s.connect(path)
        self._until_prompt()

    def _until_prompt(self) -> str:
        buf = b""
        while not buf.endswith(PROMPT):
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QEMU's monitor did not answer")
            self.s.settimeout(left)
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("QEMU's monitor closed")
            buf += chunk
        # HMP echoes the command, with terminal escapes; drop them.
        return re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", buf[:-len(PROMPT)]).decode(errors="replace")

    def cmd(self, line: str) -> str:
        self.s.sendall(line.encode() + b"\n")
        return self._until_prompt()


class Symbols:
    """Kernel text symbols: the core kernel's moved by the KASLR offset,
    plus the kvm modules' of this boot."""

    def __init__(self, core: Path, kallsyms: Path):
        saved = [line.split() for line in kallsyms.read_text().splitlines()] if kallsyms.exists() else []
        text = next((int(f[0], 16) for f in saved if len(f) >= 3 and f[2] == "_text"), None)
        syms = []
        offset = None
        for line in (core.read_text().splitlines() if core.exists() else []):
            f = line.split()
            if len(f) == 3 and f[1] in "tTwW":
                syms.append((int(f[0], 16), f[2]))
                if f[2] == "_text" and text is not None:
                    offset = text - int(f[0], 16)
        if offset is None:
            offset = 0
            self.note = "no core kernel symbols, or no KASLR offset: core kernel names missing"
        else:
            self.note = ""
        syms = [(a + offset, n) for a, n in syms]
        syms += [(int(f[0], 16), f"{f[2]} {f[3]}") for f in saved
                 if len(f) >= 4 and f[1] in "tT" and f[3].startswith("[")]
        syms.sort()
        self.addrs = [a for a, _ in syms]
        self.names = [n for _, n in syms]

    def name(self, addr: int) -> str | None:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or addr - self.addrs[i] > 0x10000:
            return None
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}"


def cpu_blocks(regs: str) -> list[dict]:
    cpus = []
    for block in re.split(r"(?m)^CPU#", regs)[1:]:
        r = dict(re.findall(r"\b([A-Z][A-Z0-9]*)=([0-9a-fA-F]+)\b", block))
        r["id"] = block.split(None, 1)[0]
        cpus.append(r)
    return cpus


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: freeze-report.py CTL CORE_SYMS", file=sys.stderr)
        return 2
    ctl, core = Path(sys.argv[1]), Path(sys.argv[2])
    syms = Symbols(core, ctl / "kallsyms")
    if syms.note:
        print(syms.note)
    try:
        mon = Monitor(str(ctl / "hmp.sock"))
        cpus = cpu_blocks(mon.cmd("info registers -a"))
        for i, r in enumerate(cpus):
            rip = int(r.get("RIP", "0"), 16)
            where = syms.name(rip) or "not kernel text"
            line = (f"test host CPU {r['id']}: rip {rip:#x} ({where}), CPL {r.get('CPL', '?')}, "
                    f"halted {r.get('HLT', '?')}, RFLAGS {r.get('RFL', '?')}")
            rsp = int(r.get("RSP", "0"), 16)
            if rsp:
                mon.cmd(f"cpu {i}")
                words = re.findall(r"0x([0-9a-f]{16})", mon.cmd(f"x/{STACK_WORDS}gx {rsp:#x}"))
                frames = [n for n in (syms.name(int(w, 16)) for w in words) if n]
                if frames:
                    line += "; on its stack: " + " < ".join(frames[:FRAMES])
            print(line, flush=True)
    except (OSError, TimeoutError, ConnectionError) as e:
        print(f"test host CPUs: no answer from QEMU's monitor ({e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
