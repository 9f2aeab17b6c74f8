#!/usr/bin/python3
"""Writes docs/api/ember-api.yaml: Firecracker's OpenAPI description (the
contract Ember implements, Apache-2.0) trimmed to the routes Ember serves,
with only the definitions those routes use.

    tools/api-spec.py [FIRECRACKER_SPEC] > docs/api/ember-api.yaml

SERVED below is the list to keep in step with src/vmm/routes.c; the API tests
check that every route in the output is served and every other one of
Firecracker's is refused as not supported yet.
"""
import sys
from pathlib import Path

import yaml

SERVED = {
    "/": ["get"],
    "/actions": ["put"],
    "/balloon": ["get", "put", "patch"],
    "/balloon/hinting/start": ["patch"],
    "/balloon/hinting/status": ["get"],
    "/balloon/hinting/stop": ["patch"],
    "/balloon/statistics": ["get", "patch"],
    "/boot-source": ["put"],
    "/cpu-config": ["put"],
    "/drives/{drive_id}": ["put", "patch"],
    "/entropy": ["put"],
    "/vsock": ["put"],
    "/logger": ["put"],
    "/machine-config": ["get", "put", "patch"],
    "/metrics": ["put"],
    "/mmds": ["get", "put", "patch"],
    "/mmds/config": ["put"],
    "/serial": ["put"],
    "/snapshot/create": ["put"],
    "/snapshot/load": ["put"],
    "/network-interfaces/{iface_id}": ["put", "patch"],
    "/version": ["get"],
    "/vm": ["patch"],
    "/vm/config": ["get"],
}

HEADER = """\
# Ember's API: Firecracker's API description (firecracker-api.yaml,
# Copyright Amazon.com, Inc., Apache License 2.0), trimmed by
# tools/api-spec.py to the routes Ember serves. Routes of Firecracker's that
# are not listed here answer 400 with a fault_message naming the missing
# feature. Differences in behaviour are in docs/api.md.
"""


def refs(node, found):
    """Every #/definitions/X that node refers to, transitively, into found."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/definitions/"):
                found.add(v.rsplit("/", 1)[1])
            else:
                refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else
               Path(__file__).resolve().parents[2] / "shared/reference/firecracker-api.yaml")
    spec = yaml.safe_load(src.read_text())
    paths = {}
    for path, methods in SERVED.items():
        ops = spec["paths"][path]
        paths[path] = {m: ops[m] for m in methods}
        for k, v in ops.items():  # path-level parameters
            if k not in ("get", "put", "patch", "post", "delete"):
                paths[path][k] = v
    needed = set()
    refs(paths, needed)
    while True:
        more = set(needed)
        for name in needed:
            refs(spec["definitions"][name], more)
        if more == needed:
            break
        needed = more
    out = dict(spec)
    out["info"] = dict(spec["info"], title="Ember API",
                       description="Firecracker's API as Ember serves it, over HTTP/1.1 on a "
                                   "Unix domain socket.")
    out["info"].pop("contact", None)
    out["paths"] = paths
    out["definitions"] = {k: v for k, v in spec["definitions"].items() if k in needed}
    sys.stdout.write(HEADER)
    yaml.safe_dump(out, sys.stdout, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    main()
