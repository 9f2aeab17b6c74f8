#!/usr/bin/env python3
"""Merges a diff snapshot's memory file onto its base, as Firecracker's
rebase-snap: every data extent of DIFF (what the diff snapshot wrote; its
holes are pages that did not change) is copied to the same offset of BASE.
BASE then holds the memory of the diff snapshot, to load with the diff's
state file. Both files must have the guest memory's size.

    tools/snapshot-rebase.py --base-file BASE --diff-file DIFF
"""
import argparse
import os
import sys


def rebase(base: str, diff: str) -> int:
    copied = 0
    with open(diff, "rb") as d, open(base, "r+b") as b:
        size = os.fstat(d.fileno()).st_size
        if os.fstat(b.fileno()).st_size != size:
            sys.exit(f"snapshot-rebase: {base} and {diff} differ in size")
        off = 0
        while off < size:
            try:
                start = os.lseek(d.fileno(), off, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after off
                break
            end = os.lseek(d.fileno(), start, os.SEEK_HOLE)
            d.seek(start)
            b.seek(start)
            left = end - start
            while left:
                chunk = d.read(min(left, 1 << 20))
                if not chunk:
                    break
                b.write(chunk)
                left -= len(chunk)
            copied += end - start
            off = end
    return copied


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-file", required=True)
    p.add_argument("--diff-file", required=True)
    a = p.parse_args()
    print(f"snapshot-rebase: {rebase(a.base_file, a.diff_file)} bytes copied")


if __name__ == "__main__":
    main()
