#!/usr/bin/env python3
"""Fails if the include graph of src/ has a cycle across directories.

Each file belongs to its directory under src/ (src/arch/x86/acpi.c is in
"arch"); an `#include "dir/file.h"` of another directory is an edge. A
strongly connected set of two or more directories is a cycle: it is printed
with one include that makes each of its edges, and the exit status is 1.
"""
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"', re.M)


def graph(src: Path):
    edges: dict[str, dict[str, str]] = {}
    for f in sorted(src.rglob("*.[ch]")):
        here = f.relative_to(src).parts[0]
        if len(f.relative_to(src).parts) == 1:
            continue  # src/main.c sits above every directory
        for m in INCLUDE.finditer(f.read_text(errors="replace")):
            there = m.group(1)
            if there != here:
                edges.setdefault(here, {}).setdefault(there, f"{f.relative_to(src)}: {m.group(0).strip()}")
    return edges


def cycles(edges):
    """Tarjan's strongly connected components of more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    nodes = set(edges) | {w for d in edges.values() for w in d}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src")
    edges = graph(src)
    found = cycles(edges)
    for comp in found:
        print(f"include cycle across directories: {' <-> '.join(comp)}")
        for a in comp:
            for b, why in sorted(edges.get(a, {}).items()):
                if b in comp:
                    print(f"  {a} -> {b}  ({why})")
    if found:
        return 1
    order = " ".join(sorted(set(edges) | {w for d in edges.values() for w in d}))
    print(f"include graph of src/ has no cycle across directories ({order})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
